"""The sbatch command the SLURM executor plugin would run for each kind of job of a workflow.

    python tests/slurm/submit_commands.py SNAKEMAKE_ARGS...   (a dry run: give -n and the profiles)

prints one JSON object per line: rule, wildcards, and the sbatch command (without the job script).
Snakemake's dry run evaluates every job's resources with the profiles applied; the command is then built
by the plugin's own functions, so `sbatch --test-only` can check the requests of a grid that cannot run
here. One job per rule and distinct request (e.g. generate: an SLM, the 70B model, an API model).
Localrules and rules without an action (`all`) are left out: they never go through sbatch.
Give `--cores` a large value: the dry run caps each job's threads at it, the SLURM executor does not.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import yaml

import snakemake.cli
from snakemake.executors import dryrun
from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import get_job_wildcards, set_gres_string


def _partition(job, partitions, logger) -> str:
    """The job's own slurm_partition, else the plugin's choice from the profile's partition file."""
    chosen = job.resources.get("slurm_partition") or (partitions and get_best_partition(partitions, job, logger))
    if not chosen:
        raise SystemExit(f"no partition for rule {job.name} ({dict(job.wildcards)}): set slurm_partition or give "
                         "slurm-partition-config a partition that fits the job")
    return chosen


def _submit_command(job, partition: str) -> str:
    """What the plugin's Executor.run_job builds (its account and partition arguments, without their checks)."""
    wildcards = get_job_wildcards(job)
    account = job.resources.get("slurm_account")
    params = {
        "run_uuid": "submit-check",
        "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/{wildcards}/%j.log",
        "comment_str": f"rule_{job.name}_wildcards_{wildcards}" if wildcards else f"rule_{job.name}",
        "account": f" -A {shlex.quote(str(account))}" if account else "",
        "partition": f" -p {shlex.quote(str(partition))}",
        "workdir": None,
    }
    return get_submit_command(job, params) + set_gres_string(job)


def _partition_file(argv: list[str]) -> Path | None:
    """The `slurm-partition-config` of the last ``--profile=DIR`` that sets one, found as Snakemake finds it
    (in the profile's folder first). A dry run builds no SLURM executor, so its settings are read here."""
    found = None
    for arg in argv:
        if arg.startswith("--profile="):
            folder = Path(arg.removeprefix("--profile="))
            value = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("slurm-partition-config")
            if value:
                found = folder / value if (folder / value).exists() else Path(value)
    return found


def main(argv: list[str]) -> None:
    seen = set()
    partition_file = _partition_file(argv)
    partitions = read_partition_file(partition_file) if partition_file else None
    real_run_job = dryrun.Executor.run_job

    def record(self, job):
        if job.name not in self.workflow._localrules and not job.is_norun:
            command = _submit_command(job, _partition(job, partitions, self.logger))
            request = (job.name, command.replace(get_job_wildcards(job), ""))
            if request not in seen:
                seen.add(request)
                print(json.dumps({"rule": job.name, "wildcards": dict(job.wildcards), "command": command}),
                      flush=True)
        real_run_job(self, job)

    dryrun.Executor.run_job = record
    try:
        snakemake.cli.main(argv)
    except SystemExit as exit_:
        if exit_.code:
            raise


if __name__ == "__main__":
    main(sys.argv[1:])
