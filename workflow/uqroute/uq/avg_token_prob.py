"""Average token probability (Mahaut et al., 2024), from the greedy pass."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from uqroute.grading import read_reply

from .tables import method_frame, question_ids, ragged_mean, rows_by_id

CHOICE_TASKS = ("mcq", "tf")


def answer_token_index(response: str, tokens: Sequence[str], span: tuple[int, int] | None) -> int | None:
    """Index of the token whose character span holds ``response[span[0]]``.

    Token ``i`` covers characters ``[sum(len(tokens[:i])), sum(len(tokens[:i+1])))`` of
    ``"".join(tokens)``. The response may be that text stripped or cut before an
    end-of-turn token, so it is located inside the joined tokens first. None when there is
    no span or the response cannot be found in the tokens.
    """
    if span is None:
        return None
    shift = "".join(tokens).find(response)
    if shift < 0:
        return None
    ends = np.cumsum([len(token) for token in tokens])
    index = int(np.searchsorted(ends, span[0] + shift, side="right"))
    return index if index < len(tokens) else None


def _choice_confidence(response: str, tokens, logprobs, task_type: str, choices: list[str] | None,
                       prediction: str) -> float:
    def span_in(text: str):
        # The reader the grading used, with the same options, so the span is that of the graded prediction (the
        # reply's length cannot turn an answer read into none: the prediction says one was read).
        reading = read_reply(text, task_type, choices, cut_off=False)
        return reading.span if reading.value == prediction else None

    tokens = [] if tokens is None else [str(token) for token in tokens]
    logprobs = [] if logprobs is None else list(logprobs)
    if len(tokens) != len(logprobs):
        raise ValueError(f"greedy table: {len(tokens)} tokens but {len(logprobs)} token_logprobs")
    index = answer_token_index(response, tokens, span_in(response))
    if index is None:
        # The tokens may not spell the response byte for byte (tokenizer whitespace clean-up):
        # then find the answer in the tokens' own text, which is what the model emitted.
        joined = "".join(tokens)
        index = answer_token_index(joined, tokens, span_in(joined))
    return math.nan if index is None else math.exp(float(logprobs[index]))


def avg_token_prob(greedy: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Confidence = probability of the answer under the SLM's greedy reply.

    Multiple choice and true/false (the paper: "the probability of the chosen option token"):
        confidence = p(y_k) = exp(log p(y_k | x, y_<k))
    where y_k is the generated token that holds the first character of the option letter / yes-no word the
    grading read (``prediction``; its place from ``uqroute.grading.read_reply``). No answer counted: invalid.

    Free-form (the paper: "the mean probability of all generated tokens"):
        confidence = (1/N) * sum_{i=1..N} p(y_i)
    over the N generated tokens. No tokens: invalid.

    Inputs: ``greedy`` pass table (``id, response, tokens, token_logprobs, prediction,
    correct``) and ``questions`` (``id, task_type, choices``). Returns one row per question,
    in order: ``id, confidence, prediction, correct, valid``.
    """
    ids = question_ids(questions)
    missing = [c for c in ("task_type", "choices") if c not in questions.columns]
    if missing:
        raise ValueError(f"questions table: missing column(s) {missing}")
    rows = rows_by_id(greedy, ids, "greedy", ["response", "tokens", "token_logprobs", "prediction", "correct"])
    task_types = questions["task_type"].to_numpy()
    confidence = ragged_mean(rows["token_logprobs"], np.exp)
    for i, task_type in enumerate(task_types):
        if task_type not in CHOICE_TASKS:
            continue
        choices = questions["choices"].iloc[i]
        choices = [str(c) for c in choices] if isinstance(choices, (list, tuple, np.ndarray)) else []
        response, prediction = rows["response"].iloc[i], rows["prediction"].iloc[i]
        if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
            confidence[i] = math.nan
            continue
        try:
            confidence[i] = _choice_confidence("" if response is None else str(response), rows["tokens"].iloc[i],
                                               rows["token_logprobs"].iloc[i], task_type, choices or None,
                                               str(prediction))
        except ValueError as err:
            raise ValueError(f"{err} (question {ids[i]})") from err
    return method_frame(ids, confidence, rows["prediction"], rows["correct"])
