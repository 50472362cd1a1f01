"""Reading replies and judging answers: replies as small models really write them (several are verbatim
SmolLM2-135M output), and the patterns real 3-9B replies hold (the corpus test, tests/test_reply_corpus.py,
measures the reader on 622 of them)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from conftest import real_data
from uqroute.datasets import load_split
from uqroute.grading import (
    RULES,
    STRONG,
    WEAK,
    RuleJudge,
    is_correct,
    parse_number,
    parse_verbal_confidence,
    read_item_reply,
    read_reply,
    token_f1,
)
from uqroute.io import read_parquet, write_parquet

CHOICES = ["bank", "library", "department store", "mall", "new york"]


def read(response, task_type, n_choices=None, **kwargs):
    return read_reply(response, task_type, n_choices=n_choices, **kwargs)


def value(response, task_type, n_choices=None, **kwargs):
    return read(response, task_type, n_choices, **kwargs).value


def span_text(response, task_type, n_choices=None, **kwargs):
    span = read(response, task_type, n_choices, **kwargs).span
    return None if span is None else response[span[0]:span[1]]


def test_every_reading_names_a_rule_of_known_strength():
    assert {rule.strength for rule in RULES.values()} == {"strong", "weak", "none"}
    for response, task_type in [("The answer is (B)", "mcq"), ("B appears somewhere", "mcq"), ("nothing", "mcq"),
                                ("Yes.", "tf"), ("It is 42 or so", "ff_num")]:
        reading = read(response, task_type, 4)
        assert reading.rule in RULES and (reading.value is None) == (reading.span is None)


# ---- multiple choice -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, n_choices, expected, span",
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
def test_mcq_letter(response, n_choices, expected, span):
    reading = read(response, "mcq", n_choices)
    assert reading.value == expected
    assert (reading.strength == STRONG) == (expected is not None)
    assert span_text(response, "mcq", n_choices) == span


@pytest.mark.parametrize(
    "response, expected",
    [
        # Replies that reason over the options, as 7-8B instruct models write them.
        ("I think it's B, no wait, D", "D"),  # a self-correction overrides the earlier answer
        ("Let's eliminate: (A) no, (B) no. So D.", "D"),  # eliminated options are no answer
        ("Neither A nor B; it is C.", "C"),
        ("Both A and C are plausible, but A is better.", "A"),  # a preference settles it
        ("Answer: a", "A"),  # an answer cue takes a letter in either case
        ("The answer is B. Actually, it is C.", "C"),
        ("Therefore, the correct option is (b).", "B"),
        ("I would say B, not C.", "B"),
        ("The answer is a bank.", "A"),  # the option's text after a cue
        ("A is wrong and so is B. The answer must be D.", "D"),
    ],
)
def test_mcq_a_careful_graders_reading(response, expected):
    reading = read(response, "mcq", choices=CHOICES)
    assert (reading.value, reading.strength) == (expected, STRONG)


@pytest.mark.parametrize(
    "response, expected, rule",
    [
        # JSON answers, as many harnesses ask for them; the explanation naming an option is not the answer.
        ('{"Answer": "C"}', "C", "json_answer"),
        ('```json\n{" ANSWER":"B" }\n```', "B", "json_answer"),
        ('{"Explanation": "Revolving doors are at banks, not libraries.", "Answer": "C"}', "C", "json_answer"),
        ('{"answer": "department store"}', "C", "json_answer"),
        # A reply that re-answers the prompt's worked examples first: its last answer is this question's.
        ('{"ANSWER": "C"} \n\n{"ANSWER": "A"} \n\n{"ANSWER": "E"}', "E", "json_answer"),
        ("The best answer is: Sentence (B) shows the contrast.", "B", "answer_cue"),
        ("The sample is acidic, which rules out (A). The remaining choice, which is (B), fits.", "B",
         "commitment"),
        # An option list echoed before the conclusion is working, not the answer.
        ("Let's look at each option:\nA. bank\nB. library\nC. department store\nThe most suitable choice is B.", "B",
         "answer_cue"),
        ("Both could work, but **B** is the better fit.", "B", "conclusion"),
        ("I'd go with **D** here.", "D", "conclusion"),
        ("Therefore, the most likely cause is (A).", "A", "answer_cue"),
        ("The only option left is D. It keeps", "D", "answer_cue"),
        # A negated option's text is no answer; the one named as the answer is.
        ("It is not the library; a revolving door is found at a bank.", "A", "sole_option_text"),
    ],
)
def test_mcq_strong_evidence(response, expected, rule):
    reading = read(response, "mcq", choices=CHOICES)
    assert (reading.value, reading.rule, reading.strength) == (expected, rule, STRONG)


@pytest.mark.parametrize("response", [
    "A is correct. C is also correct.",
    "The answer is A or C.",
    "It could be A. It could also be C.",
    "A and C are both correct.",
    "The answer is (B) and (C).",
    "The answer is **B. library** and **C. department store**.",
])
def test_mcq_several_commitments_and_no_conclusion_are_no_answer(response):
    """The rule cannot decide: no answer, or the LLM judge's verdict where the config has one."""
    reading = read(response, "mcq", 5)
    assert (reading.value, reading.rule, reading.span) == (None, "several", None)
    assert len(reading.options) == 2


