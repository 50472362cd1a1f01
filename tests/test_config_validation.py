"""Bad configuration fails before any job starts, with a message naming the key, value or file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import DATA_DIR
from uqroute import REPO_ROOT

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(tmp_path: Path, overrides: dict, *args: str) -> subprocess.CompletedProcess:
    """Snakemake with the embedded config plus ``overrides``, in an empty working directory."""
    overrides = {"data_dir": str(DATA_DIR), **overrides}
    config = tmp_path / "override.yaml"
    config.write_text(yaml.safe_dump(overrides))
    return subprocess.run(
        [str(SNAKEMAKE), *args, "--cores", "1", "--snakefile", str(REPO_ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO_ROOT / "config" / "config.yaml"), str(config)],
        capture_output=True, text=True, timeout=120,
    )


def dry_run(tmp_path: Path, overrides: dict, *targets: str) -> subprocess.CompletedProcess:
    """Plan the workflow with the embedded config plus ``overrides``, in an empty working directory."""
    return snakemake(tmp_path, overrides, *targets, "-n")


def test_embedded_default_dry_run_plans_jobs(tmp_path):
    result = dry_run(tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert "rule generate" in result.stdout or "generate" in result.stdout


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"subsett": {"max_test": 3}}, "subsett"),
        ({"subset": {"max_tset": 3}}, "max_tset"),
        ({"subset": {"max_test": "ten"}}, "ten"),
        ({"methods": ["perplexity", "entropy"]}, "entropy"),
        ({"datasets": ["gsm8k", "squad"]}, "squad"),
        ({"slms": ["no-such-model"]}, "no-such-model"),
        ({"engines": {"smollm2-135m": {"batchsize": 4}}}, "batchsize"),
        ({"judge": {"engine": "openai", "model": "gpt-4o-mnii"}}, "gpt-4o-mnii"),
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path, overrides, named):
    result = dry_run(tmp_path, overrides)
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert "Job stats" not in result.stdout


def test_missing_data_file_fails_naming_it_before_any_job(tmp_path):
    data = tmp_path / "data"
    (data / "boolq").mkdir(parents=True)
    result = snakemake(tmp_path, {"data_dir": str(data), "datasets": ["boolq"]})
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "boolq" in output and str(data / "boolq" / "validation.jsonl") in output
    assert not (tmp_path / "results").exists(), "no job ran"


@pytest.mark.parametrize("command", [["--lint"], ["--list"]])
def test_lint_and_list_need_no_data_files(tmp_path, command):
    """A fresh clone without ../shared/data can be read: the file checks run when a run starts."""
    result = snakemake(tmp_path, {"data_dir": str(tmp_path / "absent")}, *command)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_any_registry_dataset_can_be_built_by_its_file(tmp_path):
    """The data rule is not limited to the config's grid: gsm8k is not in the embedded default."""
    targets = ("results/data/gsm8k/test.parquet", "results/data/truthfulqa/train.parquet")
    result = dry_run(tmp_path, {}, *targets)
    assert result.returncode == 0, result.stderr
    assert all(target in result.stdout for target in targets) and "rule dataset" in result.stdout


@pytest.mark.slow
def test_snakemake_builds_every_local_test_split(tmp_path, data_dir):
    """`snakemake results/data/<ds>/test.parquet` for all 13 local datasets, with SOURCES.md's row counts."""
    from test_datasets import LOCAL_ROWS

    targets = [f"results/data/{name}/test.parquet" for name in LOCAL_ROWS]
    config = tmp_path / "override.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
    result = subprocess.run(
        [str(SNAKEMAKE), *targets, "--cores", "2", "--snakefile", str(REPO_ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO_ROOT / "config" / "config.yaml"), str(config)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name, (test_rows, _) in LOCAL_ROWS.items():
        assert len(pd.read_parquet(tmp_path / "results" / "data" / name / "test.parquet")) == test_rows, name
