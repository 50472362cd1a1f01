"""The workflow through profiles/slurm on a real SLURM cluster.

CI starts a throwaway one-node cluster with tests/slurm/cluster.sh; against a real cluster, point the
tests at its test partition (README, "Run the paper's grid on SLURM"). Jobs run with the PATH they are
submitted with (sbatch --export=ALL), so the tests put this interpreter's folder first on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_runs import (SLM, SLURM_JOB_PATH, SLURM_PROFILE, assert_same_tables, slurm_answers, slurm_options,
                           tiny_config, with_slurm_account)
from uqroute import REPO_ROOT
from uqroute.paths import model_folder

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# A real cluster's partitions (defaults: those of tests/slurm/slurm.conf.template): test jobs run in
# SLURM_PARTITION; the paper grid's requests are checked (sbatch --test-only, nothing runs) against these two.
PAPER_CPU_PARTITION = os.environ.get("UQROUTE_SLURM_PAPER_CPU_PARTITION", "paper-cpu")
PAPER_GPU_PARTITION = os.environ.get("UQROUTE_SLURM_PAPER_GPU_PARTITION", "paper-gpu")
GREEDY = "results/gen/smollm2-135m/multiarith/test/greedy.parquet"
GREEDY_PARTS = "results/.checkpoints/gen/smollm2-135m/multiarith/test/greedy"
GREEDY_LOG = "logs/generate/smollm2-135m/multiarith/test/greedy.log"
SLURM_LOGS = ".snakemake/slurm_logs"
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")


@pytest.fixture(scope="module")
def slurm_env():
    """The cluster answers, and jobs find this environment's python and snakemake first on PATH."""
    reason = slurm_answers()
    if reason:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", SLURM_JOB_PATH)
        yield


@pytest.fixture(scope="module")
def overlay(tmp_path_factory) -> list[str]:
    """Snakemake's options for profiles/slurm and tests/slurm/profile with the partition this run uses."""
    return slurm_options(tmp_path_factory.mktemp("overlay"))


def test_tiny_slice_through_slurm_gives_the_local_tables(slurm_env, request):
    """Byte-identical Parquet files from the local executor (the session's slice run) and from SLURM jobs (the
    session's second slice run, made on SLURM when a cluster answers: tests/conftest.py)."""
    # Asked for here, not as arguments: session fixtures are set up before the module's slurm_env, which skips
    # where no cluster answers, and these two runs take minutes.
    slice_run, slice_rerun = request.getfixturevalue("slice_run"), request.getfixturevalue("slice_rerun")
    assert slice_rerun.on_slurm, "the cluster answers, so the slice's second run is made through SLURM"
    slurm_jobs = set(SUBMITTED.findall(slice_rerun.log))
    model_jobs = len(list((slice_rerun.workdir / "results" / "gen").rglob("*.parquet")))
    assert len(slurm_jobs) > model_jobs, "every data, model and UQ job ran as its own SLURM job"
    assert_same_tables(slice_run, slice_rerun.workdir)


def _write_workdir(workdir: Path, data_dir: Path, smollm2_dir: Path) -> Path:
    """One dataset, eight questions in batches of two: a greedy pass of four checkpointed batches."""
    config = tiny_config(data_dir)
    config.update(datasets=["multiarith"], subset={"max_test": 8, "max_train": 8, "seed": 50})
    config["engines"][SLM].update(batch_size=2)  # dtype auto, as the embedded default runs
    config["generation"]["part_size"] = 2
    config_file = workdir / "config" / "config.yaml"
    config_file.parent.mkdir(parents=True)
    config_file.write_text(yaml.safe_dump(config))
    model_folder(workdir / "results", SLM).parent.mkdir(parents=True)
    model_folder(workdir / "results", SLM).symlink_to(smollm2_dir, target_is_directory=True)
    return config_file


def _snakemake(workdir: Path, config_file: Path, overlay: list[str], *targets: str) -> list[str]:
    return [str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
            *overlay, f"--configfile={config_file}", *targets]


def _running_job(comment: str) -> str | None:
    """Id of the running SLURM job whose comment starts so (the plugin's comment: rule_<rule>_wildcards_<...>)."""
    listing = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k"],
                             capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        job_id, job_comment = line.split("|", 1)
        if job_comment.startswith(comment):
            return job_id
    return None


