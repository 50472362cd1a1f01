"""Grading a reply: extract its answer (:mod:`.extraction`), read a stated confidence (:mod:`.verbal`),
judge the answer (:mod:`.judges`: the rule judge, and an LLM judge for free-form answers)."""

from .extraction import (answer_char_span, extract_item_prediction, extract_prediction, format_number, mcq_is_ambiguous,
                         parse_number, read_item_answer)
from .judges import Judge, LLMJudge, RuleJudge, is_correct, normalize_answer, parse_verdict, token_f1
from .verbal import parse_verbal_confidence

__all__ = [
    "Judge", "LLMJudge", "RuleJudge", "answer_char_span", "extract_item_prediction", "extract_prediction",
    "format_number", "is_correct", "mcq_is_ambiguous", "normalize_answer", "parse_number", "parse_verbal_confidence",
    "parse_verdict", "read_item_answer",
    "token_f1",
]
