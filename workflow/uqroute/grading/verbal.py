"""Verbalized confidence: the number a reply states as its confidence, as a probability."""

from __future__ import annotations

import re

from .extraction import CONFIDENCE_GAP, CONFIDENCE_KEYWORD

# ---- verbal confidence -----------------------------------------------------------------------------

_NUMBER_TEXT = r"(\d+(?:\.\d+)?|\.\d+)"
# "0-100" / "0 to 100" is the scale echoed back from the prompt, not a confidence.
_SCALE = re.compile(r"(?<![\w.])0\s*(?:-|\u2013|to\b)\s*(?:100(?![\w.])|$)", re.IGNORECASE)
_AFTER_KEYWORD = re.compile(
    rf"{CONFIDENCE_KEYWORD}{CONFIDENCE_GAP}{_NUMBER_TEXT}\s*(%|percent\b)?", re.IGNORECASE
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