def test_mcq_a_conclusion_beyond_the_options_is_no_answer_unless_an_option_was_concluded():
    assert read("After all this, the answer is (H).", "mcq", 4).rule == "out_of_range"
    # An invented summary of other questions after this question's answer does not replace it.
    reply = "The answer is (D).\n\nSummary of the other questions:\n1. Answer: H\n2. Answer: J"
    assert value(reply, "mcq", 4) == "D"


@pytest.mark.parametrize("response", [
    # Working text is never evidence alone: variables, units, ions, sub-question labels, an echoed option list.
    "We use G = 6.67e-11 and the mass of Earth to find the force. Then F = G m M / r^2 gives",
    "The concentration [H+] is 10^-3, so the pH is",
    "(a) First we find the current: 10 A flows through R. (b) Then the voltage",
    "A. go to jail\nB. cry\nC.",  # SmolLM2 on CommonsenseQA: the options, echoed
])
def test_mcq_working_text_is_no_strong_evidence(response):
    reading = read(response, "mcq", 10)
    assert reading.strength != STRONG and reading.value is None


def test_mcq_weak_evidence_is_marked_weak():
    reading = read("The passage mentions (C) near the end of the", "mcq", 4)
    assert (reading.value, reading.rule, reading.strength) == ("C", "bracketed_letter", WEAK)
    reading = read("Revolving doors keep the heat in; a department store and a mall both have them.", "mcq",
                   choices=CHOICES)
    assert (reading.value, reading.rule, reading.strength) == ("C", "option_text", WEAK)


def test_mcq_english_words_are_not_letters():
    assert value("A dog is an animal.", "mcq", 4) is None
    assert value("I am not sure.", "mcq", 10) is None
    # "I" is past the option range here, so the later "B" is the answer.
    assert value("I would say B", "mcq", 4) == "B"


def test_mcq_rejects_letters_outside_the_options():
    assert value("Answer: E", "mcq", 4) is None
    assert value("The answer is C.", "mcq", 2) is None
    assert value("The answer is B.", "mcq", 2) == "B"


def test_mcq_option_text_without_letter():
    response = "A revolving door is used at a department store."
    assert (value(response, "mcq", choices=CHOICES), span_text(response, "mcq", choices=CHOICES)) == \
        ("C", "department store")
    # Without the options there is no letter to find.
    assert value(response, "mcq", 5) is None
    # WinoGrande-style: the reply is just one of the names.
    assert value("Sarah", "mcq", choices=np.array(["Maria", "Sarah"])) == "B"


def test_mcq_longer_option_wins_when_both_start_together():
    assert value("hot dog stand", "mcq", choices=["dog", "hot dog"]) == "B"


def test_mcq_ignores_an_invented_next_question():
    response = "A. erectile\n\nQuestion: Janet was watching the film because she liked (B) the actors"
    assert value(response, "mcq", 5) == "A"


def test_read_item_reply_reads_the_row():
    item = {"task_type": "mcq", "choices": np.array(["cat", "dog", "bird"])}
    assert read_item_reply("the dog, clearly", item).value == "B"
    assert read_item_reply("nothing useful", item).value is None


# ---- no answer -------------------------------------------------------------------------------------


