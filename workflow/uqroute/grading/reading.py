"""Reading a reply as a careful grader does: the answer it gives, and the evidence for that reading.

A reply is read through ordered, named rules (:data:`RULES`); the :class:`Reading` names the rule that made it
(``read_by`` in the graded tables, docs/contracts.md) and so its strength:

1. **Strong: the reply states its answer.** A conclusion: an answer field of a JSON object (``"Answer": "C"``),
   ``\\boxed{}``, an answer cue ("The answer is (C)", "Answer: 42", "the best choice is B", "my answer is: NO",
   "####"), a concluding word before an option ("so D", "no wait, D"), a preference ("but A is better"), a
   verdict on a statement ("the statement is not true"). The **last** conclusion wins, so a correction
   overrides an earlier answer. Failing a conclusion: a reply that is nothing but its answer, or opens with it
   ("B. a bank", "No, ..."), or commits to one option ("I think B", "A is correct"), or names one option's text
   and nothing else in a short reply.
2. **Weak: an answer-like token in the text.** A bracketed or lone option letter, an option's text, a yes/no
   word, the last number. Working text (equations, variables, units, an echoed option list) can hold these, so
   a weak reading counts only where the grading says so (``judge.weak_readings``), and an LLM judge, where one
   is configured, reads the reply instead.
3. **None: the reply gives no answer.** It commits to several options and settles on none, its conclusion
   names a letter beyond the options, it was cut off or loops before concluding (weak evidence in such a reply
   is no answer), or nothing was found.

Values are normalised: an option letter ``'A'..`` (mcq), ``'true'|'false'`` (tf), a number in canonical form
(ff_num, :func:`format_number`), the answer sentence (ff_text). Every reading keeps its character span in the
reply, so the answer token's probability (average token probability) is read where the grade read it.
"""

from __future__ import annotations

import functools
import math
import re
import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..datasets import TASK_TYPES

DEFAULT_N_CHOICES = 5
STRONG, WEAK, NONE = "strong", "weak", "none"


@dataclass(frozen=True)
class Rule:
    name: str
    strength: str
    summary: str


# Ordered as the reader tries them. docs/reading-replies.md explains each with examples.
RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("json_answer", STRONG, 'the answer field of a JSON object ("Answer": "C")'),
    Rule("boxed", STRONG, "a \\boxed{} value"),
    Rule("answer_cue", STRONG, '"the answer is", "Answer:", "the best choice is", "my answer is", "####"'),
    Rule("conclusion", STRONG, 'a concluding word or preference before the answer ("so D", "but A is better")'),
    Rule("verdict", STRONG, 'a verdict on the statement ("the statement is false", "this is not true")'),
    Rule("whole_reply", STRONG, "the reply is nothing but its answer"),
    Rule("opening", STRONG, 'the reply opens with its answer ("B. a bank", "No, ...")'),
    Rule("commitment", STRONG, 'the reply commits to one option ("I think B", "A is correct")'),
    Rule("sole_option_text", STRONG, "a short reply names one option's text and no other"),
    Rule("first_sentence", STRONG, "free-form text: the reply's first sentence (after an answer label) is its answer"),
    Rule("bracketed_letter", WEAK, "an option letter in brackets, somewhere in the text"),
    Rule("option_text", WEAK, "an option's text, somewhere in the text"),
    Rule("lone_letter", WEAK, "a capital option letter standing alone, somewhere in the text"),
    Rule("yes_no_word", WEAK, "a yes/no/true/false word, somewhere in the text"),
    Rule("last_number", WEAK, "the last number in the text"),
    Rule("several", NONE, "the reply commits to several answers (options, or two counts) and concludes on none"),
    Rule("out_of_range", NONE, "the reply's conclusion names a letter beyond the options"),
    Rule("cut_off", NONE, "the reply reached its token budget before stating a conclusion"),
    Rule("looping", NONE, "the reply repeats itself without stating a conclusion"),
    Rule("no_answer", NONE, "nothing in the reply reads as an answer"),
)}


@dataclass(frozen=True)
class Reading:
    """What a reply answers (``value``, None for no answer), the rule that read it and where the answer sits
    (``start``/``end`` offsets into the reply; None without an answer). ``options``: for ``several``, the
    options it commits to."""

    value: str | None
    rule: str
    start: int | None = None
    end: int | None = None
    options: tuple[str, ...] = ()

    @property
    def strength(self) -> str:
        return RULES[self.rule].strength

    @property
    def strong(self) -> bool:
        return self.strength == STRONG

    @property
    def span(self) -> tuple[int, int] | None:
        return None if self.value is None else (self.start, self.end)


@dataclass(frozen=True)
class _Found:
    """One piece of evidence: a value (or a reason there is none: ``several``/``out_of_range``) at a span."""

    value: str | None
    start: int
    end: int
    rule: str
    options: tuple[str, ...] = ()


# ---- clean-up shared by every task type -------------------------------------------------------------

# Tiny models often keep going after answering and invent the next exam question; nothing after that point
# answers *this* question.
_INVENTED_TURN = re.compile(r"\n\s*(?:#+\s*)?(?:Question|Q)\s*\d*\s*:", re.IGNORECASE)
# A reasoning model's thinking, closed before its answer: working, not the reply's statement.
_THINKING_END = re.compile(r"</think>", re.IGNORECASE)

