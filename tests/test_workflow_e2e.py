"""The embedded DAG end to end on a tiny slice of real data with the real tiny models.

One run builds every table and figure family; the tests then check the contracts, that no model
pass ran twice, the report, which jobs a changed setting reruns, and (with a second run of the
smaller slice) that results are byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from uqroute.engines.options import resolve_dtype
from uqroute.io import table_metadata
from workflow_runs import DATASETS, LLM, METHODS, SLM, parquet_bytes, run_workflow, slice_config, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir, model_dirs):
    workdir = tmp_path_factory.mktemp("e2e")
    result = run_workflow(workdir, data_dir, model_dirs)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, result


def run_grid(workdir: Path) -> tuple[list[str], list[str], list[str]]:
    """Datasets, methods and calibration methods of the run in ``workdir`` (its config/config.yaml)."""
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    return config["datasets"], config["methods"], config["calibration"]["methods"] or config["methods"]


def test_every_contract_table_exists(finished_run):
    check_contracts(finished_run[0])


def check_contracts(workdir: Path) -> None:
    """Every table of the run's grid exists with its contract's columns and rows."""
    results = workdir / "results"
    datasets, methods, calibrated = run_grid(workdir)
    expected_columns = {
        "greedy": {"id", "prompt", "response", "token_logprobs", "prediction", "correct"},
        "sample": {"id", "sample_idx", "response", "prediction"},
        "verbal1s": {"id", "response", "prediction", "correct", "verbal_confidence"},
        "verbal2s": {"id", "response", "verbal_confidence"},
        "ptrue": {"id", "p_true"},
    }
    for dataset in datasets:
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
        for method in methods:
            uq = pd.read_parquet(results / "uq" / SLM / dataset / f"{method}.parquet")
            assert list(uq.columns[:5]) == ["id", "confidence", "prediction", "correct", "valid"]
            assert len(uq) == 10, "rows a method cannot score are kept, marked invalid"
            routing = pd.read_parquet(results / "routing" / SLM / LLM / dataset / f"{method}.parquet")
            assert list(routing.columns[:4]) == ["ratio", "accuracy", "random_accuracy", "oracle_accuracy"]
            assert len(routing) == 101
            if method not in calibrated:
                continue
            calibration = pd.read_parquet(results / "calibration" / SLM / method / f"holdout-{dataset}.parquet")
            assert dataset not in set(calibration["source_dataset"])
            generalization = pd.read_parquet(results / "generalization" / SLM / LLM / method / f"{dataset}.parquet")
            assert {"run", "target_ratio", "threshold", "achieved_ratio", "accuracy",
                    "oracle_threshold_accuracy"} <= set(generalization.columns)
    for dataset in datasets if "ood_probe" in calibrated else []:
        # The OOD probe's calibration pool for each hold-out, scored by probes that never saw it.
        pool = pd.read_parquet(results / "holdout-uq" / SLM / "ood_probe" / f"without-{dataset}.parquet")
        assert set(pool["dataset"]) == set(datasets) - {dataset} and len(pool) == 10 * (len(datasets) - 1)
    alignment = pd.read_parquet(results / "metrics" / "alignment.parquet")
    assert len(alignment) == len(datasets) * len(methods)
    assert {"slm", "dataset", "method", "n", "n_valid", "accuracy", "auroc", "prr", "aurc", "ece",
            "brier"} <= set(alignment.columns)
    routing = pd.read_parquet(results / "metrics" / "routing.parquet")
    assert {"apgr", "cpt20", "cpt50", "cpt80", "area"} <= set(routing.columns)
    assert len(pd.read_parquet(results / "metrics" / "findings.parquet")) > 0
    check_truncation(workdir)
    check_dtypes(workdir)
    from uqroute.uq.probes import load_probe

    if "ood_probe" in calibrated:
        _, probe = load_probe(results / "release" / SLM / "ood_probe.probe.pt")
        assert (probe["slm"], probe["method"], probe["layer"], probe["datasets"]) == (SLM, "ood_probe", -8, datasets)
    for method in calibrated:
        release = pd.read_parquet(results / "release" / SLM / f"{method}.parquet")
        assert set(release["source_dataset"]) <= set(datasets)
        assert set(zip(release["run"], release["seed"])) <= {(0, 50), (1, 51), (2, 52)}


def check_dtypes(workdir: Path) -> None:
    """The config pins no dtype: every table a model wrote names the dtype its job chose on this machine,
    and every model job's log says what ``auto`` became."""
    expected = resolve_dtype("auto", "cpu")
    tables = [path for folder in ("gen", "hidden") for path in (workdir / "results" / folder).rglob("*.parquet")]
    assert tables
    for path in tables:
        assert table_metadata(path) == {"uqroute.dtype": expected}, path
    logs = [path for rule in ("generate_replies", "generate", "generate_cell", "hidden_states")
            for path in (workdir / "logs" / rule).rglob("*.log")]
    assert logs
    for path in logs:
        assert f"dtype auto -> {expected} on cpu (" in path.read_text(), path


