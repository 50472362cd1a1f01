"""Verbalized confidence in one reply (verbal_1s) or in a follow-up turn (verbal_2s)."""

from __future__ import annotations

import pandas as pd

from .tables import method_frame, question_ids, rows_by_id


def _stated(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype(float)


def verbal_1s(verbal1s: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Confidence = the number the SLM states next to its answer, in the same reply.

    The prompt asks for the answer and a confidence 0-100 at once; the pass parses it to
        confidence = c / 100 in [0, 1]
    A reply without a parsable confidence (null ``verbal_confidence``) is invalid; the paper
    discards those queries, here they are kept as invalid rows.

    The graded answer is this reply's own (``verbal1s.prediction``/``correct``), not the
    greedy one. Inputs: ``verbal1s`` (``id, prediction, correct, verbal_confidence``),
    ``questions`` (``id``). Returns ``id, confidence, prediction, correct, valid``.
    """
    ids = question_ids(questions)
    rows = rows_by_id(verbal1s, ids, "verbal1s", ["prediction", "correct", "verbal_confidence"])
    return method_frame(ids, _stated(rows["verbal_confidence"]), rows["prediction"], rows["correct"])


def verbal_2s(greedy: pd.DataFrame, verbal2s: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Confidence = the number the SLM states when asked, after its greedy answer, how sure it is.

    Second turn of the greedy dialogue: "how confident are you (0-100)?", parsed to
        confidence = c / 100 in [0, 1]
    A reply without a parsable confidence (null ``verbal_confidence``) is invalid.

    Inputs: ``greedy`` (``id, prediction, correct``: the answer that is routed),
    ``verbal2s`` (``id, verbal_confidence``), ``questions`` (``id``). Returns
    ``id, confidence, prediction, correct, valid``.
    """
    ids = question_ids(questions)
    answers = rows_by_id(greedy, ids, "greedy", ["prediction", "correct"])
    stated = rows_by_id(verbal2s, ids, "verbal2s", ["verbal_confidence"])
    return method_frame(ids, _stated(stated["verbal_confidence"]), answers["prediction"], answers["correct"])