# A stated confidence ("Confidence: 80%", "I am 90% sure") is never the answer, but its digits would pass for
# a number and its letters for an option.
CONFIDENCE_KEYWORD = r"\b(?:confidence|confident|certainty)\b"
# Only filler words may sit between the keyword and its number: "confident the answer is 42" states an answer.
CONFIDENCE_GAP = r"[^\w\n]*(?:(?:level|score|rating|is|of|about|around|at)\b[^\w\n]*){0,3}"
_CONFIDENCE_STATEMENTS = (
    re.compile(rf"{CONFIDENCE_KEYWORD}{CONFIDENCE_GAP}\d+(?:\.\d+)?\s*(?:%|/\s*\d+|out\s+of\s+\d+)?",
               re.IGNORECASE),
    re.compile(r"\d+(?:\.\d+)?\s*(?:%|percent)\s*(?:confident|sure|certain)\b", re.IGNORECASE),
)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _searchable(response: str) -> str:
    """``response`` with invented follow-up turns, closed thinking and confidence statements blanked out.

    Blanked characters become spaces so that every offset still points into ``response``.
    """
    text = response
    cut = _INVENTED_TURN.search(text)
    if cut is not None and cut.start() > 0:
        text = _blank(text, cut.start(), len(text))
    thinking = list(_THINKING_END.finditer(text))
    if thinking and text[thinking[-1].end():].strip():
        text = _blank(text, 0, thinking[-1].end())
    for pattern in _CONFIDENCE_STATEMENTS:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


# A reply loops when fewer than 60 % of the 4-token runs in its second half are distinct (a reply's words serve
# as its tokens where they are not known). Measured on SmolLM2-135M at the paper's budgets: its loops (one line or
# one digit over and over) score 0.3-0.6, its finished explanations and solutions 0.7-1.0; loops that count up
# ("Step 5: 26 + 1 = 27") score 0.7-0.8 and stay counted as cut off, the side that asks for a larger budget.
LOOP_NGRAM, LOOP_DISTINCT = 4, 0.6


