"""Aligning pass tables with the scored questions and building a method's output table.

Every method returns one row per question, in the questions' order, with the columns
``id, confidence, prediction, correct, valid``. A pass table that does not cover the
questions is a broken upstream job, so it is an error rather than a silently missing row;
a question the method cannot score is a row with ``confidence`` NaN and ``valid`` False.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

OUTPUT_COLUMNS = ("id", "confidence", "prediction", "correct", "valid")
# What routing and calibration read of a UQ table: everything but the prediction.
ROUTING_COLUMNS = [column for column in OUTPUT_COLUMNS if column != "prediction"]


def question_ids(questions: pd.DataFrame, name: str = "questions") -> pd.Index:
    """The ids of the scored questions (the ``name`` table) as strings, in order; duplicates are an error."""
    if "id" not in questions.columns:
        raise ValueError(f"{name} table has no 'id' column; has {list(questions.columns)}")
    ids = pd.Index(questions["id"].astype(str), name="id")
    if ids.has_duplicates:
        raise ValueError(f"{name} table: duplicate id(s) {ids[ids.duplicated()].unique()[:3].tolist()}")
    return ids


def rows_by_id(table: pd.DataFrame, ids: pd.Index, pass_name: str, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` restricted to ``columns``, one row per id of ``ids`` in that order.

    Raises ValueError naming ``pass_name`` when a column is missing, an id repeats or a
    question has no row.
    """
    missing_columns = [c for c in ("id", *columns) if c not in table.columns]
    if missing_columns:
        raise ValueError(f"{pass_name} table: missing column(s) {missing_columns}; has {list(table.columns)}")
    keyed = table.assign(id=table["id"].astype(str)).set_index("id")
    if keyed.index.has_duplicates:
        duplicated = keyed.index[keyed.index.duplicated()].unique()[:3].tolist()
        raise ValueError(f"{pass_name} table: duplicate id(s) {duplicated}")
    absent = ids.difference(keyed.index)
    if len(absent):
        raise ValueError(
            f"{pass_name} table has no row for {len(absent)} question(s), e.g. {absent[:3].tolist()}"
        )
    return keyed.loc[ids, list(columns)]


def ragged_mean(lists: Iterable, transform=None) -> np.ndarray:
    """Mean of ``transform(values)`` per list; NaN for an empty or null list. Shape (n,)."""
    arrays = [np.asarray([] if values is None else values, dtype=np.float64) for values in lists]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    if not arrays or lengths.sum() == 0:
        return np.full(len(arrays), np.nan)
    flat = np.concatenate(arrays)
    if transform is not None:
        flat = transform(flat)
    owner = np.repeat(np.arange(len(arrays)), lengths)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(owner, weights=flat, minlength=len(arrays)) / lengths


def _predictions(values: Iterable) -> list[str | None]:
    return [None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
            for value in values]


def method_frame(ids: pd.Index, confidence, prediction, correct) -> pd.DataFrame:
    """The output table: ``valid`` is True exactly where ``confidence`` is finite.

    ``confidence`` float (n,), higher = more confident; ``prediction`` str or None;
    ``correct`` bool (n,) of the answer used for routing.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    valid = np.isfinite(confidence)
    return pd.DataFrame({
        "id": np.asarray(ids, dtype=object),
        "confidence": np.where(valid, confidence, np.nan),
        "prediction": pd.Series(_predictions(prediction), dtype=object),
        "correct": np.asarray(correct, dtype=bool),
        "valid": valid,
    })
