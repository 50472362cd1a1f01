"""The router's engine batcher (:mod:`uqroute.serve.batching`): when it waits, what it merges, and that a batched
answer is the answer the SLM gives alone."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from uqroute.engines import Completion, Sampling
from uqroute.serve.batching import EngineBatcher

GREEDY = Sampling(max_new_tokens=4)


class RecordingEngine:
    """Echoes the last message; records each call's kind and conversations. ``hold`` keeps the first call running
    until it is set."""

    model_name = "recording"

    def __init__(self, hold: threading.Event | None = None):
        self.calls: list[tuple[str, list[str]]] = []
        self.hold = hold
        self.running = threading.Event()

    def _record(self, call, conversations):
        self.calls.append((call, [c[-1]["content"] for c in conversations]))
        self.running.set()
        if self.hold is not None and len(self.calls) == 1:
            self.hold.wait(10)

    def generate(self, conversations, sampling):
        self._record("generate", conversations)
        return [[Completion(text=c[-1]["content"])] for c in conversations]

    def next_token_probs(self, conversations, candidates):
        self._record("next_token_probs", conversations)
        return np.full((len(conversations), len(candidates)), 0.5)

    def close(self):
        pass


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_lone_announced_request_does_not_wait_for_the_batch_to_fill():
    batcher = EngineBatcher(RecordingEngine(), max_wait=30.0)

    async def ask():
        with batcher.expecting():
            return await batcher.generate(_user("a"), GREEDY)

    try:
        start = time.monotonic()
        (reply,) = asyncio.run(ask())
        assert reply.text == "a" and time.monotonic() - start < 5  # not the 30 s max_wait
    finally:
        batcher.close()


def test_a_burst_is_one_call_that_starts_once_every_announced_request_has_sent_its_job():
    engine = RecordingEngine()
    batcher = EngineBatcher(engine, max_wait=30.0)

    async def one(text: str, delay: float):
        with batcher.expecting():
            await asyncio.sleep(delay)  # a request's own work (parsing, counting) before its SLM call
            return await batcher.generate(_user(text), GREEDY)

    async def burst():
        return await asyncio.gather(*(one(text, 0.05 * i) for i, text in enumerate("abc")))

    try:
        start = time.monotonic()
        replies = asyncio.run(burst())
        assert time.monotonic() - start < 5
    finally:
        batcher.close()
    assert [reply.text for (reply,) in replies] == ["a", "b", "c"]
    assert engine.calls == [("generate", ["a", "b", "c"])]


def test_jobs_queued_during_a_call_join_their_group_before_it_runs():
    hold = threading.Event()
    engine = RecordingEngine(hold)
    batcher = EngineBatcher(engine, max_wait=0.0)

    async def scenario():
        # A greedy call and a next-token call are collected together; the greedy one runs first and is held.
        first = asyncio.gather(batcher.generate(_user("a"), GREEDY), batcher.next_token_probs(_user("p1"), ("A",)))
        await asyncio.get_running_loop().run_in_executor(None, engine.running.wait, 10)
        # Follow-up calls of other requests arrive while it runs: they join the waiting next-token call.
        later = asyncio.gather(batcher.next_token_probs(_user("p2"), ("A",)),
                               batcher.next_token_probs(_user("p3"), ("A",)))
        await asyncio.sleep(0.2)
        hold.set()
        return await first, await later

    try:
        asyncio.run(scenario())
    finally:
        hold.set()
        batcher.close()
    assert engine.calls == [("generate", ["a"]), ("next_token_probs", ["p1", "p2", "p3"])]


def test_a_group_over_the_batch_size_is_split_in_arrival_order():
    engine = RecordingEngine()
    batcher = EngineBatcher(engine, max_batch_size=2, max_wait=1.0)

    async def ask():
        return await asyncio.gather(*(batcher.generate(_user(text), GREEDY) for text in "abcde"))

    try:
        replies = asyncio.run(ask())
    finally:
        batcher.close()
    assert [reply.text for (reply,) in replies] == list("abcde")
    assert [texts for _, texts in engine.calls] == [["a", "b"], ["c", "d"], ["e"]]


@pytest.fixture(scope="module")
def fp32_engine(smollm2_dir):
    from uqroute.engines import make_engine
    from uqroute.models import model_spec

    # Its own engine: the batcher closes the engine it owns, and the session's smollm2_engine serves other tests.
    return make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=smollm2_dir, dtype="float32", threads=1,
                       batch_size=16, progress=False)


def test_batched_answers_are_the_answers_of_one_request_at_a_time(fp32_engine):
    questions = ["What is the capital of France?", "Name a primary colour.", "Is water wet? Answer yes or no.",
                 "Question: 2 + 3 = ?\nA. 4\nB. 5\nAnswer with the letter of the correct option first.",
                 "Give one word that rhymes with cat."]
    conversations = [_user(q) for q in questions]
    sampling = Sampling(max_new_tokens=8)
    alone = [fp32_engine.generate([c], sampling)[0][0] for c in conversations]
    alone_probs = [fp32_engine.next_token_probs([c], ["A", "B"])[0] for c in conversations]
    batcher = EngineBatcher(fp32_engine, max_wait=5.0)

    async def together():
        async def one(conversation):
            with batcher.expecting():
                (completion,) = await batcher.generate(conversation, sampling)
                probs = await batcher.next_token_probs(conversation, ("A", "B"))
                return completion, probs

        return await asyncio.gather(*(one(c) for c in conversations))

    sizes = []
    batcher.on_batch = lambda call, size: sizes.append((call, size))
    try:
        batched = asyncio.run(together())
    finally:
        batcher.close()
    assert sizes == [("generate", len(questions)), ("next_token_probs", len(questions))]  # really batched
    for single, (completion, probs), single_probs in zip(alone, batched, alone_probs):
        assert completion.token_ids == single.token_ids and completion.text == single.text
        np.testing.assert_allclose(completion.token_logprobs, single.token_logprobs, atol=1e-4)
        np.testing.assert_allclose(probs, single_probs, atol=1e-5)