def repeats_itself(tokens: Sequence, n: int = LOOP_NGRAM, distinct: float = LOOP_DISTINCT) -> bool:
    """Whether fewer than ``distinct`` of the ``n``-token runs in a reply's second half differ: a loop."""
    tail = tokens[len(tokens) // 2:]
    runs = [tuple(tail[i:i + n]) for i in range(len(tail) - n + 1)]
    return bool(runs) and len(set(runs)) < distinct * len(runs)


# ---- conclusions: where a reply states its answer ------------------------------------------------------

# The JSON field a harness asks for ("Answer": "C", " ANSWER":"C", 'answer': 42), quoted key, any case.
_JSON_ANSWER = re.compile(r"""["']\s*(?:final[\s_]*)?answer\s*["']\s*:\s*["']?\s*""", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{")
_ANSWER_VERB = (r"(?:\s*[*_]*\s*(?:is|are|was|would\s+be|will\s+be|must\s+be|should\s+be|has\s+to\s+be|seems\s+to\s+be|"
                r"remains|equals|=|:|-(?!\d)))")
_CUE = re.compile(
    r"(?:\b(?:the\s+)?(?:final|correct|best|right|true|only|closest|most\s+(?:suitable|appropriate|likely|"
    r"plausible|accurate|reasonable|fitting))\s+(?:answer|option|choice|response)s?\b"
    r"(?:\s+(?:to\s+(?:this|the|your|that)\s+question|here|then|therefore|overall|left))?"
    r"|\bmy\s+(?:final\s+)?(?:answer|choice|pick)\b"
    r"|\b(?:the\s+)?answer\b(?:\s+(?:to\s+(?:this|the|your|that)\s+question|here|then|therefore|overall))?"
    r"|\bconclude(?:\s+that)?\b|\bin\s+conclusion\b|\bconclusion\s*[*_]*\s*:)"
    rf"{_ANSWER_VERB}?"
    # "the only option left is D", "the most likely cause is (A)", "The correct annual total, based on the
    # calculations, is $18,000": a superlative or corrective noun phrase, then its verb.
    r"|\bthe\s+(?:final|correct|best|right|only|closest|actual|most\s+(?:suitable|appropriate|likely|plausible|"
    rf"accurate|reasonable|fitting))\s+[^.\n;:!?]{{1,60}}?{_ANSWER_VERB}",
    re.IGNORECASE,
)
_FINAL_SECTION = re.compile(r"####")
# Between a cue and its value: spaces, markup, punctuation; a line break only right after a colon-like cue.
_CUE_GAP = re.compile(r"(?:[ \t*_\"'`>#:=\-]|\.\.\.|\\\()*(?:\n(?:[ \t*_\"'`>#:=\-]|\\\[)*){0,2}")


def _cue_ends(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, value_start, rule)`` of every answer statement, in order of position."""
    found = []
    for match in _JSON_ANSWER.finditer(text):
        found.append((match.start(), match.end(), "json_answer"))
    for match in _BOXED.finditer(text):
        found.append((match.start(), match.end(), "boxed"))
    for match in _CUE.finditer(text):
        if not _CLOSED_CUE.search(match.group(0)):
            continue
        gap = _CUE_GAP.match(text, match.end())
        found.append((match.start(), gap.end(), "answer_cue"))
    for match in _FINAL_SECTION.finditer(text):
        found.append((match.start(), _CUE_GAP.match(text, match.end()).end(), "answer_cue"))
    json_spans = [(s, v) for s, v, rule in found if rule == "json_answer"]
    for start, value_start, rule in sorted(found):
        # "Answer": inside a JSON key is the JSON rule's, not a second cue.
        if rule == "answer_cue" and any(s <= start < v for s, v in json_spans):
            continue
        yield start, value_start, rule


# A cue states an answer only with a verb or separator after it ("answer is", "Answer:"): "the answer choices"
# and "my answer to you" do not.
_CLOSED_CUE = re.compile(r"(?:\bis|\bare|\bwas|\bbe|\bremains|\bequals|[=:\-]|conclusion|conclude(?:\s+that)?)"
                         r"\s*[*_]*$", re.IGNORECASE)


# ---- multiple choice ---------------------------------------------------------------------------------------


def _letters(n_choices: int | None) -> str:
    n = DEFAULT_N_CHOICES if n_choices is None else int(n_choices)
    if not 1 <= n <= 26:
        raise ValueError(f"n_choices must be between 1 and 26, got {n_choices}")
    return string.ascii_uppercase[:n]


@functools.lru_cache(maxsize=4096)
def _option_patterns(choices: tuple[str, ...], letters: str) -> list[tuple[str, re.Pattern]]:
    """Each option's text as a pattern (its words in order, any punctuation between); a question's options are
    read again for each of its replies and passes, so they are compiled once."""
    patterns = []
    for letter, choice in zip(letters, choices):
        words = re.findall(r"\w+", str(choice))
        if words:
            patterns.append((letter, re.compile(
                r"(?<!\w)" + r"\W+".join(re.escape(word) for word in words) + r"(?!\w)", re.IGNORECASE)))
    return patterns


# A label at a value position: "(B)", "[b]", "B.", "**B**", "B) text", "option B"; any letter, so that a letter
# beyond the options is seen as one.
_VALUE_LABEL = re.compile(
    r"(?:(?i:option|choice|letter|statement|sentence)\s+)?"
    r"(?:\((?P<p>[A-Za-z])\)|\[(?P<b>[A-Za-z])\]|(?P<u>[A-Z])(?![\w'])(?!\s+(?:[a-z]{2,})\b(?<!\bis)(?<!\bor))"
    r"|(?P<l>[a-z])(?=[\s.):,;!*\"'`}]*(?:$|\n|[\"'`]|\}|\s+[-(]|\.\s)))",
    re.MULTILINE,
)
_ARTICLE = re.compile(r"(?:(?:a|an|the)\s+)", re.IGNORECASE)


class _Choice:
    """Reads a multiple-choice reply (see :func:`read_reply`)."""

    def __init__(self, text: str, n_choices: int | None, choices: Sequence[str] | None,
                 question: str | None = None) -> None:
        self.text = text
        # A question in parts "(a) ... (b) ...": the reply's "(a)" labels a part, not an option.
        self.parts = bool(question) and bool(re.search(r"\(a\).*\(b\)", question, re.DOTALL))
        self.letters = _letters(n_choices)
        self.choices = [str(c) for c in choices or ()]
        self.options = _option_patterns(tuple(self.choices), self.letters)

    def value_at(self, at: int) -> tuple[str | None, int, int] | None:
        """The option a statement names at ``at``: ``(letter, start, end)``, ``(None, ...)`` for a letter beyond
        the options, or None when no option is named there."""
        text = self.text
        label = _VALUE_LABEL.match(text, at)
        if label is not None:
            group = next(g for g in ("p", "b", "u", "l") if label.group(g))
            letter = label.group(group).upper()
            start, end = label.start(group), label.end(group)
            if group == "u" and letter in "AI" and re.match(r"\s+(?!(?:or|and|nor|is)\b)[a-z]", text[end:]):
                label = None  # English: "A bank", "I think"
            elif letter in self.letters:
                return letter, start, end
            elif group in "pb" or re.match(r"[\s.)*\"'`}]*(?:$|\n)", text[end:]):
                return None, start, end
        article = _ARTICLE.match(text, at)
        at = article.end() if article else at
        best = None
        for letter, pattern in self.options:
            match = pattern.match(text, at)
            if match and (best is None or match.end() > best[2]):
                best = (letter, match.start(), match.end())
        return best

    def conclusions(self) -> list[_Found]:
        found = []
        for start, value_at, rule in _cue_ends(self.text):
            value = self.value_at(value_at)
            if value is None:
                continue
            letter, s, e = value
            other = self._alternative(e, letter)
            if letter is None:
                found.append(_Found(None, s, e, "out_of_range"))
            elif other:
                found.append(_Found(None, s, e, "several", tuple(sorted({letter, other}))))
            else:
                found.append(_Found(letter, s, e, rule))
        for mention in self.mentions:
            if mention.start in {f.start for f in found} or self.ruled_out(mention):
                continue
            before = _clause_before(self.text, mention.start)
            if (_CONCLUDING_BEFORE.search(before)
                    or (_BUT_BEFORE.search(before) and _PREFERRED_AFTER.match(self.text, mention.end))):
                found.append(_Found(mention.value, mention.start, mention.end, "conclusion"))
        return sorted(found, key=lambda f: f.start)

    def _alternative(self, end: int, letter: str | None) -> str | None:
        """A second option the statement at ``end`` names with it ("(B) and (C)", "**B. text** and **C. text**")."""
        other = _ALTERNATIVE_AFTER.match(self.text, end)
        value = (other.group(1) or other.group(2)).upper() if other else None
        if value is None:
            line_end = self.text.find("\n", end)
            joined = _JOINED_LABEL.search(self.text, end, line_end if line_end >= 0 else len(self.text))
            value = joined.group(1) if joined else None
        return value if value is not None and value in self.letters and value != letter else None

    @functools.cached_property
    def mentions(self) -> list[_Found]:
        """Every option letter standing as a label: bracketed, or a capital alone ("A"/"I" only where they
        cannot be English)."""
        text, found = self.text, {}
        for match in re.finditer(rf"[(\[]([{self.letters}{self.letters.lower()}])[)\]]", text):
            found[match.start(1)] = _Found(match.group(1).upper(), match.start(1), match.end(1), "bracketed_letter")
        for match in re.finditer(rf"(?<![\w'\[(])([{self.letters}])(?![\w'])", text):
            letter = match.group(1)
            if letter in "AI" and not re.match(r"\s*(?:[.():\],;]|$|(?:and|or|nor|is|are)\b)", text[match.end():]):
                continue
            if _in_formula(text, match.start(1), match.end(1)):
                continue
            found[match.start(1)] = _Found(letter, match.start(1), match.end(1), "lone_letter")
        return [found[k] for k in sorted(found)]

    def ruled_out(self, found: _Found) -> bool:
        return bool(_RULED_OUT_BEFORE.search(_clause_before(self.text, found.start))
                    or _RULED_OUT_AFTER.match(self.text, found.end))

    def opening(self) -> _Found | None:
        """The answer the reply gives up front: the whole reply, its leading label, or one commitment."""
        text = self.text
        value = self.value_at(re.match(r"[\s*_`\"'#>]*", text).end())
        if value is not None and value[0] is not None and not text[value[2]:].strip().strip("*_`\"'.:)]").strip():
            return _Found(value[0], value[1], value[2], "whole_reply")
        listed = self.listed
        leading = _leading_letter(text, self.letters)
        if leading is not None and (leading.start in listed or (self.parts and text[leading.start].islower())):
            leading = None
        commitments = [m for m in self.mentions
                       if m.start not in listed and not self.ruled_out(m) and self._commits(m)]
        if leading is not None and not self.ruled_out(leading):
            commitments = [leading] + [m for m in commitments if m.start != leading.start]
        committed = sorted({m.value for m in commitments})
        if len(committed) > 1:
            return _Found(None, commitments[0].start, commitments[0].end, "several", tuple(committed))
        if commitments:
            first = commitments[0]
            other = self._alternative(first.end, first.value)
            if other:
                return _Found(None, first.start, first.end, "several", tuple(sorted({first.value, other})))
            rule = "opening" if leading is not None and first.start == leading.start else "commitment"
            return _Found(first.value, first.start, first.end, rule)
        named = self.named_options()
        if len({f.value for f in named}) == 1 and len(re.findall(r"\w+", text)) <= _SHORT_REPLY_WORDS:
            return _Found(named[0].value, named[0].start, named[0].end, "sole_option_text")
        return None

    @functools.cached_property
    def listed(self) -> set[int]:
        """Where the labels of an option list start: lines that open with a label, two or more letters
        ("A. go to jail\nB. cry\nC."). A list of the options states no answer."""
        labels = {m.start(1): m.group(1) for m in _LIST_LINE.finditer(self.text)}
        return set(labels) if len(set(labels.values())) > 1 else set()

    def _commits(self, found: _Found) -> bool:
        before = _clause_before(self.text, found.start)
        return bool(_STATING_BEFORE.search(before) or _STATING_AFTER.match(self.text, found.end)
                    or _PREFERRED_AFTER.match(self.text, found.end))

    def named_options(self) -> list[_Found]:
        """Options named by their text, neither negated ("It is not the library") nor in an echoed option list,
        in order."""
        listed_lines = {self.text.rfind("\n", 0, start) for start in self.listed}
        found = []
        for letter, pattern in self.options:
            for match in pattern.finditer(self.text):
                if self.text.rfind("\n", 0, match.start()) in listed_lines:
                    continue
                if not _NEGATED_BEFORE.search(_clause_before(self.text, match.start())):
                    found.append(_Found(letter, match.start(), match.end(), "option_text"))
        # Of two options starting together ("dog", "hot dog"), the longer one is named.
        found.sort(key=lambda f: (f.start, -f.end))
        kept, last_end = [], -1
        for f in found:
            if f.start >= last_end:
                kept.append(f)
                last_end = f.end
        return kept

    def weak(self) -> _Found | None:
        listed = self.listed
        mentions = [m for m in self.mentions if m.start not in listed and not self.ruled_out(m)]
        bracketed = [m for m in mentions if m.rule == "bracketed_letter" and self.text[m.start].isupper()]
        if bracketed:
            return bracketed[0]
        # An option that is a number or a formula ("-1.5", "y - 4 = 2(x - 2)") is named by any working that
        # computes it; only options in words count as named in passing.
        worded = {letter for letter, choice in zip(self.letters, self.choices) if re.search(r"[A-Za-z]{3}", choice)}
        named = [f for f in self.named_options() if f.value in worded]
        if named:
            return named[0]
        lone = [m for m in mentions if m.rule == "lone_letter"]
        return lone[0] if lone else None


_SHORT_REPLY_WORDS = 25
_LIST_LINE = re.compile(r"^[ \t]*[*_>#\-]*[ \t]*[(\[]?([A-Z])[).:\]]", re.MULTILINE)
_LEADING_LETTER = re.compile(r"^[\s*_\"'`>#]*(?:[(\[]([A-Za-z])[)\]]|\(?([A-Z])(?![\w']))")


def _leading_letter(text: str, letters: str) -> _Found | None:
    match = _LEADING_LETTER.match(text)
    if match is None:
        return None
    group = 1 if match.group(1) else 2
    letter, rest = match.group(group).upper(), text[match.end():]
    if letter not in letters:
        return None
    if group == 1 and match.group(1).islower():
        # "(a) ... (b) ...": the labels of sub-questions, not an option.
        following = chr(ord(match.group(1)) + 1)
        if re.search(rf"[(\[]{following}[)\]]", rest):
            return None
    # After a leading "A" or "I" a lower-case word means English ("A dog is ...", "I think ..."), except "is".
    if group == 2 and letter in "AI":
        next_word = re.match(r"[ \t]+([a-z]+)", rest)
        if next_word and next_word.group(1) != "is":
            return None
    return _Found(letter, match.start(group), match.end(group), "opening")


def _in_formula(text: str, start: int, end: int) -> bool:
    """A capital inside working: a variable or unit next to digits, operators or other symbols ("x = 3A",
    "[H+]", "G = 6.67", "10 A", "$C$", "f(A)")."""
    # Markdown emphasis ("**B**") is not an operator.
    before, after = text[max(0, start - 5):start].rstrip("*_"), text[end:end + 5].lstrip("*_")
    return bool(re.search(r"[\d=+\-*/^_\\$<>{}|]\s*$", before) or re.match(r"\s*[=+*/^_\\$<>{}|\d]|[('\u2032]", after)
                or re.match(r"[+\-]", after) or re.search(r"\[\s*$", before))


# How a reply reads an option it mentions.
# Before a letter, in its clause: it is being ruled out ("not C", "neither A nor B", "eliminate (A)").
_RULED_OUT_BEFORE = re.compile(
    r"(?:\b(?:not|neither|nor|never|except|eliminat\w*|rul(?:e|es|ed|ing)\s+out|exclud\w*|rather\s+than|instead\s+of)"
    r"\W+(?:(?:option|options|choice|choices|answer|the)\W+){0,2}"
    r"|\b(?:wrong|incorrect|false|out)\W+(?:and\s+)?so\s+(?:is|are)\W+)[(\[]?$", re.IGNORECASE)
# After a letter, in its clause: its verdict is negative ("(A) no", "A is wrong", "A and B are not fruits").
_RULED_OUT_AFTER = re.compile(
    r"(?:[)\]]?\s*[:\-]?\s*(?:no|wrong|incorrect|false|x)\b"
    r"|[^.;!?\n]*?\b(?:is|are|seems?|looks?)\s+(?:(?:also|clearly|definitely|obviously|both)\s+)?"
    r"(?:wrong|incorrect|false|not\b|unlikely|impossible|implausible|ruled\s+out|out\b))",
    re.IGNORECASE)
# An option named by its text in a negated clause ("It is not the library").
_NEGATED_BEFORE = re.compile(r"\b(?:not|never|neither|nor|no|isn't|aren't|wasn't|rather\s+than|instead\s+of)\b"
                             r"(?:\W+\w+){0,3}\W*$", re.IGNORECASE)
# Before a letter: the reply concludes or corrects itself ("so D", "therefore the answer: B", "no wait, D").
_CONCLUDING_BEFORE = re.compile(
    r"\b(?:so|therefore|thus|hence|actually|wait|instead|(?:i'?ll|i'?d|i\s+will|i\s+would)\s+go\s+with|"
    r"i\s+(?:choose|pick|select)|i\s+would\s+(?:choose|pick|select))\b"
    r"\W*(?:[a-z']+\W+){0,6}(?:option\W+)?[*_]*[(\[]?$", re.IGNORECASE)
# "but A is better": a preference that settles between options.
_PREFERRED_AFTER = re.compile(r"[)\]]?[*_]*\s+is\s+(?:better|best|more\s+likely|the\s+better\s+\w+)\b",
                              re.IGNORECASE)
_BUT_BEFORE = re.compile(r"\bbut\W+(?:option\W+)?[*_]*[(\[]?$", re.IGNORECASE)
# A statement that commits without concluding: "it is B", "I think B", "A is correct", "A and C are both right".
_STATING_BEFORE = re.compile(
    r"\b(?:it\s+(?:is|(?:could|might|may|must|would)(?:\s+also)?\s+be)|it's|i\s+think(?:\s+it\s+is|\s+it's)?|"
    r"i\s+would\s+say|i'd\s+say|i\s+believe(?:\s+it\s+is|\s+it's)?|which\s+is|that\s+is|namely|i\.e\.)"
    r"\W+(?:option\W+)?[(\[]?$", re.IGNORECASE)
_STATING_AFTER = re.compile(
    r"[)\]]?(?:\s*(?:,|and|or)\s*(?:option\s+)?[(\[]?[A-Z][)\]]?)*\s+(?:is|are)\s+(?:both\s+|also\s+)?"
    r"(?:correct|right|true|the\s+(?:correct\s+|right\s+|best\s+)?answers?)\b", re.IGNORECASE)
# Later on the statement's line, another label joined by "and"/"or": "B. text** and **C. text".
_JOINED_LABEL = re.compile(r"\s(?:and|or)\s+[*_]*[(\[]?([A-Z])[)\].:*]")
# "A or C" right after a letter: the reply names more than one option at once.
_ALTERNATIVE_AFTER = re.compile(r"[)\]]?\s*(?:or|and|/)\s*(?:option\s+)?(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![\w']))")


def _clause_before(text: str, at: int) -> str:
    boundary = max(text.rfind(c, 0, at) for c in ".;!?\n")
    return text[boundary + 1:at]


# ---- yes / no ------------------------------------------------------------------------------------------

_TRUE_WORDS = r"yes|true|correct|right|accurate|absolutely|definitely|indeed|certainly|affirmative"
_FALSE_WORDS = r"no|false|incorrect|wrong|inaccurate|untrue|negative"
# "not true", "cannot be confirmed as true", "isn't correct": a negation within a few words flips the value;
# "not necessarily false" is a hedge, no verdict.
_TF_VALUE = re.compile(
    rf"(?P<neg>(?:not|n't|cannot|can\s*not|never)\b(?:\s+\w+){{0,3}}?\s+)?"
    rf"(?P<word>{_TRUE_WORDS}|{_FALSE_WORDS})\b"
    r"(?!\s+(?:idea|clue|way|information|answer|data|evidence|context|mention|one|doubt|longer|more|matter)\b)"
    r"(?P<not>\s+not\b)?",
    re.IGNORECASE,
)
_HEDGE = re.compile(r"\b(?:necessarily|entirely|fully|always|completely|sure|certain)\b", re.IGNORECASE)
_VERDICT = re.compile(
    r"\b(?:the\s+|this\s+|that\s+|its\s+)?(?:given\s+)?(?:statement|claim|assertion|premise)\b[^.\n;]{0,80}?\b"
    r"(?:is|are|was|would\s+be|seems\s+to\s+be|must\s+be|can\s+be)\s+(?:therefore\s+|thus\s+|actually\s+|indeed\s+|"
    r"also\s+|clearly\s+|definitely\s+|likely\s+)?"
    r"|\b(?:so|therefore|thus|hence|overall|i\s+would\s+say|i'd\s+say|i\s+think|i\s+believe)\b,?\s*(?:[*_]+\s*)?"
    r"(?=(?:(?:not\s+)?(?:yes|no|true|false))\b)"
    r"|\b(?:this|that|it)(?:\s+(?:statement\s+)?(?:is|would\s+be)|'s)\s+(?=(?:not\s+)?(?:true|false|incorrect|"
    r"correct|right|wrong|accurate|inaccurate)\b)"
    # "This cannot be confirmed as true": the negation and its scope are read by the value.
    r"|\b(?:this|that|it|the\s+(?:statement|claim))\s+(?=(?:cannot|can't|can\s+not|is\s+not|isn't)\b"
    r"(?:\s+\w+){0,3}?\s+(?:true|correct|accurate|right)\b)",
    re.IGNORECASE,
)


def _tf_value_at(text: str, at: int) -> tuple[str, int, int] | None:
    match = _TF_VALUE.match(text, at)
    if match is None or re.match(r"\s+or\s+(?:not\b|yes|no|true|false)", text[match.end():], re.IGNORECASE):
        return None  # "true or false": the choice itself, no verdict
    negated = bool(match.group("neg")) != bool(match.group("not"))
    if match.group("neg") and _HEDGE.search(match.group("neg")):
        return None
    word = match.group("word").lower()
    value = word in _TRUE_WORDS.split("|")
    if word in ("definitely", "absolutely", "certainly") and match.group("not"):
        value, negated = False, False
    value = value != negated
    # The span covers the negation too: "not true" is where the reply commits to false.
    return ("true" if value else "false"), match.start(), match.end()


class _YesNo:
    def __init__(self, text: str) -> None:
        self.text = text

    def conclusions(self) -> list[_Found]:
        found = []
        for start, value_at, rule in _cue_ends(self.text):
            value = _tf_value_at(self.text, value_at)
            if value is not None:
                found.append(_Found(value[0], value[1], value[2], rule))
        for match in _VERDICT.finditer(self.text):
            value = _tf_value_at(self.text, match.end())
            if value is not None and not any(f.start == value[1] for f in found):
                found.append(_Found(value[0], value[1], value[2], "verdict"))
        return sorted(found, key=lambda f: f.start)

    def opening(self) -> _Found | None:
        text = self.text
        lead = re.match(r"[\s*_\"'`>#]*", text).end()
        value = _tf_value_at(text, lead)
        if value is None:
            return None
        rest = text[value[2]:].strip().strip("*_`\"'.!:").strip()
        if not rest:
            return _Found(value[0], value[1], value[2], "whole_reply")
        # A leading word is the answer when it stands as one ("Yes, ...", "No. ..."), not as English ("No one").
        if re.match(r"\s*[*_]*\s*(?:[,.!:;\n]|$|[-\u2013\u2014])", text[value[2]:]):
            return _Found(value[0], value[1], value[2], "opening")
        return None

    def weak(self) -> _Found | None:
        for match in re.finditer(r"\b(?:yes|no|true|false)\b", self.text, re.IGNORECASE):
            value = _tf_value_at(self.text, match.start())
            before = self.text[max(0, match.start() - 40):match.start()]
            if value is None or re.search(r"(?:true\s+or|yes\s+or|or\s*)$", before, re.IGNORECASE):
                continue
            if re.match(r"\s+or\s+(?:no|false)\b", self.text[match.end():], re.IGNORECASE):
                continue
            negation = re.search(r"\b(?:not|n't|cannot)\b(?:\s+\w+){0,3}\s*$", before, re.IGNORECASE)
            if negation:
                if _HEDGE.search(negation.group(0)):
                    continue
                flipped = "false" if value[0] == "true" else "true"
                return _Found(flipped, match.start(), match.end(), "yes_no_word")
            return _Found(value[0], value[1], value[2], "yes_no_word")
        return None


# ---- numbers -------------------------------------------------------------------------------------------------

# Sign, optional currency, digits with thousands commas or plain, optional decimals, an optional "/denominator"
# or mixed fraction ("1 1/2"), an optional scale word, or a k/M suffix after a currency ("$70k"; "5m" is metres).
_NUMBER = re.compile(
    r"(?<![\w./])(?P<sign>[-\u2212])?\s?(?P<currency>[$\u20ac\u00a3])?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:(?P<mixed>\s+\d+/\d+)(?![\d.]))?"
    r"(?:/(?P<den>\d+)(?![\d.]))?"
    r"(?:(?P<suffix>[kKmM])\b|\s+(?P<scale>thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)
_FRAC = re.compile(r"\$?(?P<sign>-)?\s*\\[dt]?frac\s*\{\s*(?P<num>\d+(?:\.\d+)?)\s*\}\s*\{\s*(?P<den>\d+(?:\.\d+)?)\s*\}")
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12, "k": 10**3, "m": 10**6}
# "The answer is 16 - 3 - 4 = 9": the answer is the result, not the first operand.
_EQUATION_TAIL = re.compile(r"(?:\s*[-+*/x\u00d7\u00f7]\s*\$?\d[\d,]*(?:\.\d+)?%?)+\s*=\s*")
# "4 blue and 6 red shoe boxes": two counts stated as the answer, no single number.
_TWO_COUNTS = re.compile(r"(?:\s+[a-z]+){1,2}\s+and\s+\$?\d")
# "2 hours and 30 minutes": a duration stated in two units, read in the unit the question asks for.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*hours?\s*(?:and\s*)?(\d+(?:\.\d+)?)\s*min(?:ute)?s?\b", re.IGNORECASE)


def _number_value(match: re.Match) -> Fraction:
    value = Fraction(match.group("num").replace(",", ""))
    if match.group("mixed"):
        whole_num, whole_den = match.group("mixed").split("/")
        value += Fraction(int(whole_num), int(whole_den)) if int(whole_den) else 0
    if match.group("den") and int(match.group("den")) != 0:
        value /= int(match.group("den"))
    scale = match.group("scale") or (match.group("suffix") if match.group("currency") else None)
    if scale:
        value *= _SCALES[scale.lower()]
    return -value if match.group("sign") else value


def format_number(value: Fraction | float) -> str:
    """Canonical text of a number: integers without a decimal point, others as the shortest float."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return repr(float(value))


def _found_number(match: re.Match, rule: str) -> _Found:
    start = match.start("sign") if match.group("sign") else match.start("num")
    return _Found(format_number(_number_value(match)), start, match.end(), rule)


class _Number:
    def __init__(self, text: str, question: str | None) -> None:
        self.text = text
        self.question = question or ""

    def value_at(self, at: int, rule: str) -> _Found | None:
        text = self.text
        if rule == "boxed":
            inner_end = _closing_brace(text, at)
            frac = _FRAC.search(text, at, inner_end + 1)
            if frac is not None:
                return self._fraction(frac, rule)
            numbers = list(_NUMBER.finditer(text, at, inner_end))
            return _found_number(numbers[-1], rule) if numbers else None
        frac = _FRAC.match(text, at)
        if frac is not None:
            return self._fraction(frac, rule)
        duration = _DURATION.match(text, at)
        if duration is not None:
            minutes = Fraction(duration.group(1)) * 60 + Fraction(duration.group(2))
            asked = re.search(r"how\s+(?:many|much)\s+(minutes|hours)", self.question, re.IGNORECASE)
            if asked:
                value = minutes if asked.group(1).lower() == "minutes" else minutes / 60
                return _Found(format_number(value), duration.start(), duration.end(), rule)
        match = _NUMBER.match(text, at)
        if match is None:
            # A word or two before the number ("is about 9", "costs $5"), on the same line.
            match = _NUMBER.search(text, at, min(len(text), at + _VALUE_REACH))
            if match is None or "\n" in text[at:match.start()] or re.search(r"[.;]\s", text[at:match.start()]):
                return None
        if _TWO_COUNTS.match(text, match.end()):
            return _Found(None, match.start(), match.end(), "several")
        tail = _EQUATION_TAIL.match(text, match.end())
        result = _NUMBER.match(text, tail.end()) if tail else None
        return _found_number(result or match, rule)

    @staticmethod
    def _fraction(match: re.Match, rule: str) -> _Found:
        value = Fraction(match.group("num")) / Fraction(match.group("den")) if float(match.group("den")) else \
            Fraction(0)
        return _Found(format_number(-value if match.group("sign") else value), match.start(), match.end(), rule)

    def conclusions(self) -> list[_Found]:
        found = []
        for start, value_at, rule in _cue_ends(self.text):
            value = self.value_at(value_at, rule)
            if value is not None:
                found.append(value)
        for sentence in _CONCLUDING_SENTENCE.finditer(self.text):
            value = self._sentence_value(sentence.start("body"), sentence.end("body"))
            if value is not None and not any(f.start == value.start for f in found):
                found.append(value)
        return sorted(found, key=lambda f: f.start)

    def _sentence_value(self, start: int, end: int) -> _Found | None:
        """The number a concluding sentence states: the one after its last verb ("... is 2050 times"), else its
        first number ("Therefore, Jamaar can buy 3 plums with the remaining $0.75")."""
        verbs = list(re.finditer(r"\b(?:is|are|was|were|equals|be|totals?|comes\s+to)\b|=", self.text[start:end],
                                 re.IGNORECASE))
        for verb in reversed(verbs):
            value = self.value_at(_CUE_GAP.match(self.text, start + verb.end()).end(), "conclusion")
            if value is not None and value.end <= end:
                return value
        first = _NUMBER.search(self.text, start, end)
        if first is None:
            return None
        tail = _EQUATION_TAIL.match(self.text, first.end())
        result = _NUMBER.match(self.text, tail.end()) if tail else None
        return _found_number(result or first, "conclusion")

    def opening(self) -> _Found | None:
        body = self.text.strip()
        match = _NUMBER.fullmatch(body.strip("*_`\"'.$ ").strip())
        if match is None:
            return None
        lead = self.text.find(match.group(0).strip())
        value = _NUMBER.match(self.text, lead)
        return None if value is None else _found_number(value, "whole_reply")

    def weak(self) -> _Found | None:
        matches = list(_NUMBER.finditer(self.text))
        return _found_number(matches[-1], "last_number") if matches else None


# A sentence that opens with a concluding word: "Therefore, the total is 2050.", "So she has 16 - 7 = 9 plants."
_CONCLUDING_SENTENCE = re.compile(
    r"(?:^|(?<=[.!?:\n]))[ \t*_#>]*(?P<body>(?:therefore|thus|so|hence|in\s+total|overall|altogether|finally|"
    r"in\s+conclusion)\b[^\n]*?)(?=[.!?](?:\s|$)|\n)", re.IGNORECASE)
def _closing_brace(text: str, at: int) -> int:
    """Where the brace group opened just before ``at`` closes (the text's end if it never does)."""
    depth = 1
    for i in range(at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text)


# How far after a cue a number may start ("The answer is: about $9").
_VALUE_REACH = 25


def parse_number(text: Any) -> float | None:
    """The single number a gold answer holds ("1,234", "$5.00", "-3", "3/4"), as a float; None if none."""
    if text is None:
        return None
    if isinstance(text, (int, float, np.integer, np.floating)):
        return None if math.isnan(float(text)) else float(text)
    reader = _Number(str(text), None)
    found = (reader.conclusions() or [None])[-1] or reader.weak()
    return None if found is None else float(Fraction(found.value))


# ---- free-form text --------------------------------------------------------------------------------------

# "Answer:", "A:", "The answer is", "The answer to this question is:" label the answer, they are not part of it.
_ANSWER_PREFIX = re.compile(
    r"[\s*_\"'`>#]*(?:(?:the\s+)?(?:final\s+|correct\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?"
    r"(?:\s*[:\-]|\s+is\b\s*:?)|a\s*:)[\s*]*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _first_sentence(response: str) -> _Found | None:
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
            return _Found(stripped, offset, offset + len(stripped), "first_sentence")
    return None


# ---- the reader ----------------------------------------------------------------------------------------------


def check_task_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _reading(found: _Found) -> Reading:
    if found.value is None:
        return Reading(None, found.rule, options=found.options)
    return Reading(found.value, found.rule, found.start, found.end)


def read_reply(response: str | None, task_type: str, choices: Sequence[str] | None = None, *,
               n_choices: int | None = None, question: str | None = None,
               cut_off: bool | None = None) -> Reading:
    """What ``response`` answers to a question of ``task_type``, and the rule that read it (module docstring).

    ``choices``: the options' texts (mcq; their number bounds the letters, else ``n_choices``, else 5);
    ``question``: the question's text (an answer in hours and minutes is read in the unit it asks for);
    ``cut_off``: whether the reply reached its token budget (None: not known). A cut-off or looping reply with no
    strong evidence reads as no answer.
    """
    check_task_type(task_type)
    if response is None or (isinstance(response, float) and math.isnan(response)) or not str(response).strip():
        return Reading(None, "no_answer")
    response = str(response)
    if task_type == "ff_text":
        found = _first_sentence(response)
        return Reading(None, "no_answer") if found is None else _reading(found)
    text = _searchable(response)
    if task_type == "mcq":
        if choices is not None:
            choices = [str(c) for c in choices]
            n_choices = len(choices) if n_choices is None else n_choices
        reader = _Choice(text, n_choices, choices, question)
    elif task_type == "tf":
        reader = _YesNo(text)
    else:
        reader = _Number(text, question)
    conclusions = reader.conclusions()
    if conclusions:
        # A conclusion naming a letter beyond the options answers no option of this question; where the reply
        # also concludes on one of them, that is its answer.
        in_range = [found for found in conclusions if found.rule != "out_of_range"]
        return _reading((in_range or conclusions)[-1])
    opening = reader.opening()
    if opening is not None:
        return _reading(opening)
    if cut_off:
        return Reading(None, "cut_off")
    if cut_off is None and repeats_itself(text.split()):
        return Reading(None, "looping")
    weak = reader.weak()
    return Reading(None, "no_answer") if weak is None else _reading(weak)


def list_cell(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, float) and math.isnan(value):
        return []
    return list(value)


def read_item_reply(response: str | None, item: Mapping[str, Any], *, cut_off: bool | None = None) -> Reading:
    """:func:`read_reply` with the task type, options and question taken from a data-contract row."""
    choices = list_cell(item.get("choices")) or None
    return read_reply(response, item["task_type"], choices, question=item.get("question"), cut_off=cut_off)
