"""Jobs of the analysis stage: alignment, routing, relative accuracy, calibration data, findings.

Every job that reads many cells takes their paths only; each cell's coordinates come from its path.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import read_parquet, read_tagged, write_parquet, write_text
from ..paths import cell_of, kind_of
from ..uq.tables import ROUTING_COLUMNS



def _uq_and_llm(uq_path: str, llm_path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A UQ table and the LLM's correctness on each of its rows."""
    from ..analysis.routing import align_llm_correct

    uq = read_parquet(uq_path, ROUTING_COLUMNS)
    return uq, align_llm_correct(uq, read_parquet(llm_path, ["id", "correct"]), label=llm_path)


def alignment(*, uq: Sequence[str], ece_bins: int, output: str) -> None:
    from ..analysis.alignment import alignment_table

    cells = [(*(cell_of(path, "uq")[k] for k in ("slm", "dataset", "method")), read_parquet(path)) for path in uq]
    write_parquet(alignment_table(cells, ece_bins=ece_bins), output)


def routing_curve(*, uq: str, llm: str, step: float, output: str, invalid: str = "drop") -> None:
    from ..analysis.routing import ratio_grid
    from ..analysis.routing import routing_curve as curve

    table, llm_correct = _uq_and_llm(uq, llm)
    write_parquet(curve(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                        ratios=ratio_grid(step), invalid=invalid), output)


def routing_metrics(*, curves: Sequence[str], output: str) -> None:
    from ..analysis.routing import routing_metrics_row

    rows = [routing_metrics_row(read_parquet(path, ["ratio", "accuracy", "n"]), **cell_of(path, "routing"))
            for path in curves]
    write_parquet(pd.DataFrame(rows), output)


def relative_accuracy(*, uq: Sequence[str], llm: Sequence[str], step: int, output: str,
                      invalid: str = "drop") -> None:
    """Every (SLM, dataset, method) UQ table against every LLM's answers on the same dataset."""
    from ..analysis.routing import relative_accuracy as relative

    llm_by_dataset: dict[str, list[tuple[str, str]]] = {}
    for path in llm:
        cell = cell_of(path, "gen")
        llm_by_dataset.setdefault(cell["dataset"], []).append((cell["model"], path))
    frames = []
    for uq_path in uq:
        cell = cell_of(uq_path, "uq")
        for llm_name, llm_path in llm_by_dataset.get(cell["dataset"], []):
            table, llm_correct = _uq_and_llm(uq_path, llm_path)
            result = relative(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                              excluded=range(0, 91, step), invalid=invalid)
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
    from ..analysis.calibration import build_calibration_set, pool_confidences

    pooled = pool_confidences(_uq_by_dataset(uq))
    table = build_calibration_set(pooled, n_bins=n_bins, fraction=fraction, seeds=tuple(seeds))
    # The seed behind each run, so a reused (released) set says how it was drawn.
    table["seed"] = np.asarray(seeds, dtype=np.int64)[table["run"].to_numpy()]
    write_parquet(table, output)


def generalization(*, calibration: str, uq: str, llm: str, step: float, output: str, invalid: str = "drop") -> None:
    from ..analysis.calibration import generalization as apply
    from ..analysis.routing import ratio_grid

    table, llm_correct = _uq_and_llm(uq, llm)
    write_parquet(apply(read_parquet(calibration), table, llm_correct, target_ratios=ratio_grid(step),
                        invalid=invalid), output)


def findings(*, alignment: str, routing: str, relative: str, generalization: Sequence[str], uq: Sequence[str],
             table: str, html: str) -> None:
    from ..analysis.findings import distribution_distances, findings_table

    gen = read_tagged(generalization, "generalization")
    found = findings_table(read_parquet(alignment), read_parquet(routing), read_parquet(relative), gen,
                           distances=distribution_distances(read_tagged(uq, "uq")))
    write_parquet(found, table)
    write_text(found.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"), html)


def grading(*, gen: Sequence[str], output: str) -> None:
    """The grading table of every graded pass table in ``gen`` (:func:`uqroute.analysis.grading.count_grading`)."""
    from ..analysis.grading import count_grading

    write_parquet(count_grading(gen), output)


def truncation(*, gen: Sequence[str], budgets: Mapping, tokenizers: Mapping[str, str | None], max_share: float,
               output: str, models: Sequence[str] = ()) -> None:
    """The truncation table of every pass table in ``gen`` (:func:`uqroute.analysis.truncation.count_truncation`).

    ``models``: the model folders that ``tokenizers`` loads from, an input only so that they exist first.
    """
    from ..analysis.truncation import count_truncation

    write_parquet(count_truncation(gen, budgets, tokenizers, max_share), output)
