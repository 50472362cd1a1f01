"""The engines' decoding settings (:class:`uqroute.engines.Sampling`): checked once, equal by value."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from uqroute.engines import Completion, Sampling
from uqroute.serve.batching import EngineBatcher


def test_defaults_are_one_greedy_completion():
    assert Sampling(max_new_tokens=8) == Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0, n=1, seed=0)


@pytest.mark.parametrize("field, value, message", [
    ("max_new_tokens", 0, "max_new_tokens must be >= 1, got 0"),
    ("temperature", -0.5, "temperature must be >= 0"),
    ("temperature", float("nan"), "temperature must be >= 0"),
    ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
    ("top_p", 1.5, r"top_p must be in \(0, 1\]"),
    ("n", 0, "n must be >= 1, got 0"),
    ("seed", -1, "seed must be >= 0, got -1"),
    ("max_new_tokens", 8.5, "max_new_tokens must be a number \\(an integer\\), got 8.5"),
    ("n", "3", "n must be a number \\(an integer\\)"),
    ("temperature", "hot", "temperature must be a number, got 'hot'"),
])
def test_invalid_values_name_their_field(field, value, message):
    with pytest.raises(ValueError, match=f"^Sampling: {message}"):
        Sampling(**{"max_new_tokens": 8, field: value})


def test_values_are_cast_so_equal_settings_are_equal_and_hash_alike():
    cast = Sampling(max_new_tokens=np.int64(8), temperature=1, top_p=np.float32(0.5), n=np.int32(2), seed=np.uint8(1))
    assert [type(getattr(cast, f.name)) for f in dataclasses.fields(cast)] == [int, float, float, int, int]
    same = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.5, n=2, seed=1)
    assert cast == same and hash(cast) == hash(same)
    assert Sampling(max_new_tokens=8, seed=1) != Sampling(max_new_tokens=8, seed=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        same.seed = 3


class RecordingEngine:
    """Answers every conversation with its own text and records the calls it got."""

    model_name = "recording"

    def __init__(self):
        self.calls: list[tuple[int, Sampling]] = []

    def generate(self, conversations, sampling):
        self.calls.append((len(conversations), sampling))
        return [[Completion(text=c[-1]["content"])] * sampling.n for c in conversations]

    def close(self):
        pass


def test_the_batcher_shares_one_engine_call_among_equal_samplings():
    engine = RecordingEngine()
    # A long wait, so the four requests are collected together.
    batcher = EngineBatcher(engine, max_batch_size=4, max_wait=1.0)
    greedy, spelled_otherwise = Sampling(max_new_tokens=4), Sampling(max_new_tokens=4, temperature=0)
    sampled = Sampling(max_new_tokens=4, temperature=1.0, n=2, seed=5)

    async def ask():
        return await asyncio.gather(*(batcher.generate([{"role": "user", "content": text}], sampling)
                                      for text, sampling in (("a", greedy), ("b", sampled), ("c", spelled_otherwise),
                                                             ("d", sampled))))

    try:
        replies = asyncio.run(ask())
    finally:
        batcher.close()
    assert [[c.text for c in completions] for completions in replies] == [["a"], ["b", "b"], ["c"], ["d", "d"]]
    assert sorted(engine.calls, key=lambda call: call[1].n) == [(2, greedy), (2, sampled)]
