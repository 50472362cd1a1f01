"""Rule grading: find the answer in a model's reply and judge it against the gold answer.

One extractor per task type returns the answer *and* where it sits in the reply, so
``extract_prediction`` and ``answer_char_span`` can never disagree.

Predictions are normalised strings: an option letter ``'A'..`` (mcq), ``'true'|'false'``
(tf), a number in canonical form such as ``'1200.5'`` (ff_num), or the first sentence of
the reply (ff_text).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

TASK_TYPES = ("mcq", "tf", "ff_num", "ff_text")
# Letters accepted for a multiple-choice reply when the caller does not say how many options there are.
DEFAULT_N_CHOICES = 5
NUMERIC_TOLERANCE = 1e-6
# CoQA's rule judge: token F1 against the gold answer or an alias (no incorrect references exist there).
REFERENCE_F1_THRESHOLD = 0.5


@dataclass(frozen=True)
class _Found:
    value: str
    start: int
    end: int


# ---- reply clean-up shared by every task type -------------------------------------------------------

# Tiny models often keep going after answering and invent the next exam question; nothing
# after that point is an answer to *this* question.
_INVENTED_TURN = re.compile(r"\n\s*(?:#+\s*)?(?:Question|Q)\s*\d*\s*:", re.IGNORECASE)

# A stated confidence ("Confidence: 80%", "I am 90% sure") is never the answer, but its
# digits would win "last number" and its letters could pass for an option.
_CONFIDENCE_KEYWORD = r"\b(?:confidence|confident|certainty)\b"
# Only filler words may sit between the keyword and its number: "confident the answer is 42" states an answer.
_CONFIDENCE_GAP = r"[^\w\n]*(?:(?:level|score|rating|is|of|about|around|at)\b[^\w\n]*){0,3}"
_CONFIDENCE_STATEMENTS = (
    re.compile(rf"{_CONFIDENCE_KEYWORD}{_CONFIDENCE_GAP}\d+(?:\.\d+)?\s*%?", re.IGNORECASE),
    re.compile(r"\d+(?:\.\d+)?\s*(?:%|percent)\s*(?:confident|sure|certain)\b", re.IGNORECASE),
)


def _searchable(response: str) -> str:
    """``response`` with invented follow-up turns and confidence statements blanked out.

    Blanked characters become spaces so that every offset still points into ``response``.
    """
    cut = _INVENTED_TURN.search(response)
    text = response if cut is None or cut.start() == 0 else response[: cut.start()] + " " * (len(response) - cut.start())
    for pattern in _CONFIDENCE_STATEMENTS:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


# ---- multiple choice -------------------------------------------------------------------------------


def _letters(n_choices: int | None) -> str:
    n = DEFAULT_N_CHOICES if n_choices is None else int(n_choices)
    if not 1 <= n <= 26:
        raise ValueError(f"n_choices must be between 1 and 26, got {n_choices}")
    return string.ascii_uppercase[:n]


def _mcq_patterns(letters: str) -> list[re.Pattern]:
    upper = f"[{letters}]"
    either = f"[{letters}{letters.lower()}]"
    # A letter in brackets is a label whatever its case; a bare one must be a capital standing alone.
    label = rf"(?:\(({either})\)|\[({either})\]|({upper})(?![\w']))"
    cue = r"\b(?:(?:correct|final|best|right)\s+)?(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|will\s+be))?"
    return [
        re.compile(rf"(?i:{cue})[\s:*=\-]*(?i:option\s+|choice\s+)?{label}"),
        re.compile(rf"[(\[]({either})[)\]]"),
    ]


_LEADING_LETTER = re.compile(r"^[\s*_\"'`>#]*([A-Z])(?![\w'])")
# After a leading "A" or "I", these words mean the letter is an option label rather than English.
_LABEL_CONTINUATIONS = frozenset({"is"})


def _leading_letter(text: str, letters: str) -> _Found | None:
    match = _LEADING_LETTER.match(text)
    if match is None or match.group(1) not in letters:
        return None
    letter, rest = match.group(1), text[match.end():]
    if letter in "AI":
        next_word = re.match(r"[ \t]+([a-z]+)", rest)
        if next_word and next_word.group(1) not in _LABEL_CONTINUATIONS:
            return None
    return _Found(letter, match.start(1), match.end(1))


def _option_text(text: str, letters: str, choices: Sequence[str]) -> _Found | None:
    """The option whose text appears first in the reply (the longer one when two start together)."""
    best: _Found | None = None
    for letter, choice in zip(letters, choices):
        words = re.findall(r"\w+", str(choice))
        if not words:
            continue
        pattern = r"(?<!\w)" + r"\W+".join(re.escape(word) for word in words) + r"(?!\w)"
        match = re.search(pattern, text, re.IGNORECASE)
        if match and (best is None or (match.start(), -match.end()) < (best.start, -best.end)):
            best = _Found(letter, match.start(), match.end())
    return best


def _loose_letter(text: str, letters: str) -> _Found | None:
    """A capital option letter standing alone anywhere; "A"/"I" only where they cannot be words."""
    for match in re.finditer(rf"(?<![\w'])([{letters}])(?![\w'])", text):
        letter = match.group(1)
        if letter in "AI" and not re.match(r"\s*(?:[.):\],]|$)", text[match.end():]):
            continue
        return _Found(letter, match.start(1), match.end(1))
    return None


def _extract_mcq(text: str, n_choices: int | None, choices: Sequence[str] | None) -> _Found | None:
    letters = _letters(n_choices)
    for pattern in _mcq_patterns(letters):
        match = pattern.search(text)
        if match:
            group = next(g for g in range(1, (match.lastindex or 0) + 1) if match.group(g))
            return _Found(match.group(group).upper(), match.start(group), match.end(group))
    found = _leading_letter(text, letters)
    if found is None and choices is not None:
        found = _option_text(text, letters, choices)
    return found if found is not None else _loose_letter(text, letters)


# ---- yes / no --------------------------------------------------------------------------------------

_TF_WORD = r"(yes|no|true|false)"
_TF_PATTERNS = (
    re.compile(rf"\banswer\b(?:\s+is)?[\s:*=\-]*{_TF_WORD}\b", re.IGNORECASE),
    re.compile(rf"^[\s*_\"'`>#]*{_TF_WORD}\b", re.IGNORECASE),
    re.compile(rf"\b{_TF_WORD}\b", re.IGNORECASE),
)


def _extract_tf(text: str) -> _Found | None:
    for pattern in _TF_PATTERNS:
        match = pattern.search(text)
        if match:
            value = "true" if match.group(1).lower() in ("yes", "true") else "false"
            return _Found(value, match.start(1), match.end(1))
    return None


# ---- numbers ---------------------------------------------------------------------------------------

# Sign, optional currency, digits with thousands commas or plain, optional decimals, optional "/denominator".
_NUMBER = re.compile(
    r"(?<![\w./])(?P<sign>[-\u2212])?\$?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:/(?P<den>\d+)(?![\d.]))?"
)
_ANSWER_CUE = re.compile(r"(?:\banswer\b\s*(?:is|:|=)|####)", re.IGNORECASE)
# How far after "The answer is" the number may start ("The answer is: $", "answer = ").
_CUE_GAP = 25
# "The answer is 16 - 3 - 4 = 9": the answer is the result, not the first operand.
_EQUATION_TAIL = re.compile(r"(?:\s*[-+*/x\u00d7\u00f7]\s*\$?\d[\d,]*(?:\.\d+)?)+\s*=\s*")


def _number_value(match: re.Match) -> Fraction:
    value = Fraction(match.group("num").replace(",", ""))
    den = match.group("den")
    if den and int(den) != 0:
        value /= int(den)
    return -value if match.group("sign") else value


def format_number(value: Fraction | float) -> str:
    """Canonical text of a number: integers without a decimal point, others as the shortest float."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return repr(float(value))


