"""P5: the paper grid's dry run through profiles/slurm, with and without a SLURM controller that answers.

The slurm executor plugin runs `scontrol show config` (10 s timeout) when Snakemake loads it, for every
`snakemake` start. This times, in one run and alternating, `snakemake --version` (start-up only) and the
paper grid's dry run (`-n --profile <filled-in profiles/slurm> --configfile config/paper.yaml`) with
  - the controller configured in /etc/slurm/slurm.conf (start one with tests/slurm/cluster.sh start), and
  - SLURM_CONF naming a copy of it whose controller address answers nothing (the slow case).
Equal terms: same command, same profile, same machine; only SLURM_CONF differs. Prints `uptime` too.

    .venv/bin/python bench/slurm_dry_run.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _filled_profile(folder: Path) -> Path:
    """profiles/slurm with no account and no conda (none on this machine); a dry run submits nothing, so
    its partition file stays unread."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    del profile["default-resources"]["slurm_account"]
    profile.update({"slurm-no-account": True, "software-deployment-method": "env-modules"})
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _unreachable_controller(folder: Path) -> Path:
    conf = Path("/etc/slurm/slurm.conf").read_text()
    conf = re.sub(r"(?m)^SlurmctldHost=.*$", "SlurmctldHost=nowhere(127.0.0.3)\nSlurmctldPort=6899", conf)
    path = folder / "slurm.conf"
    path.write_text(conf)
    return path


def _seconds(command: list[str], slurm_conf: str) -> float:
    start = time.monotonic()
    subprocess.run(command, cwd=REPO, env={**os.environ, "SLURM_CONF": slurm_conf}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU
    if not Path("/etc/slurm/slurm.conf").is_file():
        sys.exit("no /etc/slurm/slurm.conf: start a cluster first (tests/slurm/cluster.sh start)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profile = _filled_profile(folder)
        conditions = {"controller answers": "/etc/slurm/slurm.conf",
                      "no controller answers": str(_unreachable_controller(folder))}
        commands = {
            "snakemake --version": [str(SNAKEMAKE), "--version"],
            "paper grid dry run": [str(SNAKEMAKE), "-n", "--quiet", "all", f"--profile={profile}",
                                   f"--configfile={REPO / 'config' / 'paper.yaml'}"],
        }
        times = {(c, k): [] for c in commands for k in conditions}
        for _ in range(args.repeats):
            for name, command in commands.items():
                for condition, conf in conditions.items():
                    times[(name, condition)].append(_seconds(command, conf))
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for name in commands:
        fast, slow = (statistics.median(times[(name, c)]) for c in conditions)
        print(f"{name:22s} controller answers {fast:6.1f} s   none answers {slow:6.1f} s   "
              f"difference {slow - fast:5.1f} s   ratio {slow / fast:4.2f}  (median of {args.repeats})")


if __name__ == "__main__":
    main()
