"""The embedded DAG end to end on a tiny slice of real data with the real tiny models.

One run builds every table and figure family; the tests then check the contracts, that no model
pass ran twice, the report, which jobs a changed setting reruns, and (with the session's two runs of the
smaller slice) that results are byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workflow_runs import (DATASETS, METHODS, assert_same_tables, check_contracts, check_figures,
                           check_model_passes_ran_once, check_tables_match_contracts, plan, run_workflow, tiny_config)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir, model_dirs):
    workdir = tmp_path_factory.mktemp("e2e")
    result = run_workflow(workdir, data_dir, model_dirs)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, result


def test_every_contract_table_exists(finished_run):
    check_contracts(finished_run[0])


def test_every_table_matches_docs_contracts(finished_run):
    # Every method is calibrated here (three datasets or more), so every documented table has a file.
    check_tables_match_contracts(finished_run[0] / "results", absent={
        "hidden/{model}/{dataset}/{split}.question.parquet": "P(IK)'s pass; the embedded default's methods are the "
                                                             "paper's eight (tests/test_passes.py and "
                                                             "tests/test_serve_e2e.py run P(IK)'s pass and jobs)"})


def test_every_figure_family_is_drawn(finished_run):
    check_figures(finished_run[0])


def test_no_model_pass_runs_twice(finished_run):
    workdir, result = finished_run
    check_model_passes_ran_once(workdir, result.stdout + result.stderr)


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


def planned_after(workdir: Path, data_dir: Path, change) -> dict[str, list[dict]]:
    """Rule -> planned jobs of a dry run on the finished run after ``change(config)``."""
    config = tiny_config(data_dir)
    change(config)
    override = workdir / "changed.yaml"
    override.write_text(yaml.safe_dump(config))
    jobs: dict[str, list[dict]] = {}
    for job in plan(workdir, configfiles=[override]):
        jobs.setdefault(job["rule"], []).append(job)
    return jobs


MODEL_RULES = {"prepare_model", "generate", "generate_replies", "hidden_states"}


def _passes(jobs: list[dict]) -> set[str]:
    return {job["wildcards"]["pass_name"] for job in jobs}


def test_n_samples_reruns_only_the_sample_passes(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir,
                         lambda c: c["generation"].update(n_samples=6))
    assert MODEL_RULES & set(jobs) == {"generate"} and _passes(jobs["generate"]) == {"sample"}
    assert len(jobs["generate"]) == len(DATASETS)
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"jaccard_degree"}
    assert "grade" not in jobs


def test_verbal_budget_reruns_only_the_verbal_passes(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir,
                         lambda c: c["generation"].update(verbal_max_new_tokens=11))
    assert MODEL_RULES & set(jobs) == {"generate", "generate_replies"}
    assert _passes(jobs["generate"]) == {"verbal2s"} and _passes(jobs["generate_replies"]) == {"verbal1s"}
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"verbal_1s", "verbal_2s"}


def test_one_task_types_budget_reruns_only_its_datasets(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir,
                         lambda c: c["generation"]["max_new_tokens"].update(tf=7))
    model_jobs = [job for rule in MODEL_RULES & set(jobs) for job in jobs[rule]]
    assert model_jobs and {job["wildcards"]["dataset"] for job in model_jobs} == {"boolq"}
    passes = [job for rule in ("generate", "generate_replies") for job in jobs.get(rule, [])]
    # greedy, sample and verbal1s read the answer budget; ptrue and verbal2s follow, as they read greedy replies.
    assert _passes(passes) == {"greedy", "sample", "verbal1s", "ptrue", "verbal2s"}
    assert {job["wildcards"]["dataset"] for job in jobs["hidden_states"]} == {"boolq"}


def test_routing_step_reruns_no_model_job(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, lambda c: c["analysis"].update(routing_step=0.02))
    assert not MODEL_RULES & set(jobs) and "uq" not in jobs and "grade" not in jobs
    assert len(jobs["routing_curve"]) == len(DATASETS) * len(METHODS)


def test_judge_reruns_grading_and_no_model_pass(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir,
                         lambda c: c.update(judge={"engine": "openai", "model": "gpt-4o-mini"}))
    assert not MODEL_RULES & set(jobs)
    assert {job["wildcards"]["pass_name"] for job in jobs["grade"]} == {"greedy", "verbal1s"}


def test_probe_settings_rerun_only_probe_scores(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, lambda c: c["probe"].update(epochs=21))
    assert not MODEL_RULES & set(jobs) and "grade" not in jobs
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"trained_probe", "ood_probe"}


def test_two_runs_give_identical_tables(slice_run, slice_rerun):
    """Determinism: a second run from scratch writes every table of the slice byte for byte the same.

    The slice (two datasets, three methods) has every kind of job: data, the greedy and p(True) passes,
    grading, hidden states, the probe, and the routing, calibration and generalization tables. The second run is
    the session's (tests/conftest.py): through SLURM where a cluster answers, which tests/test_slurm.py checks too,
    by the local executor otherwise.
    """
    assert_same_tables(slice_run, slice_rerun.workdir)