def _found_number(match: re.Match) -> _Found:
    start = match.start("sign") if match.group("sign") else match.start("num")
    return _Found(format_number(_number_value(match)), start, match.end())


def _extract_number(text: str) -> _Found | None:
    for cue in reversed(list(_ANSWER_CUE.finditer(text))):
        match = _NUMBER.search(text, cue.end())
        if match and match.start() - cue.end() <= _CUE_GAP and "\n" not in text[cue.end(): match.start()]:
            tail = _EQUATION_TAIL.match(text, match.end())
            result = _NUMBER.match(text, tail.end()) if tail else None
            return _found_number(result or match)
    matches = list(_NUMBER.finditer(text))
    return _found_number(matches[-1]) if matches else None


def parse_number(text: Any) -> float | None:
    """The single number a gold answer holds ("1,234", "$5.00", "-3", "3/4"), as a float; None if none."""
    if text is None:
        return None
    if isinstance(text, (int, float, np.integer, np.floating)):
        return None if math.isnan(float(text)) else float(text)
    found = _extract_number(str(text))
    return None if found is None else float(Fraction(found.value))


# ---- free-form text --------------------------------------------------------------------------------

# "Answer:", "A:", "The answer is", "The answer to this question is:" label the answer, they are not part of it.
_ANSWER_PREFIX = re.compile(
    r"^[\s*_\"'`>#]*(?:(?:the\s+)?(?:final\s+|correct\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?"
    r"(?:\s*[:\-]|\s+is\b\s*:?)|a\s*:)[\s*]*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _extract_text(response: str) -> _Found | None:
    """First sentence of the first non-empty line, after an answer label, without enclosing quotes."""
    cut = _INVENTED_TURN.search(response)
    limit = len(response) if cut is None or cut.start() == 0 else cut.start()
    prefix = _ANSWER_PREFIX.match(response, 0, limit)
    position = prefix.end() if prefix else 0
    for line in re.finditer(r"[^\n]+", response[:limit]):
        if line.end() <= position:
            continue
        start = max(line.start(), position)
        end = line.end()
        sentence = _SENTENCE_END.search(response, start, end)
        if sentence:
            end = sentence.start()
        chunk = response[start:end]
        stripped = chunk.strip().strip("*_`\"").strip()
        if stripped:
            offset = start + chunk.index(stripped)
            return _Found(stripped, offset, offset + len(stripped))
    return None


# ---- public extraction -----------------------------------------------------------------------------


def _check_task_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _find(response: str | None, task_type: str, n_choices: int | None, choices: Sequence[str] | None) -> _Found | None:
    _check_task_type(task_type)
    if response is None:
        return None
    response = str(response)
    if task_type == "ff_text":
        return _extract_text(response)
    text = _searchable(response)
    if task_type == "mcq":
        if choices is not None:
            choices = [str(c) for c in choices]
            n_choices = len(choices) if n_choices is None else n_choices
        return _extract_mcq(text, n_choices, choices)
    if task_type == "tf":
        return _extract_tf(text)
    return _extract_number(text)


def extract_prediction(
    response: str | None, task_type: str, n_choices: int | None = None, *, choices: Sequence[str] | None = None
) -> str | None:
    """The answer a reply gives, normalised (see the module docstring); None when it gives none.

    mcq: explicit patterns ("The answer is (B)", "Answer: C", "(d)") first, then a leading
    standalone letter ("B.", "B"), then the text of one of ``choices`` (when given), then a
    lone capital letter anywhere. Letters beyond ``n_choices`` (default: ``len(choices)``,
    else 5) are never taken. tf: yes/true -> 'true', no/false -> 'false'. ff_num: the number
    after the last "The answer is"/"Answer:"/"####", else the last number. ff_text: the first
    sentence after an "Answer:" label.
    """
    found = _find(response, task_type, n_choices, choices)
    return None if found is None else found.value


def answer_char_span(
    response: str | None, task_type: str, n_choices: int | None = None, *, choices: Sequence[str] | None = None
) -> tuple[int, int] | None:
    """``(start, end)`` character offsets in ``response`` of what ``extract_prediction`` returns.

    The option letter, the yes/no word, the final number (sign and digits, no currency
    symbol), or the answer sentence. None when there is no answer.
    """
    found = _find(response, task_type, n_choices, choices)
    return None if found is None else (found.start, found.end)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, float) and math.isnan(value):
        return []
    return list(value)