def test_a_cut_off_or_looping_reply_without_a_conclusion_gives_no_answer():
    cut = "Let's check each: the mass is 3 kg and (C) mentions mass, so we compute 3 * 9.8 ="
    assert read(cut, "mcq", 4).rule == "bracketed_letter"  # length unknown: weak evidence, as in any reply
    assert read(cut, "mcq", 4, cut_off=True).rule == "cut_off"
    assert read("So she has 3 + 4 = 7 apples, then 7 * 2", "ff_num", cut_off=True).value is None
    loop = "We refer to Wikipedia for help. " + "The option (C) is in the text. " * 12
    assert read(loop, "mcq", 4).rule == "looping"
    # An explicit conclusion stands, cut off or looping after it.
    assert value("The answer is (B). Explanation: the reaction releases", "mcq", 4, cut_off=True) == "B"
    assert value("The answer is (B).\n" + "The answer is (B).\n" * 20 + "The answer", "mcq", 4) == "B"
    # A reply that finished is not a loop, however it repeats.
    assert read(loop, "mcq", 4, cut_off=False).rule == "bracketed_letter"


# ---- yes / no --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected, span",
    [
        ("Yes, it is.", "true", "Yes"),
        ("No, does ethanol take more energy makes", "false", "No"),
        ("The answer is false", "false", "false"),
        ("Answer: yes\nConfidence: 80%", "true", "yes"),
        ("TRUE", "true", "TRUE"),
        ("No, I'm sorry for", "false", "No"),
        # Negation and its scope.
        ("The statement is not true.", "false", "not true"),
        ("This cannot be confirmed as true.", "false", "cannot be confirmed as true"),
        ("The claim is not necessarily false, but the evidence is mixed.\nAnswer: True", "true", "True"),
        # The last conclusion: a final "so no" overrides a leading "yes".
        ("Yes, at first sight. But the ship sank in 1912, so no.", "false", "no"),
        ("Yes. Looking closer, the answer is no.", "false", "no"),
        # Synonyms.
        ("Correct.", "true", "Correct"),
        ("Incorrect, the sun is a star.", "false", "Incorrect"),
        ("Absolutely! Bats can see.", "true", "Absolutely"),
        ("Definitely not.", "false", "Definitely not"),
        ("That's wrong: Sydney is not the capital.", "false", "wrong"),
        ('```json {"ANSWER": false}```', "false", "false"),
        ("Based on the comparison we can conclude:\n**NO**", "false", "NO"),
    ],
)
def test_true_false(response, expected, span):
    reading = read(response, "tf")
    assert (reading.value, reading.strength) == (expected, STRONG)
    assert span_text(response, "tf") == span


@pytest.mark.parametrize(
    "response, expected, rule",
    [
        ("The show Bloodline is a true story.", "true", "yes_no_word"),
        ("The liver is a vital organ in the human body", None, "no_answer"),
        ("1. India is a member of missile", None, "no_answer"),
        ("I don't know; no idea", None, "no_answer"),  # "no" before a noun is no answer
        ("There is no evidence either way.", None, "no_answer"),
        ("No idea, but I would say yes.", "true", "verdict"),
        ("It is true or false depending on the year", None, "no_answer"),  # the choice itself, not an answer
    ],
)
def test_true_false_weak_or_no_evidence(response, expected, rule):
    reading = read(response, "tf")
    assert (reading.value, reading.rule) == (expected, rule)


# ---- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected, span",
    [
        ("The answer is $1,200.50.", "1200.5", "1,200.50"),
        ("The answer is 3/4", "0.75", "3/4"),
        ("The answer is 16 - 3 - 4 = 9.", "9", "9"),
        ("The answer is 7 eggs, sold for $2 each.", "7", "7"),
        ("Answer: 42\nConfidence: 80%", "42", "42"),
        ("#### 72", "72", "72"),
        ("The answer is 20% * 25% = 0.20 * 0.25 = 0.004 = 4%\n\nThe answer is 4%.", "4", "4"),
        ("5 + 3 = 8 apples. Then 8 * 2 = 16. The answer is 16.", "16", "16"),
        ("First 1,000 then 2,500. The answer is 2,500.", "2500", "2,500"),
        ("So she makes 18 dollars.", "18", "18"),  # a concluding sentence
        ("So he has 300 - 50 = 250 dollars left.", "250", "250"),
        ("Therefore, Jamaar can buy 3 plums with the remaining $0.75.", "3", "3"),
        ("Therefore, the combined total of taps is 2050 times.", "2050", "2050"),
        # \boxed{} is a conclusion; the check after it is working.
        ("We get \\boxed{18}. Check: 18 + 2 = 20.", "18", "18"),
        ("The answer is \\frac{3}{4}.", "0.75", "\\frac{3}{4}"),
        ("\\boxed{\\frac{3}{4}}", "0.75", "\\frac{3}{4}"),
        ("The answer is 1 1/2 cups.", "1.5", "1 1/2"),
        ("Answer: $70k", "70000", "70k"),
        ("The answer is $1.5M", "1500000", "1.5M"),
        ("The answer is 5m.", "5", "5m"),  # metres: a k/M suffix scales a sum of money only
        ('```json\n{"reasoning": "5 + 7 = 12", "answer": 33.75}\n```', "33.75", "33.75"),
        ('{"answer": "19"}\nRecomputing: 240 - 235 = 5. The correct difference is 5, not 19.', "5", "5"),
    ],
)
def test_numbers(response, expected, span):
    reading = read(response, "ff_num")
    assert (reading.value, reading.strength) == (expected, STRONG)
    assert span_text(response, "ff_num") == span


