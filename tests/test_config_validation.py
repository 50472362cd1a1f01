"""Bad configuration fails before any job starts, with a message naming the key, value or file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uqroute import REPO_ROOT

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def dry_run(tmp_path: Path, overrides: dict) -> subprocess.CompletedProcess:
    config = tmp_path / "override.yaml"
    config.write_text(yaml.safe_dump(overrides))
    return subprocess.run(
        [str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", str(config)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )


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
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path, overrides, named):
    result = dry_run(tmp_path, overrides)
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert "Job stats" not in result.stdout


def test_missing_data_file_fails_naming_it(tmp_path):
    data = tmp_path / "data"
    (data / "boolq").mkdir(parents=True)
    result = dry_run(tmp_path, {"data_dir": str(data), "datasets": ["boolq"]})
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "boolq" in output and str(data / "boolq" / "validation.jsonl") in output