def extract_item_prediction(response: str | None, item: Mapping[str, Any]) -> str | None:
    """``extract_prediction`` with the task type and options taken from a data-contract row."""
    choices = _as_list(item.get("choices")) or None
    return extract_prediction(response, item["task_type"], None if choices is None else len(choices), choices=choices)


# ---- verbal confidence -----------------------------------------------------------------------------

_NUMBER_TEXT = r"(\d+(?:\.\d+)?|\.\d+)"
# "0-100" / "0 to 100" is the scale echoed back from the prompt, not a confidence.
_SCALE = re.compile(r"(?<![\w.])0\s*(?:-|\u2013|to\b)\s*(?:100(?![\w.])|$)", re.IGNORECASE)
_AFTER_KEYWORD = re.compile(
    rf"{_CONFIDENCE_KEYWORD}{_CONFIDENCE_GAP}{_NUMBER_TEXT}\s*(%|percent\b)?", re.IGNORECASE
)
_PERCENT_SURE = re.compile(
    rf"(?<![\w.]){_NUMBER_TEXT}\s*(%|percent\b)\s*(?:confident|sure|certain)\b", re.IGNORECASE
)
_PERCENT = re.compile(rf"(?<![\w.]){_NUMBER_TEXT}\s*(%|percent\b)", re.IGNORECASE)
_ANY_NUMBER = re.compile(rf"(?<![\w.]){_NUMBER_TEXT}(?!\w|\.\d)")
# "1. " / "2) " opening a line numbers a list item; it is no confidence.
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)


