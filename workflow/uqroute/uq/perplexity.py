"""Perplexity (Fomicheva et al., 2020), from the greedy pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import method_frame, question_ids, ragged_mean, rows_by_id


def perplexity(greedy: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Confidence = reciprocal of the perplexity of the greedy reply.

    For the N generated tokens y_1..y_N with probabilities p(y_i):
        PPL = exp(-(1/N) * sum_{i=1..N} ln p(y_i)),   confidence = 1 / PPL = exp((1/N) * sum ln p(y_i))
    i.e. the geometric mean token probability, in (0, 1]. An empty reply (N = 0) is invalid.

    Inputs: ``greedy`` pass table (``id, token_logprobs, prediction, correct``) and
    ``questions`` (``id``). Returns one row per question, in order:
    ``id, confidence, prediction, correct, valid``.
    """
    ids = question_ids(questions)
    rows = rows_by_id(greedy, ids, "greedy", ["token_logprobs", "prediction", "correct"])
    confidence = np.exp(ragged_mean(rows["token_logprobs"]))
    return method_frame(ids, confidence, rows["prediction"], rows["correct"])
