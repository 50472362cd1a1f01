"""Generation passes and their checkpoints, on the real SmolLM2-135M and real questions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from uqroute.checkpoint import BatchCheckpoint
from uqroute.io import write_parquet
from uqroute.passes import PASS_COLUMNS, run_hidden, run_pass

SETTINGS = {
    "max_new_tokens": {"mcq": 8, "tf": 6, "ff_num": 24, "ff_text": 12},
    "verbal_max_new_tokens": 12,
    "part_size": 2,
    "seed": 50,
    "top_p": 1.0,
    "n_samples": 5,
    "sample_temperature": 1.0,
}


class CountingEngine:
    """The real engine, counting the model calls a pass makes."""

    def __init__(self, engine):
        self.engine = engine
        self.model_name = engine.model_name
        self.calls = 0

    def render(self, conversation):
        return self.engine.render(conversation)

    def generate(self, conversations, sampling):
        self.calls += 1
        return self.engine.generate(conversations, sampling)

    def next_token_probs(self, conversations, candidates):
        self.calls += 1
        return self.engine.next_token_probs(conversations, candidates)

    def hidden_states(self, conversations, layer):
        self.calls += 1
        return self.engine.hidden_states(conversations, layer)

    def close(self):
        pass


@pytest.fixture(scope="module")
def questions(data_dir) -> pd.DataFrame:
    from uqroute.datasets import load_split, take_subset

    frames = [take_subset(load_split(name, "test", data_dir), 1, 11) for name in ("gsm8k", "commonsenseqa", "boolq")]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def prompts():
    from uqroute.prompts import PromptSet

    return PromptSet.load()


@pytest.fixture(scope="module")
def greedy(smollm2_engine, questions, prompts) -> pd.DataFrame:
    return run_pass("greedy", smollm2_engine, questions, prompts, SETTINGS)


@pytest.mark.slow
def test_greedy_pass_table(greedy, questions, smollm2_engine, tmp_path):
    from uqroute.grading import RuleJudge, read_item_reply
    from uqroute.passes import counted_answer, token_budget

    assert list(greedy.columns) == PASS_COLUMNS["greedy"]
    assert greedy["id"].tolist() == questions["id"].tolist()
    assert greedy["correct"].dtype == bool
    for row, item in zip(greedy.to_dict("records"), questions.to_dict("records")):
        assert "".join(row["tokens"]) == row["response"]
        assert len(row["tokens"]) == len(row["token_logprobs"]) > 0
        cut_off = len(row["tokens"]) >= token_budget("greedy", SETTINGS, item["task_type"])
        reading = read_item_reply(row["response"], item, cut_off=cut_off)
        assert (row["prediction"], row["read_by"]) == (counted_answer(reading, "drop"), reading.rule)
        assert row["prompt"].endswith("<|im_start|>assistant\n")  # the rendered prompt the model saw
    expected = RuleJudge().judge(questions, greedy["prediction"].tolist(), greedy["response"].tolist())
    assert greedy["correct"].tolist() == expected.tolist()
    # The token budget follows the task type: the gsm8k (ff_num) reply may run longer than the others.
    budgets = {t: SETTINGS["max_new_tokens"][t] for t in questions["task_type"]}
    for row, task_type in zip(greedy.to_dict("records"), questions["task_type"]):
        assert len(row["tokens"]) <= budgets[task_type]
    schema = pq.read_schema(write_parquet(greedy, tmp_path / "greedy.parquet"))
    assert str(schema.field("tokens").type) == "list<element: string>"
    assert str(schema.field("token_logprobs").type) == "list<element: double>"


@pytest.mark.slow
def test_sample_pass_table(smollm2_engine, questions, prompts):
    table = run_pass("sample", smollm2_engine, questions, prompts, SETTINGS)
    assert list(table.columns) == PASS_COLUMNS["sample"]
    assert len(table) == 5 * len(questions)
    assert table["id"].tolist() == [i for i in questions["id"] for _ in range(5)]
    assert table["sample_idx"].tolist() == list(range(5)) * len(questions)
    again = run_pass("sample", smollm2_engine, questions, prompts, SETTINGS)
    assert table["response"].tolist() == again["response"].tolist()


@pytest.mark.slow
def test_verbal_and_ptrue_pass_tables(smollm2_engine, questions, prompts, greedy):
    verbal1s = run_pass("verbal1s", smollm2_engine, questions, prompts, SETTINGS)
    assert list(verbal1s.columns) == PASS_COLUMNS["verbal1s"] and verbal1s["correct"].dtype == bool
    verbal2s = run_pass("verbal2s", smollm2_engine, questions, prompts, SETTINGS, greedy=greedy)
    assert list(verbal2s.columns) == PASS_COLUMNS["verbal2s"]
    for table in (verbal1s, verbal2s):
        assert table["id"].tolist() == questions["id"].tolist()
        conf = table["verbal_confidence"].to_numpy(dtype=float)
        assert np.all(np.isnan(conf) | ((conf >= 0) & (conf <= 1)))
    ptrue = run_pass("ptrue", smollm2_engine, questions, prompts, SETTINGS, greedy=greedy)
    assert list(ptrue.columns) == PASS_COLUMNS["ptrue"]
    assert np.all((ptrue["p_true"] >= 0) & (ptrue["p_true"] <= 1))
    # p_true normalises the two candidates' probabilities from the ptrue conversation.
    first = questions.to_dict("records")[0]
    probs = smollm2_engine.next_token_probs([prompts.ptrue(first, greedy["response"].iloc[0])], ["True", "False"])[0]
    assert ptrue["p_true"].iloc[0] == pytest.approx(probs[0] / probs.sum(), rel=1e-6)


@pytest.mark.slow
def test_router_builds_each_follow_up_pass_as_the_workflow_does(smollm2_dir, questions, prompts, greedy):
    """Each pass is declared once (uqroute.passes.PASSES): for a request whose messages are the answer prompt, the
    router's per-request ptrue, verbal2s and sample tables equal the workflow's pass on the same question (one float32
    engine for both, so the replies do not depend on the batch; p(True) within 1e-5). It keeps no answered
    conversations: a sample that starts from a stored one may pick another of its least likely tokens, and the
    two sides would have stored different ones."""
    import asyncio

    from uqroute.engines import make_engine
    from uqroute.engines.base import Completion
    from uqroute.models import model_spec
    from uqroute.serve.config import RouterConfig
    from uqroute.serve.metrics import RouterMetrics
    from uqroute.serve.router import Router, ServedMethod
    from uqroute.serve.upstream import LLMClient
    from uqroute.serve.usage import RequestUsage

    generation = {key: value for key, value in SETTINGS.items() if key != "part_size"}
    config = RouterConfig(calibration="not-read.parquet", method="p_true", ratio=0.5, generation=generation,
                          slm={"model": "smollm2-135m", "model_dir": str(smollm2_dir)},
                          llm={"model": "gemma3-270m", "base_url": "http://127.0.0.1:9/v1"})
    slm = make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=smollm2_dir, dtype="float32", threads=1,
                      progress=False, prefix_cache_mb=0)
    # No calibration file and no LLM call: the passes are all the test reads.
    served = ServedMethod("p_true", "not-read.parquet", np.array([0.5]), 0.5)
    router = Router(config, slm, LLMClient(config.llm), [served],
                    RouterMetrics(0.5, window=10, band=0.1, min_requests=5), prompts=prompts)
    try:
        for pass_name in ("ptrue", "verbal2s", "sample"):
            workflow = run_pass(pass_name, slm, questions, prompts, SETTINGS,
                                greedy=None if pass_name == "sample" else greedy)
            for item, reply in zip(questions.to_dict("records"), greedy["response"]):
                served = asyncio.run(router._pass(pass_name, prompts.answer(item), item, Completion(text=reply),
                                                  RequestUsage()))
                expected = workflow[workflow["id"] == item["id"]].drop(columns="id").reset_index(drop=True)
                pd.testing.assert_frame_equal(served[list(expected.columns)], expected, check_exact=False,
                                              rtol=1e-5, obj=f"{pass_name} of {item['id']}")
    finally:
        router.close()


@pytest.mark.slow
def test_hidden_pass_table(smollm2_engine, questions, prompts, greedy, tmp_path):
    table = run_hidden(smollm2_engine, questions, greedy, prompts, -8, 2)
    assert list(table.columns) == PASS_COLUMNS["hidden"] and table["id"].tolist() == questions["id"].tolist()
    assert set(table["layer"]) == {-8}
    assert all(v.dtype == np.float32 and v.shape == (576,) for v in table["vector"])
    schema = pq.read_schema(write_parquet(table, tmp_path / "hidden.parquet"))
    assert str(schema.field("vector").type) == "list<element: float>"  # float32


@pytest.mark.slow
def test_the_question_hidden_pass_reads_where_the_reply_would_start(smollm2_engine, questions, prompts, greedy):
    """P(IK)'s pass: the hidden state at the answer prompt's last token (the opened assistant turn), before any
    answer: the same as the answered conversation's state at that position, and needing no greedy table."""
    question = run_hidden(smollm2_engine, questions, None, prompts, -8, 2, hidden_pass="hidden_question")
    assert list(question.columns) == PASS_COLUMNS["hidden_question"] and question["id"].tolist() == questions["id"].tolist()
    direct = smollm2_engine.hidden_states([prompts.answer(item) for item in questions.to_dict("records")], -8)
    assert all(np.allclose(v, d, atol=1e-4) for v, d in zip(question["vector"], direct))
    answered = run_hidden(smollm2_engine, questions, greedy, prompts, -8, 2)
    # The reply moves the state: what the two probes read differs.
    assert not any(np.allclose(a, q, atol=1e-3) for a, q in zip(answered["vector"], question["vector"]))
    with pytest.raises(ValueError, match="needs the greedy table"):
        run_hidden(smollm2_engine, questions, None, prompts, -8, 2)
    with pytest.raises(ValueError, match="unknown hidden-state pass 'hidden_answer'"):
        run_hidden(smollm2_engine, questions, greedy, prompts, -8, 2, hidden_pass="hidden_answer")


