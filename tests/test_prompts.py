"""Prompt conversations per task type and pass, on sample items and on real loaded items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uqroute.datasets import load_split
from uqroute.io import read_parquet, write_parquet
from uqroute.prompts import PromptSet

SAMPLES = {
    "mcq": {
        "id": "csqa-1", "dataset": "commonsenseqa", "split": "test", "task_type": "mcq",
        "question": "Where do you keep milk cold?", "context": None,
        "choices": np.array(["fridge", "oven", "car", "bed", "sink"]), "answer": "A",
        "answer_aliases": None, "incorrect_answers": None,
    },
    "tf": {
        "id": "boolq-1", "dataset": "boolq", "split": "test", "task_type": "tf",
        "question": "is ethanol made from corn", "context": "Ethanol fuel is mostly made from corn in the US.",
        "choices": None, "answer": "true", "answer_aliases": None, "incorrect_answers": None,
    },
    "ff_num": {
        "id": "gsm8k-1", "dataset": "gsm8k", "split": "test", "task_type": "ff_num",
        "question": "Tom has 3 apples and buys 39 more. How many apples does he have?", "context": None,
        "choices": None, "answer": "42", "answer_aliases": None, "incorrect_answers": None,
    },
    "ff_text": {
        "id": "tqa-1", "dataset": "truthfulqa", "split": "test", "task_type": "ff_text",
        "question": "What happens if you eat watermelon seeds?", "context": None, "choices": None,
        "answer": "Nothing happens", "answer_aliases": ["Nothing happens"],
        "incorrect_answers": ["You grow watermelons in your stomach"],
    },
}
# Model-style greedy replies and the proposed answer the ptrue turn should restate.
REPLIES = {
    "mcq": ("B. oven\n\nThe oven keeps things warm.", "B. oven"),
    "tf": ("Yes, it is made from corn.", "yes"),
    "ff_num": ("3 + 39 = 42.\nThe answer is 42.", "42"),
    "ff_text": ("Answer: Nothing happens. The seeds pass through you.", "Nothing happens."),
}


@pytest.fixture(scope="module")
def prompts():
    return PromptSet.load()


def _roles(conversation):
    return [message["role"] for message in conversation]


def _alternates(conversation) -> bool:
    roles = [r for r in _roles(conversation) if r != "system"]
    return roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:]))


@pytest.mark.parametrize("task_type", SAMPLES)
def test_single_turn_passes_show_the_item(prompts, task_type):
    item = SAMPLES[task_type]
    for conversation in (prompts.answer(item), prompts.verbal1s(item)):
        assert _roles(conversation) == ["user"]  # the shipped file sets no system prompt
        content = conversation[0]["content"]
        assert f"Question: {item['question']}" in content
        if item["context"]:
            assert content.startswith(item["context"])
    assert "Confidence:" in prompts.verbal1s(item)[0]["content"]


def test_mcq_options_are_lettered_lines(prompts):
    content = prompts.answer(SAMPLES["mcq"])[0]["content"]
    assert "\nA. fridge\nB. oven\nC. car\nD. bed\nE. sink\n" in content
    assert "letter" in content


def test_instructions_stay_short(prompts):
    """Every prompt token is paid for on CPU: the instruction around the item is one short line."""
    for task_type, item in SAMPLES.items():
        shown = prompts.render_item(item)
        for conversation in (prompts.answer(item), prompts.verbal1s(item)):
            assert shown in conversation[0]["content"]
            assert len(conversation[0]["content"]) - len(shown) < 100, task_type


@pytest.mark.parametrize("task_type", SAMPLES)
def test_follow_ups_reuse_the_answer_conversation(prompts, task_type):
    item = SAMPLES[task_type]
    reply, proposed = REPLIES[task_type]
    answer = prompts.answer(item)
    hidden = prompts.hidden(item, reply)
    assert hidden == answer + [{"role": "assistant", "content": reply}]
    for follow_up in (prompts.verbal2s(item, reply), prompts.ptrue(item, reply)):
        assert follow_up[: len(hidden)] == hidden
        assert len(follow_up) == len(hidden) + 1 and follow_up[-1]["role"] == "user"
        assert _alternates(follow_up)
    assert "0 to 100" in prompts.verbal2s(item, reply)[-1]["content"]
    ptrue_turn = prompts.ptrue(item, reply)[-1]["content"]
    assert f"Proposed answer: {proposed}\n" in ptrue_turn
    # The paper: the model "evaluates the generated response using only True or False".
    assert ptrue_turn.endswith("Is the proposed answer True or False? Answer with True or False only.")


def test_ptrue_falls_back_to_the_reply_when_nothing_is_extracted(prompts):
    turn = prompts.ptrue(SAMPLES["mcq"], "\n  I am not sure about this one.\nMaybe.")[-1]["content"]
    assert "Proposed answer: I am not sure about this one.\n" in turn


def test_ptrue_candidates(prompts):
    assert prompts.ptrue_candidates == ("True", "False")


def test_items_read_back_from_parquet_render_the_same(prompts, tmp_path):
    table = pd.DataFrame([{**item, "choices": None if item["choices"] is None else list(item["choices"])}
                          for item in SAMPLES.values()])
    rows = read_parquet(write_parquet(table, tmp_path / "items.parquet"))
    for _, row in rows.iterrows():  # pandas Series with numpy-array list cells
        assert prompts.answer(row) == prompts.answer(SAMPLES[row["task_type"]])


def test_system_prompt_and_shared_templates(tmp_path):
    text = (PromptSet.load().path.read_text()
            .replace("system: null", "system: Answer briefly.")
            .replace('  ff_text: "{item}\\nAnswer in one short sentence."', '  ff_text: "{item}\\nOne sentence."'))
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    prompts = PromptSet.load(path)
    item = SAMPLES["ff_text"]
    conversation = prompts.verbal2s(item, "Nothing happens.")
    assert _roles(conversation) == ["system", "user", "assistant", "user"]
    assert conversation[0]["content"] == "Answer briefly."
    assert conversation[1]["content"].endswith("\nOne sentence.")


def test_missing_template_key_names_file_and_key(tmp_path):
    text = PromptSet.load().path.read_text().replace('  ff_text: "{item}\\nAnswer in one short sentence."\n', "")
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(KeyError) as error:
        PromptSet.load(path)
    assert str(path) in str(error.value) and "answer.ff_text" in str(error.value)


def test_mostly_empty_file_fails_on_load(tmp_path):
    broken = tmp_path / "prompts.yaml"
    broken.write_text("system: null\nanswer: {mcq: '{item}'}\n")
    with pytest.raises(KeyError) as error:
        PromptSet.load(broken)
    assert str(broken) in str(error.value)


def test_unknown_placeholder_names_file_and_template(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text(PromptSet.load().path.read_text().replace("Proposed answer: {proposed_answer}", "{answer}"))
    with pytest.raises(KeyError, match=r"template ptrue uses unknown placeholder\(s\) \['answer'\]"):
        PromptSet.load(path)


def test_bad_items_are_named(prompts):
    with pytest.raises(ValueError, match="commonsenseqa item csqa-1"):
        prompts.answer({**SAMPLES["mcq"], "choices": None})
    with pytest.raises(KeyError, match="missing field 'task_type'"):
        prompts.answer({"id": "x", "question": "q"})


# ---- real items through the dataset loader ---------------------------------------------------------

DATASETS = {"commonsenseqa": "mcq", "boolq": "tf", "gsm8k": "ff_num", "truthfulqa": "ff_text"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_pass_renders_a_loaded_item(prompts, data_dir, dataset):
    item = load_split(dataset, "test", data_dir).iloc[0].to_dict()
    assert item["task_type"] == DATASETS[dataset]
    answer = prompts.answer(item)
    assert answer[-1]["role"] == "user" and item["question"] in answer[-1]["content"]
    if item["choices"] is not None:
        for letter, text in zip("ABCDE", item["choices"]):
            assert f"{letter}. {text}" in answer[-1]["content"]
    if item["context"]:
        assert item["context"][:50] in answer[-1]["content"]
    reply = "The answer is 42." if item["task_type"] == "ff_num" else "A. something"
    for follow_up in (prompts.verbal2s(item, reply), prompts.ptrue(item, reply)):
        assert follow_up[: len(answer)] == answer
        assert follow_up[len(answer)] == {"role": "assistant", "content": reply}
        assert _alternates(follow_up)


def test_ptrue_shows_the_proposed_number(prompts, data_dir):
    item = load_split("gsm8k", "test", data_dir).iloc[0].to_dict()
    assert "Proposed answer: 42" in prompts.ptrue(item, "3 + 39 = 42. The answer is 42.")[-1]["content"]


def test_one_step_verbalization_can_reason_first_where_the_config_asks(prompts):
    from uqroute.passes import pass_settings

    item = SAMPLES["ff_num"]
    short = prompts.verbal1s(item)[-1]["content"]
    reasoned = prompts.verbal1s(item, reasoning=True)[-1]["content"]
    assert "step by step" not in short and "step by step" in reasoned
    assert reasoned.endswith("Answer: <number>\nConfidence: <0-100>%")
    generation = {"max_new_tokens": {"ff_num": 512, "mcq": 64}, "verbal_max_new_tokens": 64,
                  "verbal1s_reasoning": ["ff_num"], "part_size": 8}
    assert pass_settings("verbal1s", generation, ["ff_num"])["verbal1s_reasoning"] == ["ff_num"]
    assert pass_settings("verbal1s", generation, ["mcq"])["verbal1s_reasoning"] == []
