"""Jobs of the analysis stage: alignment, routing, relative accuracy, calibration data, the share controller's
replay, findings.

Every job that reads many cells takes their paths only; each cell's coordinates come from its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.alignment import PowerSettings, alignment_tables
from ..analysis.bootstrap import BootstrapSettings, question_weights
from ..analysis.calibration import build_calibration_set, pool_confidences
from ..analysis.card import card_json, check_target_ratios, file_sha256, recorded_dtype, router_card
from ..analysis.calibration import generalization as apply
from ..analysis.controller import ControllerSettings, ReplaySettings, replay_table
from ..analysis.findings import distribution_distances, findings_table, scaled_confidences
from ..analysis.findings_doc import findings_markdown
from ..analysis.grading import count_grading
from ..analysis.routing import align_llm_correct, ratio_grid, routing_metrics_row
from ..analysis.run_cost import engine_runs, job_times
from ..analysis.routing import relative_accuracy as relative
from ..analysis.routing import routing_curve as curve
from ..analysis.truncation import count_truncation
from ..analysis.verdicts import statements
from ..io import read_parquet, read_tagged, table_metadata, write_parquet, write_text
from ..machine import cpu_description
from ..paths import cell_of, kind_of, template
from ..uq.tables import ROUTING_COLUMNS



def _uq_and_llm(uq_path: str, llm_path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A UQ table and the LLM's correctness on each of its rows."""
    uq = read_parquet(uq_path, ROUTING_COLUMNS)
    return uq, align_llm_correct(uq, read_parquet(llm_path, ["id", "correct"]), label=llm_path)


def alignment(*, uq: Sequence[str], ece_bins: int, bootstrap: Mapping, power: Mapping, alignment: str,
              comparisons: str, resamples: str) -> None:
    """The alignment metrics of every UQ table with their intervals, every paired comparison of methods, and
    every cell's AUROC under every resample."""
    cells = [(*(cell_of(path, "uq")[k] for k in ("slm", "dataset", "method")), read_parquet(path)) for path in uq]
    table, compared, resampled = alignment_tables(cells, ece_bins=ece_bins,
                                                  bootstrap=BootstrapSettings.from_config(bootstrap),
                                                  power=PowerSettings.from_config(power))
    write_parquet(table, alignment)
    write_parquet(compared, comparisons)
    write_parquet(resampled, resamples)


def _resamples(table: pd.DataFrame, bootstrap: Mapping, path: str) -> tuple[np.ndarray, float]:
    """The bootstrap weights of a UQ table's rows for a curve's band (the first ``curve_resamples`` of its cell's
    resamples, the cell named by the path) and the level."""
    settings = BootstrapSettings.from_config(bootstrap).for_curves
    cell = cell_of(path, kind_of(path, ("uq", "holdout_uq")))
    return question_weights(table["id"], settings, cell["slm"], cell["dataset"]), settings.level


def routing_curve(*, uq: str, llm: str, step: float, bootstrap: Mapping, output: str, invalid: str = "drop") -> None:
    table, llm_correct = _uq_and_llm(uq, llm)
    weights, level = _resamples(table, bootstrap, uq)
    write_parquet(curve(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                        ratios=ratio_grid(step), invalid=invalid, weights=weights, level=level), output)


def routing_metrics(*, curves: Sequence[str], output: str) -> None:
    rows = [routing_metrics_row(read_parquet(path, ["ratio", "accuracy", "n"]), **cell_of(path, "routing"))
            for path in curves]
    write_parquet(pd.DataFrame(rows), output)


def relative_accuracy(*, uq: Sequence[str], llm: Sequence[str], step: int, bootstrap: Mapping, output: str,
                      invalid: str = "drop") -> None:
    """Every (SLM, dataset, method) UQ table against every LLM's answers on the same dataset."""
    llm_by_dataset: dict[str, list[tuple[str, str]]] = {}
    for path in llm:
        cell = cell_of(path, "gen")
        llm_by_dataset.setdefault(cell["dataset"], []).append((cell["model"], path))
    frames = []
    for uq_path in uq:
        cell = cell_of(uq_path, "uq")
        weights = None
        for llm_name, llm_path in llm_by_dataset.get(cell["dataset"], []):
            table, llm_correct = _uq_and_llm(uq_path, llm_path)
            if weights is None:  # the same resamples for every LLM of the cell
                weights, level = _resamples(table, bootstrap, uq_path)
            result = relative(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                              excluded=range(0, 91, step), invalid=invalid, weights=weights, level=level)
            frames.append(result.assign(slm=cell["slm"], llm=llm_name, dataset=cell["dataset"],
                                        method=cell["method"]))
    table = pd.concat(frames, ignore_index=True)
    leading = ["slm", "llm", "dataset", "method"]
    write_parquet(table[leading + [c for c in table.columns if c not in leading]], output)


def _uq_by_dataset(paths: Sequence[str]) -> dict[str, pd.DataFrame]:
    """UQ tables by dataset: one per ``uq`` file, or each dataset's rows of a ``holdout_uq`` file."""
    tables: dict[str, pd.DataFrame] = {}
    for path in paths:
        if kind_of(path, ("uq", "holdout_uq")) == "uq":
            tables[cell_of(path, "uq")["dataset"]] = read_parquet(path, ROUTING_COLUMNS)
            continue
        for dataset, rows in read_parquet(path, [*ROUTING_COLUMNS, "dataset"]).groupby("dataset", sort=False):
            tables[dataset] = rows[ROUTING_COLUMNS].reset_index(drop=True)
    return tables