def test_numbers_a_duration_reads_in_the_unit_asked_for():
    reply = "The answer is 2 hours and 30 minutes."
    assert value(reply, "ff_num", question="How many minutes does the trip take?") == "150"
    assert value(reply, "ff_num", question="How many hours does the trip take?") == "2.5"


def test_numbers_two_counts_are_no_single_answer():
    reading = read('{"answer": "4 blue and 6 red shoe boxes"}', "ff_num")
    assert (reading.value, reading.rule) == (None, "several")


@pytest.mark.parametrize(
    "response, expected, rule",
    [
        ("She has 3 apples and buys 5 more: 8.", "8", "last_number"),
        ("Total: 1,234 marbles", "1234", "last_number"),
        ("Total cost = 212 + 160 + 315 = 570 donuts\nThe answer is", "570", "last_number"),
        ("To solve this problem, we need to break it down", None, "no_answer"),
    ],
)
def test_numbers_weak_or_no_evidence(response, expected, rule):
    reading = read(response, "ff_num")
    assert (reading.value, reading.rule) == (expected, rule)


def test_numbers_with_a_scale_word():
    assert value("The answer is 1.5 million.", "ff_num") == "1500000"
    assert span_text("The answer is 1.5 million.", "ff_num") == "1.5 million"
    assert value("The answer is 3 thousand.", "ff_num") == "3000"
    assert value("He met 3 Millionaires.", "ff_num") == "3"  # a word that only starts like one


def test_numbers_skip_an_invented_next_question():
    response = "So she makes 18 dollars.\nQuestion: Tom has 4 apples and 2 pears."
    assert value(response, "ff_num") == "18"


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


# ---- spans and values come from one reading ---------------------------------------------------------

REPLIES = [
    ("mcq", "The answer is (B)"), ("mcq", "A. bank\n\nThe answer is D. mall."), ("mcq", "A dog"),
    ("tf", "No, the roller coaster ride is"), ("tf", "maybe"),
    ("ff_num", "So 9 * 2 = $18 a day. The answer is $18."), ("ff_num", "no numbers"),
    ("ff_text", "Answer: Paris is the capital. It is big."), ("ff_text", "   "),
]


@pytest.mark.parametrize("task_type, response", REPLIES)
def test_span_holds_the_value(task_type, response):
    reading = read(response, task_type, 5)
    assert (reading.value is None) == (reading.span is None)
    if reading.span is None:
        return
    text = response[reading.start:reading.end]
    if task_type == "mcq":
        assert text.upper() == reading.value
    elif task_type == "tf":
        assert {"yes": "true", "no": "false"}.get(text.lower(), text.lower()) == reading.value
    elif task_type == "ff_num":
        assert parse_number(text) == float(reading.value)
    else:
        assert text == reading.value


def test_unknown_task_type():
    with pytest.raises(ValueError, match="essay"):
        read_reply("x", "essay")


# ---- free-form text --------------------------------------------------------------------------------


