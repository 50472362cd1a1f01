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
# A reply that is nothing but a probability or a percentage ("0.8", "80%", "**85**.").
_ALONE = re.compile(rf"^[\s*_\"'`]*{_NUMBER_TEXT}\s*(%|percent\b)?[\s*_\"'`]*\.?\s*$", re.IGNORECASE)


def _as_confidence(number: str, percent: bool) -> float | None:
    value = float(number)
    if not percent and "." in number and value <= 1.0:
        return value
    return value / 100.0 if 0.0 <= value <= 100.0 else None


def parse_verbal_confidence(text: str | None, *, require_cue: bool = False) -> float | None:
    """A stated confidence as a probability in [0, 1]; None when the reply states none, or one above 100.

    A confidence is the number after the word "confidence"/"confident" ("Confidence: 85%"), or
    "N% sure/confident/certain". Unless ``require_cue``, a reply that is nothing but a number or a
    percentage ("85%", "0.7") is one too: the two-stage follow-up asks for exactly that. Anything else
    does not follow the instruction and is discarded, as the paper does: a follow-up that solves the
    problem again ("100 + 1 = 111") or restates the answer ("Answer: 42") states no confidence. "85%"
    and "85" are read on the 0-100 scale; a decimal up to 1 without "%" ("0.7") is already a probability.
    ``require_cue=True`` is for replies that also hold an answer (one-step verbalisation), where a
    number standing alone is the answer.
    """
    if text is None:
        return None
    text = _SCALE.sub(lambda m: " " * len(m.group(0)), str(text))
    patterns = (_AFTER_KEYWORD, _PERCENT_SURE) if require_cue else (_AFTER_KEYWORD, _PERCENT_SURE, _ALONE)
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return _as_confidence(match.group(1), percent=match.group(2) is not None)
    return None
