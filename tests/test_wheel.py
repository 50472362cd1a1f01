"""uqroute as a wheel: built from the checkout, installed into a fresh venv outside it.

The registries, prompts and JSON schemas are package data, so the installed library must load them,
and run `uqroute serve --help` and `uqroute threshold`, with no checkout in sight.

Nothing is downloaded: the new venv reaches this interpreter's dependencies (torch, pandas, ...) through
a path line in a .pth file. The checkout's editable uqroute stays out: it comes in through a .pth file of
this interpreter's site-packages, and site.py reads .pth files only in site directories, never in a folder
that a path line adds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uqroute import REPO_ROOT, RESOURCES_DIR, SCHEMAS_DIR
from uqroute.datasets import DATASET_NAMES, dataset_info
from uqroute.io import load_schema, write_parquet
from uqroute.jobs import analysis as analysis_jobs
from uqroute.models import load_model_registry
from uqroute.paths import results_path
from uqroute.serve.calibration import calibration_threshold

pytestmark = pytest.mark.slow

# What the installed package reports, as JSON; argv[1] is a study config to validate with the shipped schema.
LOAD_PACKAGE_DATA = r"""
import dataclasses, json, sys
from pathlib import Path

import yaml

import uqroute
from uqroute.datasets import DATASET_NAMES, dataset_info
from uqroute.grading.judges import JUDGE_PROMPTS_PATH
from uqroute.io import load_schema, load_yaml, schema_validator
from uqroute.models import load_model_registry
from uqroute.prompts import PromptSet
from uqroute.serve.router import model_cache_dir

schema_validator("config").validate(yaml.safe_load(Path(sys.argv[1]).read_text()))
print(json.dumps({
    "uqroute_file": uqroute.__file__,
    "uqroute_dirs": [entry for entry in sys.path if Path(entry or ".", "uqroute", "__init__.py").is_file()],
    "datasets": {name: dataset_info(name) for name in DATASET_NAMES},
    "models": {name: dataclasses.asdict(spec) for name, spec in load_model_registry().items()},
    "config_schema": load_schema("config"),
    "prompt_templates": sorted(PromptSet.load().templates),
    "judge_prompt_keys": sorted(load_yaml(JUDGE_PROMPTS_PATH)),
    "model_cache": str(model_cache_dir()),
}))
"""


def _run(command: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``command``, which must succeed, without the caller's PYTHONPATH (the test tier may point it at
    the checkout) or UQROUTE_* settings (the defaults of an installed package are under test)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith("UQROUTE_")}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    shown = " ".join(str(part) for part in command)[:300]
    assert result.returncode == 0, f"{shown}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of pyproject.toml and workflow/: setuptools builds in the source tree,
    and would leave build/ and an egg-info in the checkout."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(REPO_ROOT / "workflow", source / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source])
    (built,) = dist.glob("uqroute-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; its bin/ holds python and uqroute."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    # This interpreter's pip installs into the new venv: nothing to bootstrap there, nothing to download.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    # Written after the install, so that pip never saw the checkout's uqroute as installed already.
    dependencies = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (site_packages / "dependencies.pth").write_text("".join(f"{folder}\n" for folder in dependencies))
    return root


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """The working directory of every command: no checkout there or above it."""
    workdir = tmp_path_factory.mktemp("elsewhere")
    assert not any((parent / "Snakefile").exists() for parent in (workdir, *workdir.parents))
    return workdir


def test_the_wheel_carries_every_file_of_resources_and_schemas(wheel):
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for folder in (RESOURCES_DIR, SCHEMAS_DIR):
        files = {f"uqroute/{folder.name}/{path.name}" for path in folder.iterdir() if path.is_file()}
        assert files and files <= shipped, files - shipped


def test_the_installed_package_loads_its_registries_and_schemas_outside_the_checkout(venv, elsewhere):
    result = _run([venv / "bin" / "python", "-c", LOAD_PACKAGE_DATA, REPO_ROOT / "config" / "config.yaml"],
                  cwd=elsewhere)
    installed = json.loads(result.stdout)
    site_packages = Path(installed["uqroute_file"]).parents[1]
    assert site_packages.is_relative_to(venv), installed["uqroute_file"]
    assert installed["uqroute_dirs"] == [str(site_packages)]  # the checkout's editable uqroute did not leak in

    # The same registries and schema as the checkout's, read from the venv's site-packages.
    assert len(installed["datasets"]) == 14 and installed["datasets"]["gsm8k"]["task_type"] == "ff_num"
    assert installed["datasets"] == json.loads(json.dumps({name: dataset_info(name) for name in DATASET_NAMES}))
    assert installed["models"]["smollm2-135m"]["source"] == "gguf_wheel"
    checkout_models = {name: dataclasses.asdict(spec) for name, spec in load_model_registry().items()}
    assert installed["models"] == json.loads(json.dumps(checkout_models))
    assert installed["config_schema"] == load_schema("config")
    assert {"context", "option", "ptrue"} <= set(installed["prompt_templates"])
    assert {"system", "user"} <= set(installed["judge_prompt_keys"])
    # No checkout to hold results/: the router's fp32 model copies default to the working directory's.
    assert installed["model_cache"] == str(elsewhere / "results" / "models")


def _calibration_file(root: Path) -> Path:
    """A release file made by the workflow's own calibration_set job from three small UQ tables."""
    rng = np.random.default_rng(25)
    uq_paths = []
    for source in ("boolq", "piqa", "gsm8k"):
        confidence = rng.beta(2, 2, 200)
        table = pd.DataFrame({"id": [f"{source}-{i}" for i in range(200)], "confidence": confidence,
                              "prediction": "A", "correct": rng.random(200) < confidence, "valid": True})
        path = results_path(str(root), "uq", slm="smollm2-135m", dataset=source, method="perplexity")
        uq_paths.append(str(write_parquet(table, path)))
    calibration = root / "release" / "smollm2-135m" / "perplexity.parquet"
    analysis_jobs.calibration_set(uq=uq_paths, n_bins=30, fraction=0.1, seeds=[50, 51], output=str(calibration))
    return calibration


def test_the_installed_command_serves_help_and_prints_a_threshold_outside_the_checkout(venv, elsewhere):
    uqroute = venv / "bin" / "uqroute"
    for command in ("serve", "threshold"):
        result = _run([uqroute, command, "--help"], cwd=elsewhere)
        assert result.stdout.startswith(f"usage: uqroute {command}") and "--calibration" in result.stdout

    calibration = _calibration_file(elsewhere)
    for run in (0, 1):
        result = _run([uqroute, "threshold", "--calibration", calibration, "--ratio", "0.3", "--calibration-run",
                       str(run)], cwd=elsewhere)
        threshold = float(result.stdout)
        assert threshold == calibration_threshold(calibration, 0.3, run) and 0 < threshold < 1