def calibration_set(*, uq: Sequence[str], n_bins: int, fraction: float, seeds: Sequence[int], output: str) -> None:
    """Algorithm 1 over the pooled valid confidences of the given datasets' UQ tables."""
    pooled = pool_confidences(_uq_by_dataset(uq))
    table = build_calibration_set(pooled, n_bins=n_bins, fraction=fraction, seeds=tuple(seeds))
    # The seed behind each run, so a reused (released) set says how it was drawn.
    table["seed"] = np.asarray(seeds, dtype=np.int64)[table["run"].to_numpy()]
    write_parquet(table, output)


def generalization(*, calibration: str, uq: str, llm: str, step: float, bootstrap: Mapping, output: str,
                   invalid: str = "drop") -> None:
    table, llm_correct = _uq_and_llm(uq, llm)
    weights, level = _resamples(table, bootstrap, uq)
    write_parquet(apply(read_parquet(calibration), table, llm_correct, target_ratios=ratio_grid(step),
                        invalid=invalid, weights=weights, level=level), output)


def release_card(*, calibration: str, generalization: Sequence[str], passes: Sequence[str], step: float,
                 level: float, output: str) -> None:
    """The router card of a release file (:func:`uqroute.analysis.card.router_card`): its thresholds, and what
    the (SLM, method)'s generalization tables say they route and score on unseen datasets. ``passes``: the SLM's
    pass tables the method reads, whose ``uqroute.dtype`` the card repeats."""
    release = cell_of(calibration, "release")
    ratios = ratio_grid(step)
    tables, cells = [], [cell_of(path, "generalization") for path in generalization]
    for path, cell in zip(generalization, cells):
        table = read_parquet(path, ["run", "target_ratio", "achieved_ratio", "accuracy"])
        check_target_ratios(table, ratios, path)
        tables.append(table.assign(llm=cell["llm"], dataset=cell["dataset"]))
    card = router_card(read_parquet(calibration), pd.concat(tables, ignore_index=True), **release,
                       calibration_file=template("release").format(**release), sha256=file_sha256(calibration),
                       dtype=recorded_dtype([table_metadata(path).get("uqroute.dtype") for path in passes]),
                       llms=list(dict.fromkeys(cell["llm"] for cell in cells)),
                       datasets=list(dict.fromkeys(cell["dataset"] for cell in cells)), target_ratios=ratios,
                       level=level)
    write_text(card_json(card), output)


def share_control(*, calibration: str, uq: str, llm: str, step: float, controller: Mapping, level: float,
                  output: str, invalid: str = "drop") -> None:
    """The held-out dataset replayed through the static calibration threshold and the share controller
    (:func:`uqroute.analysis.controller.replay_table`); its streams are seeded by the cell (SLM, dataset)."""
    table, llm_correct = _uq_and_llm(uq, llm)
    cell = cell_of(uq, "uq")
    write_parquet(replay_table(read_parquet(calibration), table, llm_correct, ratio_grid(step),
                               cell=(cell["slm"], cell["dataset"]), invalid=invalid,
                               controller=ControllerSettings.from_config(controller),
                               replay_settings=ReplaySettings.from_config(controller), level=level), output)


def findings(*, alignment: str, resamples: str, routing: str, relative: str, generalization: Sequence[str],
             uq: Sequence[str], bootstrap: Mapping, tolerances: Mapping, table: str, html: str) -> None:
    """The findings table: the paper's observations and insights with intervals and verdicts, and the numbers
    behind them."""
    settings = BootstrapSettings.from_config(bootstrap)
    gen = read_tagged(generalization, "generalization")
    pooled = read_tagged(uq, "uq")
    aligned, relative_table = read_parquet(alignment), read_parquet(relative)
    tested = statements(aligned, read_parquet(resamples), relative_table, gen, scaled_confidences(pooled),
                        resamples=settings.resamples, seed=settings.seed, level=settings.level, **dict(tolerances))
    found = findings_table(aligned, read_parquet(routing), relative_table, gen,
                           distances=distribution_distances(pooled), statements=tested)
    write_parquet(found, table)
    write_text(found.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"), html)


def findings_doc(*, findings: str, alignment: str, bootstrap: Mapping, power: Mapping, output: str,
                 benchmarks: str | None = None, logs: str | None = None) -> None:
    """The study's findings as a Markdown page (:func:`uqroute.analysis.findings_doc.findings_markdown`), with what
    the run cost when its ``benchmarks`` folder (and its job ``logs``, which name each engine's machine) are given."""
    settings = BootstrapSettings.from_config(bootstrap)
    jobs = job_times(benchmarks) if benchmarks else None
    engines = engine_runs(logs) if logs else None
    write_text(findings_markdown(read_parquet(findings), read_parquet(alignment), source=str(Path(findings).parent),
                                 machine=cpu_description(), level=settings.level, resamples=settings.resamples,
                                 max_auroc_width=float(power["max_auroc_width"]), jobs=jobs, engines=engines), output)


def grading(*, gen: Sequence[str], output: str) -> None:
    """The grading table of every graded pass table in ``gen`` (:func:`uqroute.analysis.grading.count_grading`)."""
    write_parquet(count_grading(gen), output)


def truncation(*, gen: Sequence[str], budgets: Mapping, tokenizers: Mapping[str, str | None], max_share: float,
               output: str, models: Sequence[str] = ()) -> None:
    """The truncation table of every pass table in ``gen`` (:func:`uqroute.analysis.truncation.count_truncation`).

    ``models``: the model folders that ``tokenizers`` loads from, an input only so that they exist first.
    """
    write_parquet(count_truncation(gen, budgets, tokenizers, max_share), output)
