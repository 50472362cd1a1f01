"""Judging: is a reply's answer right? The rule judgement of a read answer (:func:`is_correct`, every task
type), and an LLM judge that reads replies itself (the paper grades free-form QA with GPT-4o mini): any
OpenAI-compatible endpoint, a local vLLM server included. :func:`uqroute.passes.grade_pass` decides which replies
the LLM judge reads.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import RESOURCES_DIR
from ..engines.base import Conversation, Engine, Sampling
from ..io import load_yaml
from .reading import check_task_type, list_cell, parse_number

log = logging.getLogger(__name__)

NUMERIC_TOLERANCE = 1e-6
# CoQA's rule judge: token F1 against the gold answer or an alias (no incorrect references exist there).
REFERENCE_F1_THRESHOLD = 0.5


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = str(text).lower().translate(_NO_PUNCTUATION)
    text = re.sub(r"\b(?:a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between two strings after ``normalize_answer``; 1.0 when both are empty."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _item_label(item: Mapping[str, Any]) -> str:
    return f"{item.get('dataset', '?')} item {item.get('id', '?')}"


def _true_false(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    text = str(value).strip().lower()
    return {"true": "true", "yes": "true", "false": "false", "no": "false"}.get(text)


def is_correct(prediction: str | None, item: Mapping[str, Any]) -> bool:
    """Rule judgement of a normalised prediction against a data-contract row.

    mcq: same letter. tf: same truth value. ff_num: |p - g| <= 1e-6 * max(1, |g|).
    ff_text with ``incorrect_answers`` (TruthfulQA): the best token F1 against the correct
    references (``answer`` + ``answer_aliases``) beats the best against every incorrect one.
    ff_text without them (CoQA): best token F1 against the references >= 0.5.
    """
    if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
        return False
    task_type = item["task_type"]
    check_task_type(task_type)
    gold = item["answer"]
    if task_type == "mcq":
        return str(prediction).strip().upper() == str(gold).strip().upper()
    if task_type == "tf":
        expected = _true_false(gold)
        if expected is None:
            raise ValueError(f"{_item_label(item)}: gold answer {gold!r} is not true/false")
        return _true_false(prediction) == expected
    if task_type == "ff_num":
        expected = parse_number(gold)
        if expected is None:
            raise ValueError(f"{_item_label(item)}: gold answer {gold!r} is not a number")
        got = parse_number(prediction)
        return got is not None and abs(got - expected) <= NUMERIC_TOLERANCE * max(1.0, abs(expected))
    references = [str(r) for r in [gold, *list_cell(item.get("answer_aliases"))] if r is not None and str(r).strip()]
    if not references:
        raise ValueError(f"{_item_label(item)}: no reference answer")
    best_correct = max(token_f1(prediction, r) for r in references)
    incorrect = [str(r) for r in list_cell(item.get("incorrect_answers")) if r is not None and str(r).strip()]
    if incorrect:
        return best_correct > max(token_f1(prediction, r) for r in incorrect)
    return best_correct >= REFERENCE_F1_THRESHOLD


class RuleJudge:
    """Grades extracted predictions with ``is_correct``; the replies are only read by LLM judges."""

    def judge(
        self, items: pd.DataFrame, predictions: Sequence[str | None], responses: Sequence[str]
    ) -> np.ndarray:
        """Boolean array of shape ``(len(items),)``, row ``i`` judging ``predictions[i]`` against ``items.iloc[i]``."""
        if not len(items) == len(predictions) == len(responses):
            raise ValueError(
                f"RuleJudge: {len(items)} items, {len(predictions)} predictions and {len(responses)} responses differ"
            )
        rows = items.to_dict("records")
        return np.array([is_correct(p, row) for p, row in zip(predictions, rows)], dtype=bool)


# ---- LLM judge ---------------------------------------------------------------------------------
# LLM-as-judge (the paper grades free-form answers with GPT-4o mini): asked whether a reply is essentially
# equivalent to the gold answer (aliases listed, and for TruthfulQA the known incorrect answers too). The verdict
# is the first word of a greedy reply of a few tokens, ``yes`` or ``no``.

FREE_FORM_TASKS = frozenset({"ff_text", "ff_num"})
JUDGE_PROMPTS_PATH = RESOURCES_DIR / "judge_prompts.yaml"
_PROMPT_KEYS = ("system", "user", "aliases_block", "incorrect_block", "list_separator", "max_new_tokens")
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> bool | None:
    """True for a reply starting with "yes", False for "no" (any case or punctuation), else None."""
    match = _VERDICT.match(reply or "")
    return None if match is None else match.group(1).lower() == "yes"


def _texts(value: Any) -> list[str]:
    """Non-empty strings of a list-valued cell (list, array, None or NaN after a Parquet round trip)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return []
    if isinstance(value, str):
        value = [value]
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


