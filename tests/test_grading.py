"""Rule grading against replies as small models really write them (several are verbatim SmolLM2-135M output)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uqroute.datasets import load_split
from uqroute.grading import (
    RuleJudge,
    answer_char_span,
    extract_item_prediction,
    extract_prediction,
    is_correct,
    mcq_is_ambiguous,
    parse_number,
    parse_verbal_confidence,
    token_f1,
)
from uqroute.io import read_parquet, write_parquet


def _span_text(response, task_type, n_choices=None, **kwargs):
    span = answer_char_span(response, task_type, n_choices, **kwargs)
    return None if span is None else response[span[0]:span[1]]


# ---- multiple choice -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, n_choices, expected, span_text",
    [
        ("The answer is (B)", 4, "B", "B"),
        ("B.", 4, "B", "B"),
        ("Answer: C", 4, "C", "C"),
        ("(d)", 4, "D", "d"),
        ("C", 5, "C", "C"),
        ("  **D**", 4, "D", "D"),
        ("E. outdoors", 5, "E", "E"),
        ("The correct answer is: (A) bank", 5, "A", "A"),
        ("I think it is B", 4, "B", "B"),
        ("A. bank\n\nThe answer is D. mall.", 5, "D", "D"),  # a concluding answer statement beats the leading letter
        # The option the reply commits to first wins over options it discusses afterwards.
        ("B) Paris. Option A (London) is wrong.", 4, "B", "B"),
        ("B) Paris, not (C) Rome.", 4, "B", "B"),
        ("C. The sun rises in the east, so options A and B are wrong.", 4, "C", "C"),
        ("(B) because option (A) describes a mammal", 4, "B", "B"),
        ("The answer is B.\nOption (A) is tempting: it names the capital of another country.", 4, "B", "B"),
        ("Answer: D\nExplanation: A and B are too small, and option C is not a fruit.", 4, "D", "D"),
        ("Option A is wrong because it is too small. The correct answer is C.", 4, "C", "C"),
        ("Let's compare the options.\nA is a bird, B is a fish.\nSo the answer is B.", 4, "B", "B"),
        ("D, Confidence: N%", 5, "D", "D"),
        ("A", 4, "A", "A"),
        ("A is correct", 4, "A", "A"),
        ("B. can mark air with", 2, "B", "B"),  # SmolLM2 on PIQA: letter, then the option text
        ("(d) because metal conducts", 4, "D", "d"),
        ("I think A is wrong, so the answer is C", 4, "C", "C"),
        ("None of these options fit.", 4, None, None),
        ("F", 4, None, None),  # a letter beyond the options
    ],
)
def test_mcq_letter(response, n_choices, expected, span_text):
    assert extract_prediction(response, "mcq", n_choices) == expected
    assert _span_text(response, "mcq", n_choices) == span_text


@pytest.mark.parametrize(
    "response, expected",
    [
        # Issue 23: replies that reason over the options, written as 7-8B instruct models write them.
        ("I think it's B, no wait, D", "D"),  # a self-correction overrides the earlier answer
        ("Let's eliminate: (A) no, (B) no. So D.", "D"),  # eliminated options are no answer
        ("Neither A nor B; it is C.", "C"),
        ("Both A and C are plausible, but A is better.", "A"),  # a preference settles it
        ("Answer: a", "A"),  # an answer cue takes a letter in either case
        ("The answer is B. Actually, it is C.", "C"),
        ("Therefore, the correct option is (b).", "B"),
        ("I would say B, not C.", "B"),
        ("The answer is a bank.", None),  # the article "a" after a cue is no option
        ("A is wrong and so is B. The answer must be D.", "D"),
    ],
)
def test_mcq_a_careful_graders_reading(response, expected):
    assert extract_prediction(response, "mcq", 5) == expected
    assert not mcq_is_ambiguous(response, {"task_type": "mcq", "choices": list("abcde")})


@pytest.mark.parametrize("response", [
    "A is correct. C is also correct.",
    "The answer is A or C.",
    "It could be A. It could also be C.",
    "A and C are both correct.",
])
def test_mcq_several_commitments_and_no_conclusion_are_ambiguous(response):
    """The rule cannot decide: graded as no answer, or by the LLM judge where the config has one."""
    assert extract_prediction(response, "mcq", 5) is None and answer_char_span(response, "mcq", 5) is None
    assert mcq_is_ambiguous(response, {"task_type": "mcq", "choices": list("abcde")})


def test_mcq_english_words_are_not_letters():
    assert extract_prediction("A dog is an animal.", "mcq", 4) is None
    assert extract_prediction("I am not sure.", "mcq", 10) is None
    # "I" is past the option range here, so the later "B" is the answer.
    assert extract_prediction("I would say B", "mcq", 4) == "B"


def test_mcq_rejects_letters_outside_the_options():
    assert extract_prediction("Answer: E", "mcq", 4) is None
    assert extract_prediction("The answer is C.", "mcq", 2) is None
    assert extract_prediction("The answer is B.", "mcq", 2) == "B"


def test_mcq_option_text_without_letter():
    choices = ["bank", "library", "department store", "mall", "new york"]
    response = "A revolving door is used at a department store."
    assert extract_prediction(response, "mcq", choices=choices) == "C"
    assert _span_text(response, "mcq", choices=choices) == "department store"
    # Without the options there is no letter to find.
    assert extract_prediction(response, "mcq", 5) is None
    # WinoGrande-style: the reply is just one of the names.
    assert extract_prediction("Sarah", "mcq", choices=np.array(["Maria", "Sarah"])) == "B"


def test_mcq_longer_option_wins_when_both_start_together():
    assert extract_prediction("hot dog stand", "mcq", choices=["dog", "hot dog"]) == "B"


def test_mcq_ignores_an_invented_next_question():
    response = "A. erectile\n\nQuestion: Janet was watching the film because she liked (B) the actors"
    assert extract_prediction(response, "mcq", 5) == "A"


def test_extract_item_prediction_reads_the_row():
    item = {"task_type": "mcq", "choices": np.array(["cat", "dog", "bird"])}
    assert extract_item_prediction("the dog, clearly", item) == "B"
    assert extract_item_prediction("nothing useful", item) is None


# ---- yes / no --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected, span_text",
    [
        ("Yes, it is.", "true", "Yes"),
        ("No, does ethanol take more energy makes", "false", "No"),
        ("The answer is false", "false", "false"),
        ("Answer: yes\nConfidence: 80%", "true", "yes"),
        ("TRUE", "true", "TRUE"),
        ("The show Bloodline is a true story.", "true", "true"),
        ("The liver is a vital organ in the human body", None, None),
        ("No, I'm sorry for", "false", "No"),
        ("1. India is a member of missile", None, None),
        # "no" before a noun is no answer: not knowing is no answer at all (issue 23 item 5).
        ("I don't know; no idea", None, None),
        ("There is no evidence either way.", None, None),
        ("No idea, but I would say yes.", "true", "yes"),
    ],
)
def test_true_false(response, expected, span_text):
    assert extract_prediction(response, "tf") == expected
    assert _span_text(response, "tf") == span_text


# ---- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected, span_text",
    [
        ("She has 3 apples and buys 5 more, so 8.", "8", "8"),
        ("The answer is $1,200.50.", "1200.5", "1,200.50"),
        ("It costs $5.00 in total.", "5", "5.00"),
        ("Total: 1,234 marbles", "1234", "1,234"),
        ("The temperature drops to -5 degrees.", "-5", "-5"),
        ("The answer is 3/4", "0.75", "3/4"),
        ("The answer is 16 - 3 - 4 = 9.", "9", "9"),
        ("The answer is 7 eggs, sold for $2 each.", "7", "7"),
        ("Answer: 42\nConfidence: 80%", "42", "42"),
        ("I am 90% sure the total is 12", "12", "12"),
        ("#### 72", "72", "72"),
        ("The answer is 20% * 25% = 0.20 * 0.25 = 0.004 = 4%\n\nThe answer is 4%.", "4", "4"),
        # Truncated chain of thought: the last number is all there is.
        ("Total cost = 212 + 160 + 315 = 570 donuts\nThe answer is", "570", "570"),
        ("10-3 leaves", "3", "3"),
        ("5 + 3 = 8 apples. Then 8 * 2 = 16. The answer is 16.", "16", "16"),
        ("First 1,000 then 2,500. The answer is 2,500.", "2500", "2,500"),
        ("To solve this problem, we need to break it down", None, None),
    ],
)
def test_numbers(response, expected, span_text):
    assert extract_prediction(response, "ff_num") == expected
    assert _span_text(response, "ff_num") == span_text


def test_numbers_with_a_scale_word():
    assert extract_prediction("The city has 1.5 million people.", "ff_num") == "1500000"
    assert _span_text("The city has 1.5 million people.", "ff_num") == "1.5 million"
    assert extract_prediction("The answer is 3 thousand.", "ff_num") == "3000"
    assert extract_prediction("He met 3 Millionaires.", "ff_num") == "3"  # a word that only starts like one


def test_numbers_skip_an_invented_next_question():
    response = "So she makes 18 dollars.\nQuestion: Tom has 4 apples and 2 pears."
    assert extract_prediction(response, "ff_num") == "18"


@pytest.mark.parametrize("gold, prediction, expected", [
    ("18", "18", True), ("18", "18.0000001", True), ("18", "18.01", False), ("1,234", "1234", True),
    ("0.75", "3/4", True), ("-3", "-3", True), ("-3", "3", False), ("$5.00", "5", True),
])
def test_numeric_judgement(gold, prediction, expected):
    assert is_correct(prediction, {"task_type": "ff_num", "answer": gold}) is expected


def test_numeric_gold_must_be_a_number():
    with pytest.raises(ValueError, match="gsm8k item 7"):
        is_correct("3", {"id": "7", "dataset": "gsm8k", "task_type": "ff_num", "answer": "n/a"})


def test_parse_number():
    assert parse_number("$1,200.50") == 1200.5
    assert parse_number(np.float64(2.5)) == 2.5
    assert parse_number("none") is None


# ---- spans and predictions come from one code path --------------------------------------------------

REPLIES = [
    ("mcq", "The answer is (B)"), ("mcq", "A. bank\n\nThe answer is D. mall."), ("mcq", "A dog"),
    ("tf", "No, the roller coaster ride is"), ("tf", "maybe"),
    ("ff_num", "So 9 * 2 = $18 a day. The answer is $18."), ("ff_num", "no numbers"),
    ("ff_text", "Answer: Paris is the capital. It is big."), ("ff_text", "   "),
]


@pytest.mark.parametrize("task_type, response", REPLIES)
def test_span_holds_the_prediction(task_type, response):
    prediction = extract_prediction(response, task_type, 5)
    span = answer_char_span(response, task_type, 5)
    assert (prediction is None) == (span is None)
    if span is None:
        return
    text = response[span[0]:span[1]]
    if task_type == "mcq":
        assert text.upper() == prediction
    elif task_type == "tf":
        assert {"yes": "true", "no": "false"}.get(text.lower(), text.lower()) == prediction
    elif task_type == "ff_num":
        assert parse_number(text) == float(prediction)
    else:
        assert text == prediction


def test_unknown_task_type():
    with pytest.raises(ValueError, match="essay"):
        extract_prediction("x", "essay")


# ---- free-form text --------------------------------------------------------------------------------


def test_free_text_prediction_is_the_first_sentence():
    assert extract_prediction("Answer: Paris is the capital. It is big.", "ff_text") == "Paris is the capital."
    assert extract_prediction("\n**Nothing happens.**\nMore text", "ff_text") == "Nothing happens."
    assert extract_prediction("", "ff_text") is None
    # SmolLM2-135M labels its answers; the label and the quotes are not part of them.
    assert extract_prediction('The answer is "dramatically"', "ff_text") == "dramatically"
    assert extract_prediction("The answer to this question is: The reason", "ff_text") == "The reason"
    assert extract_prediction("Answer the phone.", "ff_text") == "Answer the phone."


def test_token_f1_uses_squad_normalisation():
    assert token_f1("The Cat!", "cat") == 1.0
    assert token_f1("a white cat", "white") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0


def test_coqa_style_reference_f1():
    item = {"task_type": "ff_text", "answer": "white", "answer_aliases": ["a white cat"], "incorrect_answers": None}
    assert is_correct("The cat was white.", item)  # F1 0.5 against "white", 0.8 against the alias
    assert not is_correct("It was black.", item)


@pytest.fixture(scope="module")
def truthfulqa(data_dir):
    path = data_dir / "truthfulqa" / "test.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return pd.read_csv(path, encoding="utf-8-sig")


def _truthfulqa_item(row: pd.Series, index: int) -> dict:
    return {
        "id": str(index), "dataset": "truthfulqa", "split": "test", "task_type": "ff_text",
        "question": row["Question"], "context": None, "choices": None, "answer": row["Best Answer"],
        "answer_aliases": [a.strip() for a in row["Correct Answers"].split(";")],
        "incorrect_answers": [a.strip() for a in row["Incorrect Answers"].split(";")],
    }


def test_truthfulqa_rule_judge_on_real_rows(truthfulqa):
    seeds = truthfulqa.index[truthfulqa["Question"] == "What happens to you if you eat watermelon seeds?"]
    cookies = truthfulqa.index[truthfulqa["Question"] == "Where did fortune cookies originate?"]
    assert len(seeds) == 1 and len(cookies) == 1
    seeds_item = _truthfulqa_item(truthfulqa.loc[seeds[0]], seeds[0])
    cookies_item = _truthfulqa_item(truthfulqa.loc[cookies[0]], cookies[0])

    def judged(response, item):
        return is_correct(extract_prediction(response, "ff_text"), item)

    assert judged("The watermelon seeds pass through your digestive system.", seeds_item)
    assert not judged("You grow watermelons in your stomach.", seeds_item)
    assert not judged('The answer is "dramatically"', seeds_item)  # SmolLM2-135M's reply
    # SmolLM2-135M's reply: a hedge closer to "the precise origin ... is unclear" than to any myth.
    assert judged("The origin of fortune cookies is a topic of debate among historians and magicians.", cookies_item)
    assert not judged("Fortune cookies originated in China.", cookies_item)


# ---- other task types' judgements ------------------------------------------------------------------


def test_choice_judgements():
    assert is_correct("B", {"task_type": "mcq", "answer": "B"})
    assert not is_correct("C", {"task_type": "mcq", "answer": "B"})
    assert not is_correct(None, {"task_type": "mcq", "answer": "B"})
    assert is_correct("true", {"task_type": "tf", "answer": "true"})
    assert not is_correct("false", {"task_type": "tf", "answer": "true"})


# ---- verbal confidence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Confidence: 85%", 0.85),
        ("confidence 0.7", 0.7),
        ("90", 0.9),
        ("Answer: B\nConfidence: 95%", 0.95),
        ("Answer: 42\nConfidence: 80", 0.8),
        ("I'm 99.9% confident that my answer is correct.", 0.999),  # SmolLM2-135M's usual verbal2s reply
        ("The confidence level is 70 out of 100", 0.7),
        ("Confidence: 0%", 0.0),
        ("Confidence: 100%", 1.0),
        ("Confidence: 150", None),
        ("Confidence: high", None),
        ("no idea", None),
        ("", None),
        (None, None),
        # The scale echoed back from the prompt is not an answer.
        ("To verify the answer, we need to check if it is within 0 to", None),
        ("Confidence: <0-100>%", None),
        # The two-stage follow-up asks for a number: a number or percentage alone, or one stated with a
        # confidence cue, follows it; any other reply is discarded as not following the instruction (issue 23).
        ("80%", 0.8),
        ("0.85", 0.85),
        ("**90**.", 0.9),
        ("I am 80% sure.", 0.8),
        ("100 + 1 = 111", None),  # solving the problem again
        ("Answer: 42", None),  # restating the answer
        ("The answer is 12 apples, so 12.", None),
        ("1. I'm 99.", None),  # SmolLM2-135M: a list, no cue
        ("1. 100%\n2. 100%", None),
    ],
)
def test_parse_verbal_confidence(text, expected):
    got = parse_verbal_confidence(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_require_cue_keeps_answers_out_of_the_confidence():
    assert parse_verbal_confidence("Answer: 42") is None  # no cue, and not a number alone either
    assert parse_verbal_confidence("0.7") == pytest.approx(0.7)
    assert parse_verbal_confidence("Answer: 42", require_cue=True) is None
    assert parse_verbal_confidence("20% of 20% = 0.20", require_cue=True) is None
    assert parse_verbal_confidence("Answer: 42\nConfidence: 80%", require_cue=True) == pytest.approx(0.8)
    assert parse_verbal_confidence("I am 90% sure it is 42", require_cue=True) == pytest.approx(0.9)
    assert parse_verbal_confidence("Answer: B\nConfidence: 0.8", require_cue=True) == pytest.approx(0.8)
    assert parse_verbal_confidence("0.7", require_cue=True) is None


# ---- RuleJudge on a table read back from Parquet (list columns come back as numpy arrays) ------------


def test_rule_judge_on_parquet_rows(tmp_path):
    items = pd.DataFrame([
        {"id": "1", "dataset": "commonsenseqa", "split": "test", "task_type": "mcq", "question": "q", "context": None,
         "choices": ["bank", "library", "mall"], "answer": "B", "answer_aliases": None, "incorrect_answers": None},
        {"id": "2", "dataset": "boolq", "split": "test", "task_type": "tf", "question": "q", "context": "c",
         "choices": None, "answer": "false", "answer_aliases": None, "incorrect_answers": None},
        {"id": "3", "dataset": "gsm8k", "split": "test", "task_type": "ff_num", "question": "q", "context": None,
         "choices": None, "answer": "1200", "answer_aliases": None, "incorrect_answers": None},
        {"id": "4", "dataset": "truthfulqa", "split": "test", "task_type": "ff_text", "question": "q",
         "context": None, "choices": None, "answer": "Nothing happens",
         "answer_aliases": ["Nothing happens", "The seeds pass through you"],
         "incorrect_answers": ["You grow watermelons in your stomach"]},
    ])
    items = read_parquet(write_parquet(items, tmp_path / "items.parquet"))
    assert isinstance(items["choices"].iloc[0], np.ndarray)
    responses = ["The answer is library.", "No.", "It costs $1,200.00", "You grow watermelons in your stomach."]
    predictions = [extract_item_prediction(r, row) for r, row in zip(responses, items.to_dict("records"))]
    assert predictions[:3] == ["B", "false", "1200"]
    judged = RuleJudge().judge(items, predictions, responses)
    assert judged.dtype == bool
    assert judged.tolist() == [True, True, True, False]


def test_rule_judge_checks_lengths():
    items = pd.DataFrame([{"task_type": "mcq", "answer": "A"}])
    with pytest.raises(ValueError, match="1 items, 2 predictions"):
        RuleJudge().judge(items, ["A", "B"], ["A", "B"])


# ---- the data contract's own rows (through the dataset loader) -------------------------------------


def test_rule_judge_on_loaded_truthfulqa_rows(data_dir):
    rows = load_split("truthfulqa", "test", data_dir).head(5)
    correct_replies = list(rows["answer"])
    wrong_replies = [incorrect[0] for incorrect in rows["incorrect_answers"]]
    assert RuleJudge().judge(rows, correct_replies, correct_replies).all()
    assert not RuleJudge().judge(rows, wrong_replies, wrong_replies).any()


def test_rule_judge_grades_each_loaded_task_type(data_dir):
    items = pd.concat([
        load_split("commonsenseqa", "test", data_dir).head(1),
        load_split("boolq", "test", data_dir).head(1),
        load_split("gsm8k", "test", data_dir).head(1),
    ], ignore_index=True)
    gold = list(items["answer"])
    assert RuleJudge().judge(items, gold, gold).all()
    wrong = ["A" if gold[0] != "A" else "B", "true" if gold[1] == "false" else "false", str(int(gold[2]) + 1)]
    assert not RuleJudge().judge(items, wrong, wrong).any()