def check_truncation(workdir: Path) -> None:
    """One row per generating pass table of the run, each under the budget its config gave that pass."""
    results = workdir / "results"
    generation = yaml.safe_load((workdir / "config" / "config.yaml").read_text())["generation"]
    answer, verbal = generation["max_new_tokens"], generation["verbal_max_new_tokens"]
    truncation = pd.read_parquet(results / "metrics" / "truncation.parquet")
    tables = {path.relative_to(results / "gen").with_suffix("").parts for path in (results / "gen").rglob("*.parquet")
              if not path.name.endswith(".replies.parquet") and path.stem != "ptrue"}
    assert set(truncation[["model", "dataset", "split", "pass_name"]].itertuples(index=False, name=None)) == tables
    for row in truncation.itertuples():
        expected = {"greedy": answer[row.task_type], "sample": answer[row.task_type],
                    "verbal1s": answer[row.task_type] + verbal, "verbal2s": verbal}[row.pass_name]
        # Text-only passes are re-tokenized, which can differ from the generated ids by a token.
        assert row.budget == expected and row.max_tokens <= expected + (row.pass_name != "greedy"), row
        assert row.uncounted == 0, row  # every engine here stores tokens or has a tokenizer
        if row.pass_name == "greedy":  # counted exactly from the stored token ids
            tokens = pd.read_parquet(results / "gen" / row.model / row.dataset / row.split / "greedy.parquet")["tokens"]
            assert (row.replies, row.at_budget) == (len(tokens), sum(len(t) == expected for t in tokens)), row


def test_every_figure_family_is_drawn(finished_run):
    check_figures(finished_run[0])


def check_figures(workdir: Path) -> None:
    figures = workdir / "results" / "figures"
    datasets, _, _ = run_grid(workdir)
    stems = [figures / "auroc_heatmaps", figures / "ratio_fidelity", figures / "confidence_distributions" / SLM]
    for family in ("routing_curves", "relative_accuracy", "generalization"):
        stems += [figures / family / LLM / dataset for dataset in datasets]
    for stem in stems:
        for suffix in (".pdf", ".png"):
            path = stem.with_suffix(suffix)
            assert path.stat().st_size > 1000, path


def test_no_model_pass_runs_twice(finished_run):
    """Eight methods read five passes: each model pass is made by exactly one job, and grading is no model pass."""
    workdir, result = finished_run
    log = result.stdout + result.stderr
    gen_files = sorted((workdir / "results" / "gen").rglob("*.parquet"))
    replies = [path for path in gen_files if path.name.endswith(".replies.parquet")]
    graded = [path for path in gen_files if path.name in ("greedy.parquet", "verbal1s.parquet")]
    model_outputs = [path for path in gen_files if path not in graded]
    # Under generation.one_job_per: cell, one generate_cell job makes every pass file of its cell.
    cell_benchmarks = workdir / "benchmarks" / "generate_cell"
    cells = {workdir / "results" / "gen" / p.relative_to(cell_benchmarks).with_suffix("")
             for p in cell_benchmarks.rglob("*.tsv")}
    in_cells = [path for path in model_outputs if path.parent in cells]
    assert log.count("rule generate_cell:") == len(cells)
    assert all(sum(path.parent == cell for path in in_cells) >= 2 for cell in cells)
    model_jobs = log.count("rule generate:") + log.count("rule generate_replies:")
    assert model_jobs == len(model_outputs) - len(in_cells), (model_jobs, len(model_outputs), len(in_cells))
    assert log.count("rule grade:") == len(graded) == len(replies)
    benchmarks = list((workdir / "benchmarks" / "generate").rglob("*.tsv"))
    assert len(benchmarks) == model_jobs
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


