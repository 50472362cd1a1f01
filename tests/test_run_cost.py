"""What a run cost, read back from its benchmark files and job logs, and the findings page's section on it."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from uqroute.analysis.findings_doc import cost_lines
from uqroute.analysis.run_cost import engine_runs, job_times, rule_times
from uqroute.engines.options import ENGINE_LINE, engine_dtype, parse_engine_line

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def benchmark(path, seconds: float, rss: float = 100.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t90.0\t{seconds}\n")


def test_job_times_sum_per_rule_from_snakemakes_benchmark_files(tmp_path):
    benchmark(tmp_path / "generate_cell/slm/boolq/test.tsv", 500.0, rss=2400)
    benchmark(tmp_path / "generate_cell/slm/piqa/test.tsv", 300.0, rss=2600)
    benchmark(tmp_path / "uq/slm/boolq/perplexity.tsv", 1.5)
    jobs = job_times(tmp_path)
    assert sorted(jobs["job"]) == ["slm/boolq/perplexity", "slm/boolq/test", "slm/piqa/test"]
    table = rule_times(jobs).set_index("rule")
    assert list(table.index) == ["generate_cell", "uq"]  # most job time first
    cell = table.loc["generate_cell"]
    assert (cell["jobs"], cell["total_s"], cell["mean_s"], cell["max_s"], cell["peak_rss_mb"]) == (2, 800, 400, 500,
                                                                                                   2600)
    assert job_times(tmp_path / "nothing").empty and rule_times(job_times(tmp_path / "nothing")).empty


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    bad = tmp_path / "grade/slm/boolq/test/greedy.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("seconds\n3\n")
    with pytest.raises(ValueError, match=r"grade/slm/boolq/test/greedy\.tsv: not a Snakemake benchmark file"):
        job_times(tmp_path)


def test_the_engine_line_a_job_logs_is_read_back(tmp_path, caplog):
    """The line engine_dtype logs, with the machine it ran on, is the line engine_runs counts: one home for its
    format (ENGINE_LINE)."""
    with caplog.at_level(logging.INFO, logger="uqroute.engines.options"):
        chosen = engine_dtype("smollm2-135m", "hf", "float32", "cuda:1")
    logged = caplog.records[-1].getMessage()
    assert parse_engine_line(f"2026-12-07 08:00:00,000 uqroute.engines.options INFO {logged}\n") == {
        "model": "smollm2-135m", "kind": "hf", "asked": "float32", "dtype": chosen, "where": "cuda:1"}
    assert parse_engine_line("2026-12-07 08:00:00,000 uqroute.jobs.generate INFO x.parquet: 250 rows") is None

    cpu = "cpu (Some CPU, AVX512, native bf16, 2 cores)"
    logs = {"generate_cell/slm/boolq/test.log": ENGINE_LINE % ("slm", "hf", "auto", "bfloat16", cpu),
            "generate_cell/slm/piqa/test.log": ENGINE_LINE % ("slm", "hf", "auto", "bfloat16", cpu),
            "generate/llm/boolq/test/greedy.log": ENGINE_LINE % ("llm", "vllm", "auto", "float32", "cpu (Other)"),
            "grade/slm/boolq/test/greedy.log": "uqroute.jobs.generate INFO 3 of 16 answers correct"}
    for name, text in logs.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"2026-12-07 08:00:00,000 uqroute.engines.options INFO {text}\nmore\n")
    runs = engine_runs(tmp_path)
    assert runs.to_dict("records") == [
        {"model": "llm", "kind": "vllm", "dtype": "float32", "where": "cpu (Other)", "jobs": 1},
        {"model": "slm", "kind": "hf", "dtype": "bfloat16", "where": cpu, "jobs": 2}]


def test_the_findings_page_says_what_the_run_cost(tmp_path):
    benchmark(tmp_path / "generate_cell/slm/boolq/test.tsv", 5400.0)
    benchmark(tmp_path / "hidden_states/slm/boolq/test.tsv", 1800.0)
    engines = pd.DataFrame([{"model": "slm", "kind": "hf", "dtype": "bfloat16", "where": "cpu (Some CPU)", "jobs": 2}])
    page = "\n".join(cost_lines(job_times(tmp_path), engines, questions=720))
    assert "2.0 hours of job time over 2 jobs" in page and "10.0 s per test question" in page
    assert "| slm | hf | bfloat16 | cpu (Some CPU) | 2 |" in page
    assert "| generate_cell | 1 | 1.50 | 5400.0 | 5400.0 |" in page
    assert "job times are unknown" in "\n".join(cost_lines(job_times(tmp_path / "none"), engines, questions=1))