def _as_confidence(number: str, percent: bool) -> float | None:
    value = float(number)
    if not percent and "." in number and value <= 1.0:
        return value
    return value / 100.0 if 0.0 <= value <= 100.0 else None


def parse_verbal_confidence(text: str | None, *, require_cue: bool = False) -> float | None:
    """A stated confidence as a probability in [0, 1]; None when there is none or it is above 100.

    Preference: the number after the word "confidence"/"confident" ("Confidence: 85%"), then
    "N% sure/confident/certain"; unless ``require_cue``, then any percentage, then the first
    number that is not the echoed "0-100" scale. "85%" and "85" are read on the 0-100 scale;
    a decimal up to 1 without "%" ("0.7") is already a probability. Use ``require_cue=True``
    for replies that also hold an answer (one-step verbalisation), where a bare number or a
    percentage may be the answer rather than the confidence.
    """
    if text is None:
        return None
    text = _SCALE.sub(lambda m: " " * len(m.group(0)), str(text))
    patterns = (_AFTER_KEYWORD, _PERCENT_SURE) if require_cue else (_AFTER_KEYWORD, _PERCENT_SURE, _PERCENT, _ANY_NUMBER)
    for pattern in patterns:
        if pattern is _ANY_NUMBER:
            text = _LIST_MARKER.sub(lambda m: " " * len(m.group()), text)
        match = pattern.search(text)
        if match:
            return _as_confidence(match.group(1), percent=pattern.groups > 1 and match.group(2) is not None)
    return None


# ---- judging ---------------------------------------------------------------------------------------


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
    _check_task_type(task_type)
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
    references = [str(r) for r in [gold, *_as_list(item.get("answer_aliases"))] if r is not None and str(r).strip()]
    if not references:
        raise ValueError(f"{_item_label(item)}: no reference answer")
    best_correct = max(token_f1(prediction, r) for r in references)
    incorrect = [str(r) for r in _as_list(item.get("incorrect_answers")) if r is not None and str(r).strip()]
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
