"""Answer extraction: find the answer in a model's reply, and where it sits.

One extractor per task type returns the answer *and* its character span, so
``extract_prediction`` and ``answer_char_span`` can never disagree.

Predictions are normalised strings: an option letter ``'A'..`` (mcq), ``'true'|'false'``
(tf), a number in canonical form such as ``'1200.5'`` (ff_num), or the first sentence of
the reply (ff_text).
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from ..datasets import TASK_TYPES

DEFAULT_N_CHOICES = 5


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
CONFIDENCE_KEYWORD = r"\b(?:confidence|confident|certainty)\b"
# Only filler words may sit between the keyword and its number: "confident the answer is 42" states an answer.
CONFIDENCE_GAP = r"[^\w\n]*(?:(?:level|score|rating|is|of|about|around|at)\b[^\w\n]*){0,3}"
_CONFIDENCE_STATEMENTS = (
    re.compile(rf"{CONFIDENCE_KEYWORD}{CONFIDENCE_GAP}\d+(?:\.\d+)?\s*%?", re.IGNORECASE),
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


def _mcq_patterns(letters: str) -> tuple[re.Pattern, re.Pattern]:
    """An answer statement ("The answer is (B)", "Answer: C", "Answer: c", "the correct option is D") and a
    bracketed label.

    "Option A" alone is a mention (often of a wrong option), not a statement: only "answer", or
    "correct/final/best/right answer|option|choice", introduces the letter a reply commits to. After such
    a cue the letter may be lower case ("Answer: a"), but then nothing may follow it on its line but
    punctuation: "The answer is a bank" states no option.
    """
    upper = f"[{letters}]"
    lower = f"[{letters.lower()}]"
    either = f"[{letters}{letters.lower()}]"
    # A letter in brackets is a label whatever its case; a bare one must stand alone.
    label = rf"(?:\(({either})\)|\[({either})\]|({upper})(?![\w'])|({lower})(?=[\s.):,;!*]*(?:$|\n)))"
    cue = (r"\b(?:(?:correct|final|best|right)\s+(?:answer|option|choice)|answer)\b"
           r"(?:\s+(?:is|(?:would|will|must|should)\s+be|has\s+to\s+be))?")
    return (
        re.compile(rf"(?i:{cue})[\s:*=\-]*(?i:option\s+|choice\s+)?{label}", re.MULTILINE),
        re.compile(rf"[(\[]({either})[)\]]"),
    )


def _labelled(match: re.Match) -> _Found:
    group = next(g for g in range(1, (match.lastindex or 0) + 1) if match.group(g))
    return _Found(match.group(group).upper(), match.start(group), match.end(group))


_LEADING_LETTER = re.compile(r"^[\s*_\"'`>#(\[]*([A-Z])(?![\w'])")
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


def _bare_letters(text: str, letters: str) -> list[_Found]:
    """Capital option letters standing alone; "A"/"I" only where they cannot be words."""
    found = []
    for match in re.finditer(rf"(?<![\w'])([{letters}])(?![\w'])", text):
        letter = match.group(1)
        if letter in "AI" and not re.match(r"\s*(?:[.():\],;]|$|(?:and|or|nor|is|are)\b)", text[match.end():]):
            continue
        found.append(_Found(letter, match.start(1), match.end(1)))
    return found


@dataclass(frozen=True)
class Ambiguous:
    """A reply that commits to several options and concludes on none ("A is correct. C is also correct.")."""

    letters: tuple[str, ...]


# How a reply reads an option it mentions (see :func:`_extract_mcq`).
# Before a letter, in its clause: it is being ruled out ("not C", "neither A nor B", "eliminate (A)").
_RULED_OUT_BEFORE = re.compile(
    r"(?:\b(?:not|neither|nor|never|except|eliminat\w*|rul(?:e|ed|ing)\s+out|exclud\w*|rather\s+than|instead\s+of)"
    r"\W+(?:(?:option|options|choice|choices|answer|the)\W+){0,2}"
    r"|\b(?:wrong|incorrect|false|out)\W+(?:and\s+)?so\s+(?:is|are)\W+)[(\[]?$", re.IGNORECASE)
# After a letter, in its clause: its verdict is negative ("(A) no", "A is wrong", "A and B are not fruits").
_RULED_OUT_AFTER = re.compile(
    r"(?:[)\]]?\s*[:\-]?\s*(?:no|wrong|incorrect|false|x)\b"
    r"|[^.;!?\n]*?\b(?:is|are|seems?|looks?)\s+(?:(?:also|clearly|definitely|obviously|both)\s+)?"
    r"(?:wrong|incorrect|false|not\b|unlikely|impossible|implausible|ruled\s+out|out\b))",
    re.IGNORECASE)
# Before a letter: the reply concludes or corrects itself ("so D", "therefore the answer: B", "no wait, D").
_CONCLUDING_BEFORE = re.compile(
    r"\b(?:so|therefore|thus|hence|actually|wait|instead|i'?ll\s+go\s+with|i\s+will\s+go\s+with|"
    r"i\s+(?:choose|pick|select)|my\s+(?:final\s+)?(?:answer|choice))\b"
    r"\W*(?:[a-z']+\W+){0,4}[(\[]?$", re.IGNORECASE)
# "but A is better": a preference that settles between options.
_PREFERRED_AFTER = re.compile(r"[)\]]?\s+is\s+(?:better|best|more\s+likely|the\s+better\s+\w+)\b", re.IGNORECASE)
_BUT_BEFORE = re.compile(r"\bbut\W+(?:option\W+)?[(\[]?$", re.IGNORECASE)
# A statement that commits without concluding: "it is B", "I think B", "A is correct", "A and C are both right".
_STATING_BEFORE = re.compile(
    r"\b(?:it\s+(?:is|(?:could|might|may|must|would)(?:\s+also)?\s+be)|it's|i\s+think(?:\s+it\s+is|\s+it's)?|"
    r"i\s+would\s+say|i'd\s+say|i\s+believe(?:\s+it\s+is|\s+it's)?)\W+(?:option\W+)?[(\[]?$", re.IGNORECASE)
_STATING_AFTER = re.compile(
    r"[)\]]?(?:\s*(?:,|and|or)\s*(?:option\s+)?[(\[]?[A-Z][)\]]?)*\s+(?:is|are)\s+(?:both\s+|also\s+)?"
    r"(?:correct|right|true|the\s+(?:correct\s+|right\s+)?answers?)\b", re.IGNORECASE)
# "A or C" right after a letter: the reply names more than one option at once.
_ALTERNATIVE_AFTER = re.compile(r"[)\]]?\s*(?:or|and|/)\s*(?:option\s+)?(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![\w']))")


def _clause_before(text: str, at: int) -> str:
    boundary = max(text.rfind(c, 0, at) for c in ".;!?\n")
    return text[boundary + 1:at]


def _extract_mcq(text: str, n_choices: int | None, choices: Sequence[str] | None) -> _Found | Ambiguous | None:
    """The option a reply settles on, reading it as a careful grader would.

    1. Options the reply rules out ("not C", "neither A nor B", "(A) no", "A is wrong") are no answer.
    2. A conclusion wins, the last one if there are several: an answer statement ("The answer is C",
       "Answer: c"), a letter after "so", "therefore", "actually", "no wait" ..., or a preference
       ("but A is better"). So a later correction overrides an earlier answer.
    3. Else the options the reply commits to (its leading label, "it is B", "I think B", "A is correct"):
       one option is the answer; several different ones and no conclusion make the reply
       :class:`Ambiguous`, as does a conclusion naming two at once ("The answer is A or C").
    4. Else the first bracketed label, the first option text, or a lone capital that was not ruled out.
    """
    letters = _letters(n_choices)
    statement, bracketed = _mcq_patterns(letters)

    def ruled_out(found: _Found) -> bool:
        return bool(_RULED_OUT_BEFORE.search(_clause_before(text, found.start))
                    or _RULED_OUT_AFTER.match(text, found.end))

    def alternatives(found: _Found) -> Ambiguous | None:
        other = _ALTERNATIVE_AFTER.match(text, found.end)
        letter = (other.group(1) or other.group(2)).upper() if other else None
        if letter is not None and letter in letters and letter != found.value:
            return Ambiguous(tuple(sorted({found.value, letter})))
        return None

    cues = [_labelled(match) for match in statement.finditer(text)]
    labels = [_labelled(match) for match in bracketed.finditer(text)]
    leading = _leading_letter(text, letters)
    bare = _bare_letters(text, letters)
    mentions = {found.start: found for found in [*bare, *labels, *cues]
                + ([leading] if leading else [])}
    cue_starts = {found.start for found in cues}
    conclusions, commitments = [], []
    for start in sorted(mentions):
        found = mentions[start]
        if ruled_out(found):
            continue
        before = _clause_before(text, found.start)
        if (start in cue_starts or _CONCLUDING_BEFORE.search(before)
                or (_BUT_BEFORE.search(before) and _PREFERRED_AFTER.match(text, found.end))):
            conclusions.append(found)
        elif (found is leading or _STATING_BEFORE.search(before) or _STATING_AFTER.match(text, found.end)
              or _PREFERRED_AFTER.match(text, found.end)):
            commitments.append(found)
    if conclusions:
        return alternatives(conclusions[-1]) or conclusions[-1]
    if commitments:
        committed = sorted({found.value for found in commitments})
        if len(committed) > 1:
            return Ambiguous(tuple(committed))
        return alternatives(commitments[0]) or commitments[0]
    for found in labels:
        if not ruled_out(found):
            return found
    if choices is not None:
        found = _option_text(text, letters, choices)
        if found is not None:
            return found
    return next((found for found in bare if not ruled_out(found)), None)


# ---- yes / no --------------------------------------------------------------------------------------

# "no" before a noun is a determiner ("no idea", "no way to tell"), not the answer "no".
_TF_WORD = r"(yes|no(?!\s+(?:idea|clue|way|information|answer|data|evidence|context|mention|one|doubt)\b)|true|false)"
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
    r"(?:\s+(?P<scale>thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)
# "1.5 million" is 1500000, not 1.5.
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
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
    if match.group("scale"):
        value *= _SCALES[match.group("scale").lower()]
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
    r"[\s*_\"'`>#]*(?:(?:the\s+)?(?:final\s+|correct\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?"
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


def check_task_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _find(response: str | None, task_type: str, n_choices: int | None,
          choices: Sequence[str] | None) -> _Found | Ambiguous | None:
    check_task_type(task_type)
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

    mcq: the option the reply settles on (:func:`_extract_mcq`: options it rules out never count, its
    last conclusion wins, else the one option it commits to), else the first bracketed label, option
    text (when ``choices`` are given) or lone capital; None for a reply that commits to several options
    and concludes on none (:func:`mcq_is_ambiguous` tells those apart). Letters beyond ``n_choices``
    (default: ``len(choices)``, else 5) are never taken. tf: yes/true -> 'true', no/false -> 'false'. ff_num: the number
    after the last "The answer is"/"Answer:"/"####", else the last number. ff_text: the first
    sentence after an "Answer:" label.
    """
    found = _find(response, task_type, n_choices, choices)
    return found.value if isinstance(found, _Found) else None


