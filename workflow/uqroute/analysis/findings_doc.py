"""A study's findings as a Markdown page, written from its own tables (rule ``findings_doc``): which of the
paper's observations and insights hold for the study's models, with intervals, and how much each cell of the
study could say. Nothing in the page is typed by hand; rerunning the rule on the same tables gives the same
page, but for the machine line."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..datasets.registry import DATASET_NAMES, dataset_label
from ..uq.registry import METHOD_NAMES, method_label
from .findings import ALL
from .run_cost import rule_times

# What each statement of uqroute.analysis.verdicts says, in the paper's words.
CLAIMS = {
    "observation_1": "Observation 1: UQ methods differ in how well they align with correctness",
    "observation_2": "Observation 2: verbalized confidence aligns worse than perplexity",
    "observation_3": "Observation 3: trained probe, OOD probe and perplexity rank top three",
    "observation_4": "Observation 4: on its most confident queries the SLM comes close to the LLM",
    "insight_1": "Insight 1: the confidence distribution depends on the SLM and method, not the dataset",
    "insight_2": "Insight 2: calibration data from other datasets sets thresholds that generalize",
}


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return "none" if not (np.isfinite(low) and np.isfinite(high)) else f"[{low:.2f}, {high:.2f}]"


def _position(names) -> Callable[[str], tuple]:
    """Sort key: the registry's order, unknown names last."""
    order = {name: i for i, name in enumerate(names)}
    return lambda name: (order.get(name, len(order)), name)


def _claim(finding: str) -> str:
    for key, claim in CLAIMS.items():
        if finding.startswith(key):
            return claim
    return finding


def cost_lines(jobs: pd.DataFrame, engines: pd.DataFrame, questions: int) -> list[str]:
    """The page's section on what the run cost: job time per rule (:func:`~.run_cost.job_times` of its benchmark
    files) and the engines its jobs ran (:func:`~.run_cost.engine_runs`, the machine named), ``questions`` the
    test questions it scored."""
    if jobs.empty:
        return ["## What it cost", "", "The run left no benchmark files: its job times are unknown.", ""]
    by_rule = rule_times(jobs)
    total = float(by_rule["total_s"].sum())
    lines = [
        "## What it cost",
        "",
        f"{total / 3600:.1f} hours of job time over {int(by_rule['jobs'].sum())} jobs that keep a benchmark file "
        f"({total / questions:.1f} s per test question, its train question and the LLM's answer included). Job "
        "time is each job's wall time; jobs ran side by side, so the run's own wall time was shorter. A job "
        "stopped and resumed counts its last attempt only.",
        "",
    ]
    if not engines.empty:
        lines += ["| model | engine | dtype | where | jobs |", "|---|---|---|---|---|"]
        lines += [f"| {row.model} | {row.kind} | {row.dtype} | {row.where} | {row.jobs} |"
                  for row in engines.itertuples()]
        lines.append("")
    lines += ["| rule | jobs | job time (h) | mean (s) | longest (s) |", "|---|---|---|---|---|"]
    lines += [f"| {row.rule} | {row.jobs} | {row.total_s / 3600:.2f} | {row.mean_s:.1f} | {row.max_s:.1f} |"
              for row in by_rule.itertuples()]
    return lines + [""]