@pytest.mark.slow
def test_restarted_pass_skips_finished_batches(smollm2_engine, questions, prompts, greedy, tmp_path):
    folder = tmp_path / "parts"
    settings = dict(SETTINGS, part_size=1)
    counting = CountingEngine(smollm2_engine)
    first = run_pass("greedy", counting, questions, prompts, settings, checkpoint_dir=folder)
    assert counting.calls == 3
    parts = sorted(folder.glob("*.parquet"))
    assert len(parts) == 3
    parts[0].unlink()  # the job died before this batch finished
    counting.calls = 0
    resumed = run_pass("greedy", counting, questions, prompts, settings, checkpoint_dir=folder)
    assert counting.calls == 1
    pd.testing.assert_frame_equal(resumed, first)
    assert first["response"].tolist() == greedy["response"].tolist()  # batch size does not change greedy replies
    # Other inputs (a different token budget) never reuse those parts.
    counting.calls = 0
    shorter_tf = dict(settings, max_new_tokens={**settings["max_new_tokens"], "tf": 3})
    run_pass("greedy", counting, questions, prompts, shorter_tf, checkpoint_dir=folder)
    assert counting.calls == 1  # only the tf batch changed
    counting.calls = 0
    hidden = run_hidden(counting, questions, greedy, prompts, -8, 3, checkpoint_dir=tmp_path / "hidden-parts")
    assert counting.calls == 3  # one batch per task type
    again = run_hidden(counting, questions, greedy, prompts, -8, 3, checkpoint_dir=tmp_path / "hidden-parts")
    assert counting.calls == 3
    assert all(np.array_equal(a, b) and b.dtype == np.float32 for a, b in zip(hidden["vector"], again["vector"]))
    BatchCheckpoint(folder).finish()
    assert not folder.exists()