def answer_char_span(
    response: str | None, task_type: str, n_choices: int | None = None, *, choices: Sequence[str] | None = None
) -> tuple[int, int] | None:
    """``(start, end)`` character offsets in ``response`` of what ``extract_prediction`` returns.

    The option letter, the yes/no word, the final number (sign and digits, no currency
    symbol), or the answer sentence. None when there is no answer.
    """
    found = _find(response, task_type, n_choices, choices)
    return (found.start, found.end) if isinstance(found, _Found) else None


def item_options(item: Mapping[str, Any]) -> tuple[int | None, list[str] | None]:
    """``(n_choices, choices)`` of a data-contract row."""
    choices = list_cell(item.get("choices")) or None
    return (None if choices is None else len(choices)), choices


def read_item_answer(response: str | None, item: Mapping[str, Any]) -> tuple[str | None, bool]:
    """``(prediction, ambiguous)`` of a reply to a data-contract row, read once: the prediction
    :func:`extract_item_prediction` gives, and whether the reply is :func:`mcq_is_ambiguous`."""
    n_choices, choices = item_options(item)
    found = _find(response, item["task_type"], n_choices, choices)
    return (found.value if isinstance(found, _Found) else None), isinstance(found, Ambiguous)


def mcq_is_ambiguous(response: str | None, item: Mapping[str, Any]) -> bool:
    """True for a multiple-choice reply that commits to several options and concludes on none: the rule
    cannot grade it (an LLM judge, where one is configured, does)."""
    return item["task_type"] == "mcq" and read_item_answer(response, item)[1]


def list_cell(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, float) and math.isnan(value):
        return []
    return list(value)


def extract_item_prediction(response: str | None, item: Mapping[str, Any]) -> str | None:
    """``extract_prediction`` with the task type and options taken from a data-contract row."""
    return read_item_answer(response, item)[0]
