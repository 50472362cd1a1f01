"""generation.one_job_per: cell plans one model job per SLM test cell and writes what the per-pass jobs write;
with the SLM on transformers the cells make its hidden states too, and its train split is a cell of its own.

The dry runs are fast (planned in the test process); the byte comparison runs the real SmolLM2 on the tiny slice,
a test and a train cell of one dataset, and compares them with the per-pass tables of the shared slice run
(conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uqroute.paths import results_path
from workflow_runs import SLM, count_rules, outputs, plan, run_workflow, slice_config, tiny_config

MODEL_JOB_RULES = ("generate", "generate_replies", "generate_cell", "generate_train_cell", "hidden_states")


def dry_run(workdir: Path, config: dict, *targets: str) -> list[dict]:
    """The jobs a dry run of ``config`` plans in ``workdir`` (in this process)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return plan(workdir, *targets, config=config)


@pytest.fixture(scope="module")
def plans(tmp_path_factory, data_dir):
    """Dry runs of the embedded grid (tiny config: three datasets, eight methods), one job per pass and per cell."""
    plans = {}
    for granularity in ("pass", "cell"):
        config = tiny_config(data_dir)
        config["generation"]["one_job_per"] = granularity
        plans[granularity] = dry_run(tmp_path_factory.mktemp(f"plan-{granularity}"), config)
    return plans


def test_one_job_per_cell_makes_the_same_files_with_fewer_model_jobs(plans):
    per_pass, per_cell = count_rules(plans["pass"]), count_rules(plans["cell"])
    datasets = len(tiny_config(Path("."))["datasets"])
    # Per pass: the SLM's 5 test passes (3 ungraded + 2 graded), its train greedy and the LLM's greedy, per dataset,
    # and the SLM's hidden states of each split.
    assert (per_pass["generate"], per_pass["generate_replies"]) == (3 * datasets, 2 * datasets + 2 * datasets)
    assert per_pass["hidden_states"] == 2 * datasets and "generate_cell" not in per_pass
    # Per cell: one job makes the SLM's five test passes and hidden states, one its train greedy and hidden
    # states (it generates on transformers, as its hidden-state jobs would); the LLM keeps its one pass.
    assert per_cell["generate_cell"] == per_cell["generate_train_cell"] == per_cell["generate_replies"] == datasets
    assert "generate" not in per_cell and "hidden_states" not in per_cell
    assert sum(per_cell.get(rule, 0) for rule in MODEL_JOB_RULES) == 3 * datasets
    assert outputs(plans["pass"]) == outputs(plans["cell"])
    for rule in set(per_pass) - set(MODEL_JOB_RULES):
        assert per_cell[rule] == per_pass[rule], rule


def test_a_cell_job_writes_every_pass_file_of_its_cell(plans):
    cells = [job for job in plans["cell"] if job["rule"] == "generate_cell"]
    for job in cells:
        wildcards = job["wildcards"]
        assert wildcards["model"] == SLM and wildcards["split"] == "test"
        folder = f"results/gen/{SLM}/{wildcards['dataset']}/test"
        assert sorted(job["output"]) == sorted([*(f"{folder}/{name}" for name in (
            "greedy.replies.parquet", "verbal1s.replies.parquet", "sample.parquet", "verbal2s.parquet",
            "ptrue.parquet")), f"results/hidden/{SLM}/{wildcards['dataset']}/test.parquet"])
    for job in (job for job in plans["cell"] if job["rule"] == "generate_train_cell"):
        dataset = job["wildcards"]["dataset"]
        assert job["wildcards"]["split"] == "train" and sorted(job["output"]) == [
            f"results/gen/{SLM}/{dataset}/train/greedy.replies.parquet",
            f"results/hidden/{SLM}/{dataset}/train.parquet"]


def test_hidden_states_keep_their_jobs_where_the_slm_generates_on_vllm(tmp_path, data_dir):
    """A cell on vLLM cannot read hidden states (transformers does): the hidden-state jobs and the train split's
    greedy pass jobs stay as without cells."""
    config = tiny_config(data_dir)
    config["generation"]["one_job_per"] = "cell"
    config["engines"][SLM] = {"kind": "vllm", "device": "cpu", "dtype": "auto"}
    counts = count_rules(dry_run(tmp_path, config))
    datasets = len(config["datasets"])
    assert (counts["generate_cell"], counts["generate_replies"], counts["hidden_states"]) == (
        datasets, 2 * datasets, 2 * datasets)
    assert "generate_train_cell" not in counts


def test_asking_for_one_pass_file_reruns_only_its_cell(tmp_path, data_dir):
    config = tiny_config(data_dir)
    config["generation"]["one_job_per"] = "cell"
    target = f"results/gen/{SLM}/boolq/test/sample.parquet"
    jobs = dry_run(tmp_path, config, target)
    model_jobs = [job for job in jobs if job["rule"] in MODEL_JOB_RULES]
    assert [(job["rule"], job["wildcards"]["dataset"]) for job in model_jobs] == [("generate_cell", "boolq")]


def test_a_cell_with_one_pass_keeps_its_pass_job(tmp_path, data_dir):
    config = tiny_config(data_dir)
    config["generation"]["one_job_per"] = "cell"
    config["methods"] = ["avg_token_prob", "perplexity"]  # both read the greedy pass only
    counts = count_rules(dry_run(tmp_path, config))
    assert "generate_cell" not in counts and "generate" not in counts


@pytest.mark.slow
def test_cell_jobs_write_the_bytes_the_pass_jobs_write(tmp_path, data_dir, model_dirs, slice_run):
    """The slice's SmolLM2 passes for one dataset, on transformers, made by cells: the test cell (greedy replies,
    p(True) on them, the hidden states) and the train cell (greedy replies, hidden states) write the bytes the
    slice's one-job-per-pass run wrote, with an engine that prefills each prompt whole as a pass job's fresh engine
    does (a cell's engine otherwise starts its follow-ups from the greedy conversations it stored:
    tests/test_engine_hf.py, tests/test_jobs.py)."""
    config = slice_config(data_dir)
    config["generation"]["one_job_per"] = "cell"
    config["engines"][SLM]["prefix_cache_mb"] = 0
    cell = {"model": SLM, "dataset": "commonsenseqa"}
    targets = [results_path("results", "replies", split="test", pass_name="greedy", **cell),
               results_path("results", "gen", split="test", pass_name="ptrue", **cell),
               results_path("results", "hidden", split="test", **cell),
               results_path("results", "replies", split="train", pass_name="greedy", **cell),
               results_path("results", "hidden", split="train", **cell)]
    result = run_workflow(tmp_path, data_dir, model_dirs, *targets, config=config)
    assert result.returncode == 0, result.stderr[-6000:]
    log = result.stdout + result.stderr
    assert log.count("rule generate_cell:") == log.count("rule generate_train_cell:") == 1
    assert "rule generate:" not in log and "rule generate_replies:" not in log and "rule hidden_states:" not in log
    for target in targets:
        assert (tmp_path / target).read_bytes() == (slice_run / target).read_bytes(), target
