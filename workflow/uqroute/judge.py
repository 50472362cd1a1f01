"""LLM-as-judge for free-form answers (the paper grades free-form QA with GPT-4o mini).

Free-form items (``ff_text``, ``ff_num``) are asked of a judge engine: is the
response essentially equivalent to the gold answer (aliases listed, and for
TruthfulQA the known incorrect answers too)? The verdict is the first word of
a greedy reply of a few tokens, ``yes`` or ``no``. Multiple-choice and
true/false items have an unambiguous extracted answer, so the rule judge
grades them, as it does a free-form item whose verdict is neither yes nor no.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from uqroute import RESOURCES_DIR
from uqroute.engines.base import Conversation, Engine
from uqroute.io import load_yaml

log = logging.getLogger(__name__)

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
    """Grades free-form responses with ``engine``; everything else with ``fallback`` (default: the rule judge)."""

    def __init__(self, engine: Engine, *, fallback: Any | None = None, prompts_path: str | Path | None = None) -> None:
        self.engine = engine
        self._fallback = fallback
        path = Path(prompts_path) if prompts_path is not None else JUDGE_PROMPTS_PATH
        self.prompts = load_yaml(path)
        missing = [key for key in _PROMPT_KEYS if key not in self.prompts]
        if missing:
            raise KeyError(f"{path}: judge prompts lack key(s) {missing}")

    @property
    def fallback(self) -> Any:
        if self._fallback is None:
            from uqroute.grading import RuleJudge

            self._fallback = RuleJudge()
        return self._fallback

    def conversation(self, item: Mapping[str, Any], response: str) -> Conversation:
        """The judge's question about one (item, response) pair."""
        p = self.prompts
        answer = str(item["answer"]).strip()
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

    def judge(self, items: pd.DataFrame, predictions: Sequence[str | None], responses: Sequence[str]) -> np.ndarray:
        """Boolean array of shape ``(len(items),)``; row ``i`` judges ``responses[i]`` against ``items.iloc[i]``.

        Free-form rows with an empty response are wrong without asking.
        """
        if not len(items) == len(predictions) == len(responses):
            raise ValueError(f"LLMJudge: {len(items)} items, {len(predictions)} predictions and "
                             f"{len(responses)} responses differ")
        rows = items.reset_index(drop=True)
        predictions = list(predictions)
        responses = ["" if r is None or (pd.api.types.is_scalar(r) and pd.isna(r)) else str(r) for r in responses]
        correct = np.zeros(len(rows), dtype=bool)
        ask = [i for i in range(len(rows)) if rows.at[i, "task_type"] in FREE_FORM_TASKS and responses[i].strip()]
        by_rule = [i for i in range(len(rows)) if rows.at[i, "task_type"] not in FREE_FORM_TASKS]
        if ask:
            conversations = [self.conversation(rows.iloc[i], responses[i]) for i in ask]
            replies = self.engine.generate(conversations, max_new_tokens=int(self.prompts["max_new_tokens"]),
                                           temperature=0.0)
            unparsed = []
            for i, completions in zip(ask, replies):
                verdict = parse_verdict(completions[0].text)
                if verdict is None:
                    unparsed.append(i)
                else:
                    correct[i] = verdict
            if unparsed:
                first = rows.iloc[unparsed[0]]
                log.warning("judge %s: %d of %d verdicts neither yes nor no (first: %s item %s replied %r); "
                            "graded by the rule judge", getattr(self.engine, "model_name", "?"), len(unparsed),
                            len(ask), first.get("dataset", "?"), first.get("id", "?"),
                            replies[ask.index(unparsed[0])][0].text)
                by_rule.extend(unparsed)
        if by_rule:
            by_rule.sort()
            correct[by_rule] = self.fallback.judge(rows.iloc[by_rule], [predictions[i] for i in by_rule],
                                                   [responses[i] for i in by_rule])
        return correct