def planned_after(workdir: Path, data_dir: Path, model_dirs, change) -> dict[str, list[dict]]:
    """Rule -> planned jobs of a dry run on the finished run after ``change(config)``."""
    from test_paper_grid import planned_jobs

    config = tiny_config(data_dir)
    change(config)
    override = workdir / "changed.yaml"
    override.write_text(yaml.safe_dump(config))
    result = run_workflow(workdir, data_dir, model_dirs, "-n", "--configfile", str(override))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs: dict[str, list[dict]] = {}
    for job in planned_jobs(result.stdout):
        jobs.setdefault(job["rule"], []).append(job)
    return jobs


MODEL_RULES = {"prepare_model", "generate", "generate_replies", "hidden_states"}


def _passes(jobs: list[dict]) -> set[str]:
    return {job["wildcards"]["pass_name"] for job in jobs}


def test_n_samples_reruns_only_the_sample_passes(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs,
                         lambda c: c["generation"].update(n_samples=6))
    assert MODEL_RULES & set(jobs) == {"generate"} and _passes(jobs["generate"]) == {"sample"}
    assert len(jobs["generate"]) == len(DATASETS)
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"jaccard_degree"}
    assert "grade" not in jobs


def test_verbal_budget_reruns_only_the_verbal_passes(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs,
                         lambda c: c["generation"].update(verbal_max_new_tokens=11))
    assert MODEL_RULES & set(jobs) == {"generate", "generate_replies"}
    assert _passes(jobs["generate"]) == {"verbal2s"} and _passes(jobs["generate_replies"]) == {"verbal1s"}
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"verbal_1s", "verbal_2s"}


def test_one_task_types_budget_reruns_only_its_datasets(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs,
                         lambda c: c["generation"]["max_new_tokens"].update(tf=7))
    model_jobs = [job for rule in MODEL_RULES & set(jobs) for job in jobs[rule]]
    assert model_jobs and {job["wildcards"]["dataset"] for job in model_jobs} == {"boolq"}
    passes = [job for rule in ("generate", "generate_replies") for job in jobs.get(rule, [])]
    # greedy, sample and verbal1s read the answer budget; ptrue and verbal2s follow, as they read greedy replies.
    assert _passes(passes) == {"greedy", "sample", "verbal1s", "ptrue", "verbal2s"}
    assert {job["wildcards"]["dataset"] for job in jobs["hidden_states"]} == {"boolq"}


def test_routing_step_reruns_no_model_job(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs, lambda c: c["analysis"].update(routing_step=0.02))
    assert not MODEL_RULES & set(jobs) and "uq" not in jobs and "grade" not in jobs
    assert len(jobs["routing_curve"]) == len(DATASETS) * len(METHODS)


def test_judge_reruns_grading_and_no_model_pass(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs,
                         lambda c: c.update(judge={"engine": "openai", "model": "gpt-4o-mini"}))
    assert not MODEL_RULES & set(jobs)
    assert {job["wildcards"]["pass_name"] for job in jobs["grade"]} == {"greedy", "verbal1s"}


def test_probe_settings_rerun_only_probe_scores(finished_run, data_dir, model_dirs):
    jobs = planned_after(finished_run[0], data_dir, model_dirs, lambda c: c["probe"].update(epochs=21))
    assert not MODEL_RULES & set(jobs) and "grade" not in jobs
    assert {job["wildcards"]["method"] for job in jobs["uq"]} == {"trained_probe", "ood_probe"}


def test_two_runs_give_identical_tables(slice_run, tmp_path_factory, data_dir, model_dirs):
    """Determinism: a second run from scratch writes every table of the slice byte for byte the same.

    The slice (two datasets, three methods) has every kind of job: data, the greedy and p(True) passes,
    grading, hidden states, the probe, and the routing, calibration and generalization tables.
    """
    second = tmp_path_factory.mktemp("slice-again")
    result = run_workflow(second, data_dir, model_dirs, "tables", config=slice_config(data_dir))
    assert result.returncode == 0, result.stderr[-6000:]
    first, again = parquet_bytes(slice_run / "results"), parquet_bytes(second / "results")
    assert first.keys() == again.keys() and len(first) > 40
    differing = [name for name in first if first[name] != again[name]]
    assert not differing, f"Parquet bytes differ: {differing}"