class LLMJudge:
    """Asks ``engine`` (any :class:`~uqroute.engines.base.Engine`; in the workflow an OpenAI-compatible endpoint)
    whether replies answer their questions correctly."""

    def __init__(self, engine: Engine, *, prompts_path: str | Path | None = None) -> None:
        self.engine = engine
        path = Path(prompts_path) if prompts_path is not None else JUDGE_PROMPTS_PATH
        self.prompts = load_yaml(path)
        missing = [key for key in _PROMPT_KEYS if key not in self.prompts]
        if missing:
            raise KeyError(f"{path}: judge prompts lack key(s) {missing}")

    @property
    def name(self) -> str:
        return getattr(self.engine, "model_name", "?")

    def conversation(self, item: Mapping[str, Any], response: str) -> Conversation:
        """The judge's question about one (item, response) pair."""
        p = self.prompts
        answer = str(item["answer"]).strip()
        choices = list_cell(item.get("choices"))
        if item.get("task_type") == "mcq" and choices and len(answer) == 1 and answer.upper().isalpha():
            # An option letter means nothing to the judge without its text.
            index = ord(answer.upper()) - ord("A")
            if index < len(choices):
                answer = f"{answer.upper()}) {str(choices[index]).strip()}"
        aliases = [a for a in dict.fromkeys(_texts(item.get("answer_aliases"))) if a != answer]
        incorrect = list(dict.fromkeys(_texts(item.get("incorrect_answers"))))
        sep = p["list_separator"]
        user = p["user"].format(
            question=str(item["question"]).strip(),
            answer=answer,
            aliases_block=p["aliases_block"].format(aliases=sep.join(aliases)) if aliases else "",
            incorrect_block=p["incorrect_block"].format(incorrect=sep.join(incorrect)) if incorrect else "",
            response=response.strip(),
        )
        return [{"role": "system", "content": p["system"]}, {"role": "user", "content": user}]

    def verdicts(self, items: pd.DataFrame, responses: Sequence[str]) -> list[bool | None]:
        """The judge's verdict on each (row of ``items``, response): True (correct), False, or None where its
        reply is neither yes nor no (logged; the caller grades those by the rule)."""
        if len(items) != len(responses):
            raise ValueError(f"LLMJudge: {len(items)} items but {len(responses)} responses")
        if not len(responses):
            return []
        rows = items.reset_index(drop=True)
        conversations = [self.conversation(rows.iloc[i], str(response)) for i, response in enumerate(responses)]
        replies = self.engine.generate(conversations, Sampling(max_new_tokens=int(self.prompts["max_new_tokens"])))
        verdicts = [parse_verdict(completions[0].text) for completions in replies]
        unparsed = [i for i, verdict in enumerate(verdicts) if verdict is None]
        if unparsed:
            first = rows.iloc[unparsed[0]]
            log.warning("judge %s: %d of %d verdicts neither yes nor no (first: %s item %s replied %r); "
                        "graded by the rule", self.name, len(unparsed), len(responses), first.get("dataset", "?"),
                        first.get("id", "?"), replies[unparsed[0]][0].text)
        return verdicts
