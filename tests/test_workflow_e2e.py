"""The embedded DAG end to end on a tiny slice of real data with the real tiny models.

One run builds every table and figure family; the tests then check the contracts, that no model
pass ran twice, the report, and (with a second run) that results are byte-for-byte reproducible.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from uqroute import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DATASETS = ["multiarith", "commonsenseqa", "boolq", "piqa"]
METHODS = ["avg_token_prob", "p_true", "perplexity", "jaccard_degree", "verbal_1s", "verbal_2s",
           "trained_probe", "ood_probe"]
SLM, LLM = "smollm2-135m", "gemma3-270m"


def tiny_config(data_dir: Path) -> dict:
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["data_dir"] = str(data_dir)
    config["datasets"] = DATASETS
    config["subset"] = {"max_test": 10, "max_train": 12, "seed": 50}
    config["generation"]["max_new_tokens"] = {"mcq": 8, "tf": 6, "ff_num": 40, "ff_text": 16}
    config["generation"]["verbal_max_new_tokens"] = 10
    config["calibration"].update(n_bins=5, fraction=0.5)
    return config


def run_workflow(workdir: Path, data_dir: Path, model_dirs: dict[str, Path], *extra: str) -> subprocess.CompletedProcess:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(data_dir)))
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


@pytest.fixture(scope="module")
def model_dirs(smollm2_dir, gemma3_dir):
    return {SLM: smollm2_dir, LLM: gemma3_dir}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir, model_dirs):
    workdir = tmp_path_factory.mktemp("e2e")
    result = run_workflow(workdir, data_dir, model_dirs)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, result


def test_every_contract_table_exists(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    expected_columns = {
        "greedy": {"id", "prompt", "response", "token_logprobs", "prediction", "correct"},
        "sample": {"id", "sample_idx", "response", "prediction"},
        "verbal1s": {"id", "response", "prediction", "correct", "verbal_confidence"},
        "verbal2s": {"id", "response", "verbal_confidence"},
        "ptrue": {"id", "p_true"},
    }
    for dataset in DATASETS:
        questions = pd.read_parquet(results / "data" / dataset / "test.parquet")
        assert len(questions) > 10, "data files hold the whole split"
        for pass_name, columns in expected_columns.items():
            table = pd.read_parquet(results / "gen" / SLM / dataset / "test" / f"{pass_name}.parquet")
            assert columns <= set(table.columns), (dataset, pass_name)
            assert table["id"].nunique() == 10
        hidden = pd.read_parquet(results / "hidden" / SLM / dataset / "test.parquet")
        assert {"id", "layer", "vector"} <= set(hidden.columns) and len(hidden) == 10
        llm = pd.read_parquet(results / "gen" / LLM / dataset / "test" / "greedy.parquet")
        assert set(llm["id"]) == set(hidden["id"]), "SLM and LLM answer the same questions"
        for method in METHODS:
            uq = pd.read_parquet(results / "uq" / SLM / dataset / f"{method}.parquet")
            assert list(uq.columns[:5]) == ["id", "confidence", "prediction", "correct", "valid"]
            assert len(uq) == 10, "rows a method cannot score are kept, marked invalid"
            routing = pd.read_parquet(results / "routing" / SLM / LLM / dataset / f"{method}.parquet")
            assert list(routing.columns[:4]) == ["ratio", "accuracy", "random_accuracy", "oracle_accuracy"]
            assert len(routing) == 101
            calibration = pd.read_parquet(results / "calibration" / SLM / method / f"holdout-{dataset}.parquet")
            assert dataset not in set(calibration["source_dataset"])
            generalization = pd.read_parquet(results / "generalization" / SLM / LLM / method / f"{dataset}.parquet")
            assert {"run", "target_ratio", "threshold", "achieved_ratio", "accuracy",
                    "oracle_threshold_accuracy"} <= set(generalization.columns)
    alignment = pd.read_parquet(results / "metrics" / "alignment.parquet")
    assert len(alignment) == len(DATASETS) * len(METHODS)
    assert {"slm", "dataset", "method", "n", "n_valid", "accuracy", "auroc", "prr", "aurc", "ece",
            "brier"} <= set(alignment.columns)
    routing = pd.read_parquet(results / "metrics" / "routing.parquet")
    assert {"apgr", "cpt20", "cpt50", "cpt80", "area"} <= set(routing.columns)
    assert len(pd.read_parquet(results / "metrics" / "findings.parquet")) > 0
    for method in METHODS:
        release = pd.read_parquet(results / "release" / SLM / f"{method}.parquet")
        assert set(release["source_dataset"]) <= set(DATASETS)
        assert set(zip(release["run"], release["seed"])) <= {(0, 50), (1, 51), (2, 52)}


def test_every_figure_family_is_drawn(finished_run):
    workdir, _ = finished_run
    figures = workdir / "results" / "figures"
    stems = [figures / "auroc_heatmaps", figures / "ratio_fidelity", figures / "confidence_distributions" / SLM]
    for family in ("routing_curves", "relative_accuracy", "generalization"):
        stems += [figures / family / LLM / dataset for dataset in DATASETS]
    for stem in stems:
        for suffix in (".pdf", ".png"):
            path = stem.with_suffix(suffix)
            assert path.stat().st_size > 1000, path


def test_no_model_pass_runs_twice(finished_run):
    """Eight methods read five passes: each pass file is made by exactly one job."""
    workdir, result = finished_run
    log = result.stdout + result.stderr
    pass_files = sorted((workdir / "results" / "gen").rglob("*.parquet"))
    generate_jobs = log.count("rule generate:") or log.count("localrule generate:")
    assert generate_jobs == len(pass_files), (generate_jobs, len(pass_files))
    benchmarks = list((workdir / "benchmarks" / "generate").rglob("*.tsv"))
    assert len(benchmarks) == len(pass_files)
    # Hidden states are a model call too: one job per (model, dataset, split) file.
    hidden_files = sorted((workdir / "results" / "hidden").rglob("*.parquet"))
    hidden_jobs = log.count("rule hidden_states:")
    assert hidden_jobs == len(hidden_files) == len(list((workdir / "benchmarks" / "hidden_states").rglob("*.tsv")))


def test_rerun_builds_nothing(finished_run, data_dir, model_dirs):
    workdir, _ = finished_run
    result = run_workflow(workdir, data_dir, model_dirs, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_report_gathers_every_figure(finished_run, data_dir, model_dirs):
    workdir, _ = finished_run
    result = run_workflow(workdir, data_dir, model_dirs, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    report = (workdir / "report.html").read_text(errors="ignore")
    assert "Findings" in report and "routing_curves" in report
    # Every figure file is in the report, each family under its numbered category, findings first.
    figures = sorted((workdir / "results" / "figures").rglob("*.png"))
    assert figures and all(path.name in report for path in figures)
    categories = ["1. Findings", "2. ", "3. Routing", "4. Relative accuracy"]
    assert all(category in report for category in categories)


def _table_hashes(results: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(results.rglob("*.parquet")):
        if ".checkpoints" in path.parts:
            continue
        frame = pd.read_parquet(path)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
        hashes[str(path.relative_to(results))] = digest.hexdigest()
    return hashes


def test_two_runs_give_identical_tables(finished_run, tmp_path_factory, data_dir, model_dirs):
    """Determinism: a second run from scratch reproduces every table's contents exactly."""
    workdir, _ = finished_run
    second = tmp_path_factory.mktemp("e2e-again")
    result = run_workflow(second, data_dir, model_dirs, "tables")
    assert result.returncode == 0, result.stderr[-6000:]
    first_hashes, second_hashes = _table_hashes(workdir / "results"), _table_hashes(second / "results")
    assert first_hashes.keys() == second_hashes.keys()
    differing = [name for name in first_hashes if first_hashes[name] != second_hashes[name]]
    assert not differing
