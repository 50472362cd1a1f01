"""p(True) (Kadavath et al., 2022), from the ptrue pass."""

from __future__ import annotations

import pandas as pd

from .tables import method_frame, question_ids, rows_by_id


def p_true(greedy: pd.DataFrame, ptrue: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Confidence = the SLM's normalized probability that its own greedy answer is True.

    Shown the question and its proposed answer and asked "True or False?", the model's
    next-token probabilities give
        confidence = P(True) / (P(True) + P(False))
    The ptrue pass already stores this ratio in ``p_true``; a null value (no usable
    probabilities) is invalid.

    Inputs: ``greedy`` (``id, prediction, correct``: the answer that is routed), ``ptrue``
    (``id, p_true``), ``questions`` (``id``). Returns one row per question, in order:
    ``id, confidence, prediction, correct, valid``.
    """
    ids = question_ids(questions)
    answers = rows_by_id(greedy, ids, "greedy", ["prediction", "correct"])
    scores = rows_by_id(ptrue, ids, "ptrue", ["p_true"])
    confidence = pd.to_numeric(scores["p_true"], errors="coerce").to_numpy(dtype=float)
    return method_frame(ids, confidence, answers["prediction"], answers["correct"])
