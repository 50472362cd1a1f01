"""How each graded pass's replies were read and graded: per reading rule and grader, the number of replies and
of correct ones. Its ``graded_by == "judge"`` rows count the LLM judge's calls that decided a row (a verdict
that is neither yes nor no leaves the row to the rule), so the cost of a judge is read off this table."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from ..grading import RULES
from ..io import read_parquet
from ..paths import cell_of

log = logging.getLogger(__name__)

GRADING_COLUMNS = ["model", "dataset", "split", "pass_name", "read_by", "strength", "graded_by", "n", "n_correct"]


def grading_rows(table: pd.DataFrame, cell: dict[str, str]) -> pd.DataFrame:
    """One row per (reading rule, grader) of one graded pass table, with the cell's fields."""
    counts = (table.assign(correct=table["correct"].astype(int))
              .groupby(["read_by", "graded_by"], sort=True)["correct"].agg(["size", "sum"]).reset_index()
              .rename(columns={"size": "n", "sum": "n_correct"}))
    unknown = sorted(set(counts["read_by"]) - set(RULES))
    if unknown:
        raise ValueError(f"{cell}: read_by holds unknown rule(s) {unknown}; rules: {', '.join(RULES)}")
    counts["strength"] = counts["read_by"].map(lambda rule: RULES[rule].strength)
    for key, value in cell.items():
        counts[key] = value
    return counts.astype({"n": "int64", "n_correct": "int64"})[GRADING_COLUMNS]


def count_grading(gen: Sequence[str]) -> pd.DataFrame:
    """The grading table of the graded pass tables at the paths in ``gen``; logs each pass's judge calls."""
    parts = []
    for path in gen:
        cell = cell_of(path, "gen")
        rows = grading_rows(read_parquet(path, columns=["read_by", "graded_by", "correct"]), cell)
        judged = int(rows.loc[rows["graded_by"] == "judge", "n"].sum())
        if judged:
            log.info("%s: %d of %d replies graded by the judge", path, judged, int(rows["n"].sum()))
        parts.append(rows)
    if not parts:
        return pd.DataFrame(columns=GRADING_COLUMNS)
    return pd.concat(parts, ignore_index=True)
