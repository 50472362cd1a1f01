"""Answer extraction and grading on real model-style replies, including the awkward ones."""

from __future__ import annotations

import pandas as pd
import pytest

from uqroute.datasets import load_split
from uqroute.grading import (
    RuleJudge,
    answer_char_span,
    extract_prediction,
    is_correct,
    parse_verbal_confidence,
)


@pytest.mark.parametrize(
    "response, n_choices, expected",
    [
        ("The answer is (B).", 4, "B"),
        ("B. can mark air with", 2, "B"),       # SmolLM2 on PIQA: letter, then the option text
        ("Answer: C", 5, "C"),
        ("(d) because metal conducts", 4, "D"),
        ("I think A is wrong, so the answer is C", 4, "C"),
        ("None of these options fit.", 4, None),  # no letter at all
        ("F", 4, None),                          # a letter beyond the options
        ("E. new york", 5, "E"),
    ],
)
def test_option_letter(response, n_choices, expected):
    assert extract_prediction(response, "mcq", n_choices) == expected


@pytest.mark.parametrize(
    "response, expected",
    [("Yes, ethanol takes more energy.", "true"), ("No, the answer is no", "false"), ("No, I'm sorry for", "false"),
     ("1. India is a member of missile", None)],
)
def test_yes_no(response, expected):
    assert extract_prediction(response, "tf") == expected


@pytest.mark.parametrize(
    "response, expected",
    [
        ("5 + 3 = 8 apples. Then 8 * 2 = 16. The answer is 16.", "16"),   # two numbers: the last one
        ("He pays $1,200.50 in total", "1200.5"),                         # currency and thousands comma
        ("The answer is -3", "-3"),
        ("3/4 of the cake", "0.75"),
        ("To solve this problem, we need to break it down step by step.", None),
    ],
)
def test_final_number(response, expected):
    assert extract_prediction(response, "ff_num") == expected


def test_numbers_compare_numerically():
    item = {"task_type": "ff_num", "answer": "1200.5", "answer_aliases": None, "incorrect_answers": None}
    assert is_correct("1200.50", item) and not is_correct("1200", item) and not is_correct(None, item)


def test_answer_span_points_at_the_graded_characters():
    response = "Let me think. The answer is (B)."
    start, end = answer_char_span(response, "mcq", 4)
    assert response[start:end] == "B"
    response = "First 1,000 then 2,500. The answer is 2,500."
    start, end = answer_char_span(response, "ff_num")
    assert response[start:end].replace(",", "") == "2500"


@pytest.mark.parametrize(
    "text, require_cue, expected",
    [
        ("Confidence: 85%", False, 0.85),
        ("I am 70% sure", True, 0.70),
        ("0.7", False, 0.7),
        ("0.7", True, None),           # a bare number in a reply that also answers may be the answer
        ("1. I'm 99.", False, 0.99),   # a list marker is not a confidence
        ("I'm not sure.", False, None),
        ("150", False, None),          # above 100: not a confidence
        ("Answer: B\nConfidence: 0.8", True, 0.8),
    ],
)
def test_verbal_confidence(text, require_cue, expected):
    value = parse_verbal_confidence(text, require_cue=require_cue)
    assert (value is None) if expected is None else value == pytest.approx(expected)


def test_truthfulqa_rule_judge_on_real_rows(data_dir):
    rows = load_split("truthfulqa", "test", data_dir).head(5)
    judge = RuleJudge()
    correct_replies = list(rows["answer"])
    wrong_replies = [incorrect[0] for incorrect in rows["incorrect_answers"]]
    assert judge.judge(rows, correct_replies, correct_replies).all()
    assert not judge.judge(rows, wrong_replies, wrong_replies).any()


def test_rule_judge_grades_each_task_type(data_dir):
    items = pd.concat([
        load_split("commonsenseqa", "test", data_dir).head(1),
        load_split("boolq", "test", data_dir).head(1),
        load_split("gsm8k", "test", data_dir).head(1),
    ], ignore_index=True)
    gold = list(items["answer"])
    assert RuleJudge().judge(items, gold, gold).all()
    wrong = ["A" if gold[0] != "A" else "B", "true" if gold[1] == "false" else "false", str(int(gold[2]) + 1)]
    assert not RuleJudge().judge(items, wrong, wrong).any()
