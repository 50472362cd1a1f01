"""Helpers that run the embedded DAG on tiny slices of the real data with the real tiny models.

Shared by the end-to-end, SLURM and vLLM workflow tests; the slice run is a session fixture
(conftest.py), so the determinism check and the SLURM check compare against one local run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from uqroute import REPO_ROOT

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DATASETS = ["multiarith", "commonsenseqa", "boolq", "piqa"]
METHODS = ["avg_token_prob", "p_true", "perplexity", "jaccard_degree", "verbal_1s", "verbal_2s",
           "trained_probe", "ood_probe"]
SLM, LLM = "smollm2-135m", "gemma3-270m"


def tiny_config(data_dir: Path, datasets: list[str] | None = None) -> dict:
    """The embedded default on ten test questions per dataset, with short budgets."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["data_dir"] = str(data_dir)
    config["datasets"] = list(datasets or DATASETS)
    config["subset"] = {"max_test": 10, "max_train": 12, "seed": 50}
    config["generation"]["max_new_tokens"] = {"mcq": 8, "tf": 6, "ff_num": 40, "ff_text": 16}
    config["generation"]["verbal_max_new_tokens"] = 10
    config["calibration"].update(n_bins=5, fraction=0.5)
    return config


def slice_config(data_dir: Path) -> dict:
    """Two datasets with short answers, six questions, three methods: every kind of job, in minutes."""
    config = tiny_config(data_dir, ["commonsenseqa", "boolq"])
    config["methods"] = ["avg_token_prob", "p_true", "trained_probe"]
    config["subset"].update(max_test=6, max_train=6)
    return config


def run_workflow(workdir: Path, data_dir: Path, model_dirs: dict[str, Path], *extra: str,
                 config: dict | None = None) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` with ``config`` (default: the tiny config) as its config/config.yaml."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config or tiny_config(data_dir)))
    for name, folder in model_dirs.items():
        link = workdir / "results" / "models" / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folder, target_is_directory=True)
    return subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
         "--cores", "2", *extra],
        capture_output=True, text=True, timeout=3000, env={**os.environ, "TQDM_DISABLE": "1"},
    )


def parquet_bytes(results: Path) -> dict[str, bytes]:
    """Every result table's bytes by relative path (checkpoints and model folders left out)."""
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*.parquet"))
            if ".checkpoints" not in path.parts and "models" not in path.parts}
