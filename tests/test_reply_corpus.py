"""The answer reader on 622 real replies of 13 public 3-9B models, against the project's own labels.

Prints the misread rate per part (dev, and the held-out third nobody read while writing the rules) and task type,
each with n and its 95 % Wilson interval, beside the rate of the sources' own answer parsers on the same replies,
and fails above the bars: 2 % of all replies, 3 % of the multiple-choice ones, and 5 % of the replies that answer
nothing given an answer. The corpus and the labels: tests/reply_corpus.py, docs/reading-replies.md.
"""

from __future__ import annotations

import pytest

from reply_corpus import (format_rates, item_of, load_corpus, misreads, normalised, rate_table, source_parser_rows,
                          wilson)
from uqroute.grading import read_item_reply
from uqroute.passes import counted_answer, default_weak_readings

MAX_MISREAD, MAX_MCQ_MISREAD, MAX_NO_ANSWER_GIVEN_ONE = 0.02, 0.03, 0.05


@pytest.fixture(scope="module")
def corpus(data_dir):
    return load_corpus(data_dir)


def read_as_graded(row, weak_readings=None):
    """The answer the grading counts (``judge.weak_readings``, by default the config schema's)."""
    reading = read_item_reply(row["reply"], item_of(row))
    return counted_answer(reading, weak_readings or default_weak_readings())


def test_the_corpus_is_labelled_whole_and_split_in_thirds(corpus):
    assert len(corpus) == 622
    assert set(corpus["part"]) == {"dev", "held-out"}
    held_out = corpus[corpus["part"] == "held-out"]
    for task_type, group in corpus.groupby("task_type"):
        assert round(len(group) / 3) == (held_out["task_type"] == task_type).sum()
    valid = corpus.apply(lambda row: row["label"] == "none" or normalised(row["task_type"], row["label"]) is not None,
                         axis=1)
    assert valid.all()


def test_reader_misreads_few_real_replies(corpus):
    wrong = misreads(corpus, read_as_graded)
    table = rate_table(corpus, wrong)
    source = source_parser_rows(corpus)
    parsers = rate_table(corpus[source], misreads(corpus[source], lambda row: row["source_pred"]))
    no_answer = corpus["label"] == "none"
    given = int((wrong & no_answer).sum())
    low, high = wilson(given, int(no_answer.sum()))
    print()
    print(format_rates(table, f"uqroute's reader (judge.weak_readings: {default_weak_readings()})"))
    print(format_rates(parsers, "the sources' own parsers, on the replies whose dump carries their parse"))
    print(f"replies that answer nothing, given an answer: {given}/{int(no_answer.sum())} "
          f"(95 % Wilson {100 * low:.1f}-{100 * high:.1f} %)")
    overall = table[(table["part"] == "all") & (table["task_type"] == "all")].iloc[0]
    mcq = table[(table["part"] == "both") & (table["task_type"] == "mcq")].iloc[0]
    assert overall["rate"] <= MAX_MISREAD, format_rates(table, "misread above the bar")
    assert mcq["rate"] <= MAX_MCQ_MISREAD, format_rates(table, "MCQ misread above the bar")
    assert given / no_answer.sum() <= MAX_NO_ANSWER_GIVEN_ONE


def test_the_default_for_weak_readings_is_the_better_on_the_corpus(corpus):
    """``judge.weak_readings`` defaults to the choice that misreads fewer replies (on a tie, the one that gives
    fewer replies that answer nothing an answer)."""
    def score(choice):
        wrong = misreads(corpus, lambda row: read_as_graded(row, choice))
        return int(wrong.sum()), int((wrong & (corpus["label"] == "none")).sum())

    other = next(choice for choice in ("drop", "count") if choice != default_weak_readings())
    assert score(default_weak_readings()) <= score(other)
