"""Replies cut off by their token budget (rule truncation), counted on real SmolLM2-135M replies to real questions."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import yaml

from conftest import DATA_DIR

from uqroute.analysis.truncation import TRUNCATION_COLUMNS, reply_tokens, truncation_row, truncation_table
from uqroute.grading.reading import repeats_itself
from uqroute.io import read_parquet, write_parquet
from uqroute.passes import run_pass, token_budget
from workflow_runs import EMBEDDED_CONFIG, plan

SLM = "smollm2-135m"
# Small on purpose: the multiple-choice budget cuts SmolLM2's replies, the math budget leaves room to stop.
SETTINGS = {
    "max_new_tokens": {"mcq": 4, "tf": 4, "ff_num": 160, "ff_text": 8},
    "verbal_max_new_tokens": 6,
    "verbal1s_reasoning": [],
    "part_size": 4,
}
BUDGETS = {key: SETTINGS[key] for key in ("max_new_tokens", "verbal_max_new_tokens")}


@pytest.fixture(scope="module")
def questions(data_dir) -> dict[str, pd.DataFrame]:
    from uqroute.datasets import load_split, take_subset

    return {name: take_subset(load_split(name, "test", data_dir), 3, 50) for name in ("gsm8k", "commonsenseqa")}


@pytest.fixture(scope="module")
def greedy(smollm2_engine, questions) -> dict[str, pd.DataFrame]:
    from uqroute.prompts import PromptSet

    return {name: run_pass("greedy", smollm2_engine, table, PromptSet.load(), SETTINGS, grade=False)
            for name, table in questions.items()}


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def gen_file(root, dataset: str, pass_name: str, table: pd.DataFrame) -> str:
    path = root / "results" / "gen" / SLM / dataset / "test" / f"{pass_name}.parquet"
    write_parquet(table, path)
    return str(path)


def test_each_pass_has_the_budget_its_replies_were_generated_with():
    assert token_budget("greedy", SETTINGS, "ff_num") == 160
    assert token_budget("sample", SETTINGS, "mcq") == 4
    assert token_budget("verbal1s", SETTINGS, "mcq") == 4 + 6  # the answer, then its confidence
    assert token_budget("verbal2s", SETTINGS, "ff_num") == 6
    with pytest.raises(ValueError, match="ptrue"):
        token_budget("ptrue", SETTINGS, "mcq")


@pytest.mark.slow
def test_greedy_replies_are_counted_exactly_from_their_tokens(greedy):
    replies = greedy["commonsenseqa"]
    tokens, slack = reply_tokens(replies, "greedy")
    assert slack == 0 and tokens == [list(t) for t in replies["tokens"]]
    row = truncation_row(tokens, budget=4, slack=slack)
    # The engine never goes past the budget, and SmolLM2 says more than four tokens about an option.
    assert row["max_tokens"] <= 4 and row["at_budget"] == sum(len(t) == 4 for t in replies["tokens"]) >= 1
    assert row["replies"] == 3 and row["share"] == pytest.approx(row["at_budget"] / 3)


@pytest.mark.slow
def test_a_text_only_table_is_counted_within_one_token_of_its_generated_ids(greedy, tokenizer):
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for name, replies in greedy.items():
        budget = SETTINGS["max_new_tokens"]["mcq" if name == "commonsenseqa" else "ff_num"]
        generated, _ = reply_tokens(replies, "greedy")
        retokenized, slack = reply_tokens(replies.drop(columns="tokens"), "verbal2s", tokenize)
        assert slack == 1
        assert all(abs(len(a) - len(b)) <= 1 for a, b in zip(retokenized, generated)), name
        # Re-tokenized within one token, counted within one more: the count never misses a reply that reached
        # its budget, and what it adds are replies at most two tokens short of it.
        counted = truncation_row(retokenized, budget, slack)["at_budget"]
        assert truncation_row(generated, budget, 0)["at_budget"] <= counted
        assert counted <= truncation_row(generated, budget - 2, 0)["at_budget"]


# Verbatim SmolLM2-135M-Instruct replies that used their whole budget (embedded default data, paper budgets,
# 2026-12-02): two caught in a loop, two cut off in the middle of an explanation.
LOOPING = [
    "A. 99.9999999999999999999999999999999999999999999999999999999999",  # CommonsenseQA, verbal 2-stage, 64
    "1. 2 x 2 = 4\n2. 2 x 2 = 4\n3. 2 x 2 = 4\n4. 2 x 2 = 4\n5. 2 x 2 = 4\n6. 2 x 2 = ",  # GSM8K, verbal 2-stage
]
CUT_OFF = [
    "No, I do not have to have a wicket keeper in cricket. In cricket, there is no rule stating a team must play "
    "a wicket-keeper",  # BoolQ, greedy, 32 tokens
    "No, physical address and MAC address are not the same. Physical address refers to the physical location of a "
    "device, while MAC address refers to the MAC address,",  # BoolQ, greedy, 32 tokens
]


@pytest.mark.slow
def test_a_reply_that_repeats_itself_is_told_from_one_cut_off(tokenizer):
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert [repeats_itself(tokenize(text)) for text in LOOPING + CUT_OFF] == [True, True, False, False]
    replies = [tokenize(text) for text in LOOPING + CUT_OFF] + [tokenize("No.")]
    budget = min(map(len, replies[:4]))
    row = truncation_row(replies, budget, slack=0)
    # A larger budget would finish the two cut-off replies, never the loops: only they count against it.
    assert (row["at_budget"], row["looping"]) == (4, 2) and row["cut_off_share"] == pytest.approx(2 / 5)
    assert not repeats_itself([]) and not repeats_itself(tokenize("No."))


def test_a_text_only_table_needs_a_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        reply_tokens(pd.DataFrame({"id": ["q"], "response": ["B"]}), "verbal2s")
    with pytest.raises(ValueError, match="ptrue"):
        reply_tokens(pd.DataFrame({"id": ["q"], "p_true": [0.5]}), "ptrue")


def test_shares_of_cut_off_replies_above_the_limit_are_marked():
    loop = [7] * 12  # one token over and over
    rows = [{"model": SLM, "dataset": "boolq", "split": "test", "pass_name": "greedy", "task_type": "tf",
             **truncation_row(replies, budget=4, slack=0)}
            for replies in ([[1, 2, 3, 4], [1], [1, 2]], [loop, loop + [7] * 4, [1, 2]], [[1], [2, 3], [4]])]
    table = truncation_table(rows, max_share=0.01)
    assert list(table.columns) == TRUNCATION_COLUMNS
    assert table["at_budget"].tolist() == [1, 2, 0] and table["looping"].tolist() == [0, 2, 0]
    assert table["over_limit"].tolist() == [True, False, False]


def test_a_greedy_reply_without_tokens_is_uncounted_not_empty():
    """An endpoint without logprobs stores a reply's text but no tokens: its length is unknown, not zero."""
    table = pd.DataFrame({"id": ["a", "b", "c"], "response": ["Yes, because", "", "No"],
                          "tokens": [[], [], ["No"]]})
    replies, slack = reply_tokens(table, "greedy")
    assert (replies, slack) == ([None, [], ["No"]], 0)
    row = truncation_row(replies, budget=1, slack=slack)
    assert (row["replies"], row["uncounted"], row["at_budget"]) == (3, 1, 1) and row["share"] == pytest.approx(1 / 2)
    nothing = truncation_table([{"model": "api", "dataset": "boolq", "split": "test", "pass_name": "greedy",
                                 "task_type": "tf", **truncation_row([None, None], budget=4, slack=0)}], 0.01)
    assert nothing["cut_off_share"].isna().all() and not nothing["over_limit"].any()