def _job_state(job_id: str) -> str:
    return subprocess.run(["squeue", "--noheader", "--states=all", "--jobs", job_id, "--format=%T"],
                          capture_output=True, text=True).stdout.strip()


def test_cancelled_job_is_resubmitted_and_resumes_from_its_checkpoint(slurm_env, overlay, tmp_path, data_dir,
                                                                      smollm2_dir):
    config_file = _write_workdir(tmp_path, data_dir, smollm2_dir)
    run = subprocess.Popen(_snakemake(tmp_path, config_file, overlay, GREEDY), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        parts = tmp_path / GREEDY_PARTS
        deadline = time.monotonic() + 900
        while not list(parts.glob("*.parquet")):
            assert run.poll() is None, run.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no batch of the pass finished in time"
            time.sleep(0.2)
        job_id = _running_job("rule_generate_replies_wildcards_smollm2-135m_multiarith_test_greedy")
        assert job_id, "the pass runs as a SLURM job"
        subprocess.run(["scancel", job_id], check=True)
        while _job_state(job_id) not in ("CANCELLED", ""):
            assert time.monotonic() < deadline, f"job {job_id} did not end after scancel"
            time.sleep(0.2)
        finished = {path.stem for path in parts.glob("*.parquet")}
        log = run.communicate(timeout=900)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
            run.wait()
    assert run.returncode == 0, log[-6000:]
    assert finished and len(finished) < 4, f"cancelled half way: {sorted(finished)}"
    jobs = SUBMITTED.findall(log)
    assert job_id in jobs and len(jobs) == len(set(jobs)) and jobs[-1] != job_id, "the pass was resubmitted"
    resumed = set(re.findall(r"resumed batch (\S+)", (tmp_path / GREEDY_LOG).read_text()))
    assert resumed == finished, "the resubmitted job reloads every finished batch and recomputes none"
    table = pd.read_parquet(tmp_path / GREEDY)
    assert len(table) == 8 and table["id"].is_unique
    assert not parts.exists(), "parts are removed once the table is written"


def test_job_failing_for_good_is_reported_with_its_logs(slurm_env, overlay, tmp_path, data_dir, smollm2_dir):
    """A corrupt weights file fails every attempt; the run names the job and keeps both logs."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for item in smollm2_dir.iterdir():
        (broken / item.name).symlink_to(item)
    weights = broken / "model.safetensors"
    assert weights.is_symlink(), "the fp32 copy keeps its weights in model.safetensors"
    weights.unlink()
    weights.write_bytes(b"\x00" * 64)  # root reads any file mode: corrupt bytes are what makes it unreadable
    config_file = _write_workdir(tmp_path / "run", data_dir, broken)
    # One retry instead of the profile's two: each attempt costs a job start (a minute on a loaded machine).
    result = subprocess.run(_snakemake(tmp_path / "run", config_file, overlay, GREEDY, "--retries=1"),
                            capture_output=True, text=True, timeout=1800)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule generate" in log and "model=smollm2-135m" in log.replace(": ", "=")
    job_log = tmp_path / "run" / GREEDY_LOG
    assert job_log.is_file() and "safetensors" in job_log.read_text().lower(), "the job's own log says why"
    assert str(job_log.relative_to(tmp_path / "run")) in log, "the report points at the job's log"
    attempts = SUBMITTED.findall(log)[1:]  # the first job makes the data file
    assert len(attempts) == 2, "tried once more, then given up"
    slurm_logs = {path.stem for path in (tmp_path / "run" / SLURM_LOGS / "rule_generate_replies").rglob("*.log")}
    assert slurm_logs == set(attempts), "every failed attempt keeps its SLURM log"


def _paper_profile(folder: Path) -> Path:
    """profiles/slurm as a user fills it in: partitions, no account, and (no conda here) no conda."""
    partitions = (SLURM_PROFILE / "partitions.yaml").read_text()
    partitions = partitions.replace("<your-cpu-partition>", PAPER_CPU_PARTITION)
    (folder / "partitions.yaml").write_text(partitions.replace("<your-gpu-partition>", PAPER_GPU_PARTITION))
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    del profile["default-resources"]["slurm_account"]
    profile.update({"slurm-no-account": True, "software-deployment-method": "env-modules"})
    profile = with_slurm_account(profile)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _test_only(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(f"{command} --test-only --wrap true", shell=True, capture_output=True, text=True,
                          timeout=120)


def _paper_grid_jobs(folder: Path, config: Path) -> list[dict]:
    """One job per rule and distinct request of the grid in ``config``, with the sbatch command the plugin
    would run under the filled-in profile (a dry run: nothing is submitted)."""
    profile = _paper_profile(folder)
    listing = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "slurm" / "submit_commands.py"), "-n", "--quiet", "all",
         "--cores=1024", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(folder),
         f"--profile={profile}", f"--configfile={config}"],
        capture_output=True, text=True, timeout=1200)
    assert listing.returncode == 0, listing.stderr[-4000:]
    return [json.loads(line) for line in listing.stdout.splitlines() if line.startswith("{")]


def _model_commands(jobs: list[dict]) -> dict[str, str]:
    # A model's passes all ask for the same resources (its greedy pass is a generate_replies job).
    return {job["wildcards"]["model"]: job["command"] for job in jobs if job["rule"] in ("generate", "generate_replies")}


def test_paper_grid_requests_are_accepted_by_sbatch(slurm_env, tmp_path):
    """Every rule's request under config/paper.yaml, GPUs included, as the plugin builds it, passes sbatch
    --test-only; the plugin sends each job to the partition that fits its GPU count."""
    jobs = _paper_grid_jobs(tmp_path, REPO_ROOT / "config" / "paper.yaml")
    assert {job["rule"] for job in jobs} == {"dataset", "generate", "generate_replies", "grade", "hidden_states", "uq",
                                             "holdout_uq", "release_probe"}
    commands = _model_commands(jobs)
    assert "--gpus=4" in commands["llama-3.1-70b"] and "--gpus=1" in commands["llama-3.2-1b"]
    assert "--gpus" not in commands["gpt-4o-mini"] and f"-p {PAPER_CPU_PARTITION}" in commands["gpt-4o-mini"]
    # profiles/slurm names no model and no rule's partition: GPU jobs go to the GPU partition, the rest not.
    partition = {job["command"]: re.search(r" -p (\S+)", job["command"]).group(1) for job in jobs}
    misplaced = {command: where for command, where in partition.items()
                 if where != (PAPER_GPU_PARTITION if "--gpus" in command else PAPER_CPU_PARTITION)}
    assert not misplaced, misplaced
    rejected = {job["command"]: result.stderr for job in jobs if (result := _test_only(job["command"])).returncode}
    assert not rejected, rejected
    # The check has teeth: a request beyond the node (five GPUs where there are four) is refused.
    too_many = _test_only(commands["llama-3.1-70b"].replace("--gpus=4", "--gpus=5"))
    assert too_many.returncode != 0 and "not available" in too_many.stderr


def test_a_model_moved_behind_an_api_needs_no_profile_edit(slurm_env, tmp_path):
    """The 70B model served by a `vllm serve` node instead of vLLM in the job, and a GPU type asked for: its
    jobs lose their GPUs and go to the CPU partition, the other models' jobs ask for the type."""
    config = yaml.safe_load((REPO_ROOT / "config" / "paper.yaml").read_text())
    config["engines"]["llama-3.1-70b"] = {"kind": "openai", "base_url": "http://llm-node:8000/v1",
                                          "model": "meta-llama/Llama-3.1-70B-Instruct", "api_key_env": "LLM_KEY"}
    config["resources"] = {**config.get("resources", {}), "gpu_model": "a100"}
    (tmp_path / "paper-api.yaml").write_text(yaml.safe_dump(config))
    commands = _model_commands(_paper_grid_jobs(tmp_path, tmp_path / "paper-api.yaml"))
    assert "--gpus" not in commands["llama-3.1-70b"] and f"-p {PAPER_CPU_PARTITION}" in commands["llama-3.1-70b"]
    assert "--gpus=a100:1" in commands["llama-3.2-1b"] and f"-p {PAPER_GPU_PARTITION}" in commands["llama-3.2-1b"]
    assert "--gpus" not in commands["gpt-4o-mini"]
