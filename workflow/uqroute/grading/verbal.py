"""Verbalized confidence: the confidence a reply states, as a probability, read on the scale it states.

The prompts ask for a confidence from 0 to 100 ("Confidence: N%"). Replies state it in many ways: "Confidence:
85%", "I am 90% sure", "0.9 confident", "8/10", "7 out of 10", "90 out of 100", "on a scale of 0 to 100, 95",
"(90%)", or, answering the follow-up question alone, "80" or "0.8". Each statement is read on its own scale:

- a percentage ("85%", "85 percent") is out of 100;
- "N/10", "N out of 10", "on a scale of 0 to 10, N" are out of the stated maximum;
- a number with a decimal point up to 1 ("0.85") is a probability;
- a bare number from 11 to 100 is on the asked 0-100 scale, and 0 is 0.

A bare 1 to 10 could be a percentage or a 10-point score: the scale is unclear, so the statement is not read
(never rescaled silently), and a reply stating nothing else is invalid, as the paper discards replies that do not
follow the instruction. Of several statements, the last one counts ("80%... on reflection, 60%").
"""

from __future__ import annotations

import re
from fractions import Fraction

from .reading import CONFIDENCE_GAP, CONFIDENCE_KEYWORD

_NUMBER_TEXT = r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
_SCALE_TEXT = (r"(?:\s*(?P<pct>%|percent\b)"
               r"|\s*(?:/|out\s+of|on\s+a\s+scale\s+of|on\s+a\s+\d+\s*-\s*point\s+scale)\s*(?P<max>\d+)(?!\d|\.\d))?")
# "0-100" / "0 to 100" echoed back from the prompt is not a confidence.
_ECHOED_SCALE = re.compile(r"(?<![\w.])[01]\s*(?:-|\u2013|to\b)\s*(?:100|10)(?![\w.])\s*%?|<\s*0\s*-\s*100\s*>",
                           re.IGNORECASE)
# A scale stated before the number: "on a scale of 0 to 100, 95", "(0-10): 8".
_STATED_SCALE = re.compile(r"scale\s+(?:of|from)\s+[01]\s*(?:-|\u2013|to)\s*(?P<max>10|100)\b[^\d\n]{0,20}?"
                           rf"{_NUMBER_TEXT}(?!\s*(?:%|/|\d))", re.IGNORECASE)
_CUE_WORDS = rf"(?:{CONFIDENCE_KEYWORD}|\bcertain\b|\bsure\b|\bprobability\b|\blikelihood\b)"
_STATEMENTS = (
    # "Confidence: 85%", "confidence level is 7 out of 10", "probability: 0.8"
    re.compile(rf"{_CUE_WORDS}{CONFIDENCE_GAP}(?:\(\s*)?{_NUMBER_TEXT}{_SCALE_TEXT}", re.IGNORECASE),
    # "90% sure", "0.9 confident", "8/10 confident"
    re.compile(rf"(?<![\w.]){_NUMBER_TEXT}{_SCALE_TEXT}\s*(?:confident|sure|certain|confidence)\b", re.IGNORECASE),
    # "(90%)" after an answer
    re.compile(rf"\(\s*{_NUMBER_TEXT}\s*(?P<pct>%)\s*\)", re.IGNORECASE),
)
# Only as the reply to the follow-up question, which asks for nothing but a number: "I'd say 80", "80%", "0.8",
# "**85**.", "9/10".
_FOLLOW_UP_ONLY = (
    re.compile(rf"\b(?:i'd|i\s+would)\s+say\s+(?:about\s+|around\s+)?{_NUMBER_TEXT}{_SCALE_TEXT}", re.IGNORECASE),
    re.compile(rf"^[\s*_\"'`]*{_NUMBER_TEXT}{_SCALE_TEXT}[\s*_\"'`]*\.?\s*$", re.IGNORECASE),
)


def _value(match: re.Match, maximum: str | None = None) -> float | None:
    """The statement's confidence as a probability; None when its scale is unclear or it is out of range."""
    number = match.group("num")
    value = Fraction(number)
    groups = match.groupdict()
    maximum = maximum or groups.get("max")
    if groups.get("pct"):
        scaled = value / 100
    elif maximum:
        if int(maximum) not in (1, 5, 10, 100):
            return None
        scaled = value / int(maximum)
    elif "." in number and value <= 1:
        scaled = value
    elif value == 0 or 10 < value <= 100:
        scaled = value / 100
    else:
        return None  # a bare 1-10: a percentage or a 10-point score?
    return float(scaled) if 0 <= scaled <= 1 else None


def parse_verbal_confidence(text: str | None, *, require_cue: bool = False) -> float | None:
    """The last confidence ``text`` states, as a probability in [0, 1]; None when it states none that can be read
    (module docstring).

    ``require_cue``: the reply also holds an answer (one-step verbalisation), so a number standing alone is the
    answer, not a confidence: only statements with a confidence cue count. Without it (the two-stage follow-up,
    which asks for a number only), a reply that is nothing but a number, or "I'd say N", is one too.
    """
    if text is None:
        return None
    text = str(text)
    statements: list[tuple[int, float | None]] = []
    for match in _STATED_SCALE.finditer(text):
        statements.append((match.start("num"), _value(match, match.group("max"))))
    text = _ECHOED_SCALE.sub(lambda m: " " * len(m.group(0)), text)
    taken = {start for start, _ in statements}
    for pattern in _STATEMENTS + (() if require_cue else _FOLLOW_UP_ONLY):
        for match in pattern.finditer(text):
            if match.start("num") not in taken:
                taken.add(match.start("num"))
                statements.append((match.start("num"), _value(match)))
    if not statements:
        return None
    return max(statements)[1]