def findings_markdown(findings: pd.DataFrame, alignment: pd.DataFrame, *, source: str, machine: str, level: float,
                      resamples: int, max_auroc_width: float, jobs: pd.DataFrame | None = None,
                      engines: pd.DataFrame | None = None) -> str:
    """The page: the verdicts, then how wide the cells' AUROC intervals came out, then every cell's AUROC, and
    what the run cost when ``jobs`` (and ``engines``) are given (:func:`cost_lines`).

    ``findings``: metrics/findings.parquet (its rows with a verdict are the statements); ``alignment``:
    metrics/alignment.parquet with its intervals; ``source``: where the tables are, named on the page.
    """
    tested = findings[findings["verdict"].notna()]
    if tested.empty:
        raise ValueError(f"{source}: the findings table has no statement with a verdict; rerun rule findings")
    slms = ", ".join(sorted(alignment["slm"].unique()))
    # A statement pooled over the LLMs names them "all": not an LLM of the study.
    llms = ", ".join(sorted({str(v) for v in findings["llm"].dropna().unique()} - {ALL}))
    datasets = sorted(alignment["dataset"].unique(), key=_position(DATASET_NAMES))
    methods = sorted(alignment["method"].unique(), key=_position(METHOD_NAMES))
    per_cell = alignment.groupby(["slm", "dataset"])["n"].first()
    width = alignment["auroc_high"] - alignment["auroc_low"]
    narrow, with_interval = int((width <= max_auroc_width).sum()), int(width.notna().sum())
    lines = [
        f"# What the paper's findings become for {slms} -> {llms or 'n/a'}",
        "",
        f"Written by the workflow's rule `findings_doc` from `{source}` (the findings and alignment tables of one "
        "finished run); not edited by hand.",
        "",
        f"- SLM: {slms}; LLM: {llms or 'n/a'}; {len(datasets)} datasets, {len(methods)} UQ "
        f"methods; {int(per_cell.min())}-{int(per_cell.max())} test questions per dataset "
        f"({int(per_cell.sum())} in all).",
        f"- Intervals: {level:.0%} bootstrap over questions, {resamples} resamples; a statement about "
        "datasets is bootstrapped over datasets.",
        f"- Machine that wrote this page: {machine}.",
        "",
        "## Verdicts",
        "",
        "A statement **holds** when its interval lies on its side, **does not hold** when the interval lies on the "
        "other side, and is **undecided** when the interval straddles the line (or nothing could be measured).",
        "",
        "| statement | what decides it | value | interval | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in tested.itertuples():
        lines.append(f"| {_claim(row.finding)} | {row.description} | {_number(row.value)} | "
                     f"{_interval(row.low, row.high)} | **{row.verdict}** |")
    counts = tested["verdict"].value_counts()
    lines += [
        "",
        f"{counts.get('holds', 0)} hold, {counts.get('does not hold', 0)} do not, "
        f"{counts.get('undecided', 0)} undecided, of {len(tested)} statements.",
        "",
        "## How much each cell can say",
        "",
        f"{narrow} of {len(alignment)} (SLM, dataset, method) cells have an AUROC interval at most "
        f"{max_auroc_width:.2f} wide (+-{max_auroc_width / 2:.2f}); {len(alignment) - with_interval} have none (one "
        f"class only, or no valid confidence). Median width {_number(width.median())}. "
        f"{int(alignment['underpowered'].sum())} cells are underpowered (too few right or wrong answers, or a wider "
        "interval); their AUROCs say little either way.",
        "",
        "| dataset | questions | SLM right | median AUROC interval width | cells underpowered |",
        "|---|---|---|---|---|",
    ]
    for dataset in datasets:
        rows = alignment[alignment["dataset"] == dataset]
        n = int(rows["n"].iloc[0])
        right = int(rows["n_correct"].iloc[0])
        lines.append(f"| {dataset_label(dataset)} | {n} | {right} ({right / n:.0%}) | "
                     f"{_number((rows['auroc_high'] - rows['auroc_low']).median())} | "
                     f"{int(rows['underpowered'].sum())} of {len(rows)} |")
    lines += [
        "",
        "## AUROC of every cell",
        "",
        "AUROC and its interval; *italic*: underpowered.",
        "",
        "| dataset | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for dataset in datasets:
        cells = alignment[alignment["dataset"] == dataset].set_index("method")
        entries = []
        for method in methods:
            if method not in cells.index:
                entries.append("")
                continue
            cell = cells.loc[method]
            text = _number(cell["auroc"])
            if np.isfinite(cell["auroc_low"]):
                text += f" {_interval(cell['auroc_low'], cell['auroc_high'])}"
            entries.append(f"*{text}*" if cell["underpowered"] else text)
        lines.append(f"| {dataset_label(dataset)} | " + " | ".join(entries) + " |")
    if jobs is not None:
        lines += [""] + cost_lines(jobs, engines if engines is not None else pd.DataFrame(), int(per_cell.sum()))
    return "\n".join(lines).rstrip("\n") + "\n"
