"""Prompt conversations per task type and pass, on real items."""

from __future__ import annotations

import pytest

from uqroute.datasets import load_split
from uqroute.prompts import PromptSet

DATASETS = {"commonsenseqa": "mcq", "boolq": "tf", "gsm8k": "ff_num", "truthfulqa": "ff_text"}


@pytest.fixture(scope="module")
def prompts():
    return PromptSet.load()


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_pass_renders_the_item(prompts, data_dir, dataset):
    item = load_split(dataset, "test", data_dir).iloc[0].to_dict()
    assert item["task_type"] == DATASETS[dataset]
    answer = prompts.answer(item)
    assert answer[-1]["role"] == "user" and item["question"] in answer[-1]["content"]
    if item["choices"] is not None:
        for letter, text in zip("ABCDE", item["choices"]):
            assert f"{letter}. {text}" in answer[-1]["content"]
    if item["context"]:
        assert item["context"][:50] in answer[-1]["content"]
    assert "onfidence" in prompts.verbal1s(item)[-1]["content"]

    reply = "The answer is 42." if item["task_type"] == "ff_num" else "A. something"
    for follow_up in (prompts.verbal2s(item, reply), prompts.ptrue(item, reply)):
        # the follow-ups continue the very same answer conversation
        assert follow_up[: len(answer)] == answer
        assert follow_up[len(answer)] == {"role": "assistant", "content": reply}
        assert follow_up[-1]["role"] == "user"
        roles = [m["role"] for m in follow_up if m["role"] != "system"]
        assert all(a != b for a, b in zip(roles, roles[1:])), "user and assistant alternate"
    assert prompts.hidden(item, reply) == answer + [{"role": "assistant", "content": reply}]
    assert "True or False" in prompts.ptrue(item, reply)[-1]["content"]
    assert prompts.ptrue_candidates == ("True", "False")


def test_ptrue_shows_the_proposed_answer(prompts, data_dir):
    item = load_split("gsm8k", "test", data_dir).iloc[0].to_dict()
    assert "Proposed answer: 42" in prompts.ptrue(item, "3 + 39 = 42. The answer is 42.")[-1]["content"]


def test_missing_template_key_names_file_and_key(tmp_path):
    broken = tmp_path / "prompts.yaml"
    broken.write_text("system: null\nanswer: {mcq: '{item}'}\n")
    with pytest.raises(KeyError) as error:
        PromptSet.load(broken).answer({"task_type": "mcq", "question": "q", "context": None, "choices": ["a", "b"]})
    assert str(broken) in str(error.value)