def test_checkpoint_ignores_parts_written_for_other_ids(tmp_path):
    checkpoint = BatchCheckpoint(tmp_path / "parts")
    checkpoint.save("greedy-mcq-00000", pd.DataFrame({"id": ["a", "b"], "x": [1, 2]}))
    assert checkpoint.load("greedy-mcq-00000", ["a", "b"])["x"].tolist() == [1, 2]
    assert checkpoint.load("greedy-mcq-00000", ["a", "c"]) is None
    computed = checkpoint.run("greedy-mcq-00000", ["a", "c"], lambda: pd.DataFrame({"id": ["a", "c"], "x": [3, 4]}))
    assert computed["x"].tolist() == [3, 4]
    assert checkpoint.keys() == ["greedy-mcq-00000"]
    assert not list((tmp_path / "parts").glob("*.tmp"))
    with pytest.raises(ValueError, match="checkpoint key"):
        checkpoint.path("../escape")


def test_pass_arguments_are_checked(questions, prompts):
    with pytest.raises(ValueError, match="unknown pass 'hidden'"):
        run_pass("hidden", None, questions, prompts, SETTINGS)
    with pytest.raises(KeyError, match="n_samples"):
        run_pass("sample", None, questions, prompts, {k: v for k, v in SETTINGS.items() if k != "n_samples"})
    with pytest.raises(ValueError, match="verbal2s needs the greedy table"):
        run_pass("verbal2s", None, questions, prompts, SETTINGS)
    partial = pd.DataFrame({"id": questions["id"].iloc[:1], "response": ["x"]})
    with pytest.raises(KeyError, match=f"ptrue: greedy table has no row for id.*{questions['id'].iloc[1]}"):
        run_pass("ptrue", None, questions, prompts, SETTINGS, greedy=partial)
