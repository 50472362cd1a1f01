"""Grading a reply: read its answer and the evidence for that reading (:mod:`.reading`), read a stated confidence
(:mod:`.verbal`), judge the answer (:mod:`.judges`: the rule judgement, and an LLM judge on any OpenAI-compatible
endpoint)."""

from .judges import LLMJudge, RuleJudge, is_correct, normalize_answer, parse_verdict, token_f1
from .reading import RULES, STRONG, WEAK, Reading, format_number, parse_number, read_item_reply, read_reply
from .verbal import parse_verbal_confidence

__all__ = [
    "LLMJudge", "RULES", "Reading", "RuleJudge", "STRONG", "WEAK", "format_number", "is_correct",
    "normalize_answer", "parse_number", "parse_verbal_confidence", "parse_verdict", "read_item_reply", "read_reply",
    "token_f1",
]