@pytest.mark.slow
def test_the_job_counts_every_pass_table_and_warns_about_cut_off_ones(greedy, smollm2_dir, tokenizer, tmp_path,
                                                                       caplog):
    from uqroute.jobs.analysis import truncation

    text_only = greedy["commonsenseqa"].drop(columns=["tokens", "token_logprobs", "prompt"])
    paths = [gen_file(tmp_path, name, "greedy", table) for name, table in greedy.items()]
    paths.append(gen_file(tmp_path, "commonsenseqa", "verbal2s", text_only))
    output = tmp_path / "truncation.parquet"
    # The multiple-choice replies stopped at 4 tokens: as a 4-token verbal2s budget, they reach it.
    budgets = {**BUDGETS, "verbal_max_new_tokens": 4}
    with caplog.at_level(logging.WARNING, logger="uqroute.analysis.truncation"):
        truncation(gen=paths, budgets=budgets, tokenizers={SLM: str(smollm2_dir)}, max_share=0.01, output=str(output))
    table = read_parquet(output)
    assert table[["dataset", "pass_name", "budget"]].values.tolist() == [
        ["gsm8k", "greedy", 160], ["commonsenseqa", "greedy", 4], ["commonsenseqa", "verbal2s", 4]]
    assert (table["model"] == SLM).all() and (table["split"] == "test").all() and (table["replies"] == 3).all()
    assert (table["uncounted"] == 0).all()
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    reached = sum(len(tokenize(text)) >= 4 - 1 for text in text_only["response"])
    assert table.loc[2, "at_budget"] == reached >= table.loc[1, "at_budget"] >= 1
    cut = table[table["over_limit"]]
    assert len(cut) >= 1 and all(paths[i] in caplog.text for i in cut.index)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == len(cut)