def test_free_text_prediction_is_the_first_sentence():
    assert value("Answer: Paris is the capital. It is big.", "ff_text") == "Paris is the capital."
    assert value("\n**Nothing happens.**\nMore text", "ff_text") == "Nothing happens."
    assert value("", "ff_text") is None
    # SmolLM2-135M labels its answers; the label and the quotes are not part of them.
    assert value('The answer is "dramatically"', "ff_text") == "dramatically"
    assert value("The answer to this question is: The reason", "ff_text") == "The reason"
    assert value("Answer the phone.", "ff_text") == "Answer the phone."
    assert read("Answer the phone.", "ff_text").rule == "first_sentence"


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
    return pd.read_csv(real_data(data_dir / "truthfulqa" / "test.csv"), encoding="utf-8-sig")


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
        return is_correct(value(response, "ff_text"), item)

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
        # confidence cue, follows it; any other reply is discarded as not following the instruction.
        ("80%", 0.8),
        ("0.85", 0.85),
        ("**90**.", 0.9),
        ("I am 80% sure.", 0.8),
        ("100 + 1 = 111", None),  # solving the problem again
        ("Answer: 42", None),  # restating the answer
        ("The answer is 12 apples, so 12.", None),
        ("1. I'm 99.", None),  # SmolLM2-135M: a list, no cue
        ("1. 100%\n2. 100%", None),
        # Each statement on the scale it states.
        ("8/10", 0.8),
        ("Confidence: 8/10", 0.8),
        ("7 out of 10", 0.7),
        ("I'd rate my confidence 7 out of 10.", 0.7),
        ("90 out of 100", 0.9),
        ("On a scale of 0 to 100, 95", 0.95),
        ("Answer: B (90%)", 0.9),
        ("0.9 confident", 0.9),
        ("I'd say 80", 0.8),
        # The last statement counts.
        ("Confidence: 80%. On reflection, confidence: 60%", 0.6),
        # A bare 1-10 could be a percentage or a 10-point score: never rescaled silently.
        ("Confidence: 8", None),
        ("Confidence: 5", None),
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
    assert parse_verbal_confidence("I'd say 80", require_cue=True) is None  # in a one-step reply, an answer
    assert parse_verbal_confidence("Answer: 42 (90%)", require_cue=True) == pytest.approx(0.9)


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
    predictions = [read_item_reply(r, row).value for r, row in zip(responses, items.to_dict("records"))]
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


# ---- grading a pass: readings, their strength, the budget -------------------------------------------


def test_grading_reads_a_reply_at_its_budget_as_cut_off_and_records_each_rule():
    from uqroute.passes import PASS_COLUMNS, grade_pass

    items = pd.DataFrame({"id": ["q1", "q2", "q3", "q4"], "dataset": "gsm8k", "split": "test", "task_type": "ff_num",
                          "question": "How many?", "answer": ["7", "7", "7", "7"]})
    responses = ["So she has 3 + 4 = 7 apples, then 7 * 2",  # at the budget, no conclusion
                 "First 3 + 4 = 7 apples",                      # finished, weak evidence only
                 "The answer is 7. Then we check 3 + 4",        # at the budget after its conclusion
                 "We add 3 and 4 to get 7"]                     # length unknown (no tokens): weak, not cut off
    tokens = [["t"] * 8, ["t"] * 5, ["t"] * 8, []]
    replies = pd.DataFrame({"id": items["id"], "prompt": "", "response": responses, "tokens": tokens,
                            "token_logprobs": [[-0.1] * len(t) for t in tokens]})
    budgets = {"max_new_tokens": {"ff_num": 8}, "verbal_max_new_tokens": 4}
    graded = grade_pass("greedy", replies, items, budgets=budgets, weak_readings="count")
    assert list(graded.columns) == PASS_COLUMNS["greedy"]
    assert graded["read_by"].tolist() == ["cut_off", "last_number", "answer_cue", "last_number"]
    assert graded["prediction"].tolist() == [None, "7", "7", "7"]
    assert graded["correct"].tolist() == [False, True, True, True] and set(graded["graded_by"]) == {"rule"}
    dropped = grade_pass("greedy", replies, items, budgets=budgets, weak_readings="drop")
    assert dropped["prediction"].tolist() == [None, None, "7", None]
    assert dropped["correct"].tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="weak_readings"):
        grade_pass("greedy", replies, items, weak_readings="sometimes")


def test_docs_list_every_reading_rule_with_its_strength():
    from uqroute import REPO_ROOT

    text = (REPO_ROOT / "docs" / "reading-replies.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+)` \| (strong|weak|none) \|", text, re.MULTILINE))
    assert documented == {name: rule.strength for name, rule in RULES.items()}