def test_a_model_without_a_tokenizer_leaves_its_text_only_replies_uncounted(tmp_path, caplog):
    from uqroute.jobs.analysis import truncation

    path = gen_file(tmp_path, "boolq", "verbal2s", pd.DataFrame({"id": ["q", "r"], "response": ["0.9", "0.8"]}))
    output = tmp_path / "truncation.parquet"
    with caplog.at_level(logging.WARNING, logger="uqroute.analysis.truncation"):
        truncation(gen=[path], budgets=BUDGETS, tokenizers={SLM: None}, max_share=0.01, output=str(output))
    row = read_parquet(output).iloc[0]
    assert (row["replies"], row["uncounted"], row["at_budget"]) == (2, 2, 0) and pd.isna(row["share"])
    assert path in caplog.text and "no tokenizer" in caplog.text


def test_ambiguous_mcq_replies_are_counted_per_pass(tmp_path, caplog):
    """The replies the rule could not read are reported beside the truncation counts."""
    from uqroute.jobs.analysis import truncation

    graded = pd.DataFrame({"id": ["q", "r", "s"], "response": ["B", "A is correct. C is also correct.", "C"],
                           "tokens": [["B"], ["A", " is"], ["C"]], "prediction": ["B", None, "C"],
                           "correct": [True, False, False], "ambiguous": [False, True, False]})
    greedy = gen_file(tmp_path, "commonsenseqa", "greedy", graded)
    verbal2s = gen_file(tmp_path, "commonsenseqa", "verbal2s", pd.DataFrame({"id": ["q"], "response": ["0.9"]}))
    output = tmp_path / "truncation.parquet"
    with caplog.at_level(logging.WARNING, logger="uqroute.analysis.truncation"):
        truncation(gen=[greedy, verbal2s], budgets=BUDGETS, tokenizers={SLM: None}, max_share=1.0,
                   output=str(output))
    table = read_parquet(output).set_index("pass_name")
    assert table.loc["greedy", "ambiguous"] == 1 and table.loc["verbal2s", "ambiguous"] == 0
    assert f"{greedy}: 1 of 3 replies commit to several options" in caplog.text


def test_a_budget_missing_from_the_config_names_the_file_and_key(tmp_path):
    from uqroute.jobs.analysis import truncation

    path = gen_file(tmp_path, "boolq", "verbal2s", pd.DataFrame({"id": ["q"], "response": ["True"]}))
    with pytest.raises(KeyError, match="verbal2s.parquet.*verbal_max_new_tokens"):
        truncation(gen=[path], budgets={"max_new_tokens": {"tf": 4}}, tokenizers={}, max_share=0.01,
                   output=str(tmp_path / "out.parquet"))


def planned_truncation_inputs(tmp_path, overrides: dict) -> list[str]:
    override = tmp_path / "override.yaml"
    # calibration.methods: null, so that the methods of the override need no calibration list to match.
    override.write_text(yaml.safe_dump({"data_dir": str(DATA_DIR), "calibration": {"methods": None}, **overrides}))
    (job,) = [job for job in plan(tmp_path, "results/metrics/truncation.parquet", configfiles=[EMBEDDED_CONFIG, override])
              if job["rule"] == "truncation"]
    return job["input"]


def test_the_train_replies_a_released_probe_learns_from_are_counted(tmp_path):
    """One dataset: no OOD probe scores it, but the released one still learns from its train split."""
    inputs = planned_truncation_inputs(tmp_path, {"datasets": ["boolq"], "methods": ["avg_token_prob", "ood_probe"]})
    assert f"results/gen/{SLM}/boolq/train/greedy.parquet" in inputs


def test_an_api_slm_is_planned_without_a_tokenizer_folder(tmp_path):
    inputs = planned_truncation_inputs(tmp_path, {"datasets": ["boolq"], "slms": ["gpt-4o-mini"], "engines": {},
                                                  "methods": ["verbal_2s"]})
    assert "results/gen/gpt-4o-mini/boolq/test/verbal2s.parquet" in inputs
    assert not [name for name in inputs if name.startswith("results/models/")]
