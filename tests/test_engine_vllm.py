"""VLLMEngine's glue against a fake ``vllm`` module: constructor, requests, outputs, hidden states, close.

vLLM needs a CUDA GPU, so a fake module stands in for it. Its ``LLM`` and
``SamplingParams`` take the arguments vLLM documents (``LLM(model, *, tokenizer,
dtype, tensor_parallel_size, seed, gpu_memory_utilization, max_model_len,
...)``, ``LLM.generate(prompts, sampling_params, *, use_tqdm)`` with one
``SamplingParams`` per ``{"prompt_token_ids": [...]}`` prompt) and it answers
with ``RequestOutput`` / ``CompletionOutput`` / ``Logprob`` objects shaped like
vLLM's, built with the real SmolLM2 tokenizer and stopped the way vLLM stops
(EOS and generation-config EOS ids kept in ``token_ids``, stop strings cut from
``text`` only). What only real vLLM can show is listed in the docstring of
:mod:`uqroute.engines.vllm_engine`.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import random
import shutil
import sys
import types
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from uqroute.engines.rendering import sample_seed
from uqroute.engines import make_engine
from uqroute.models import model_spec

GREEDY_REPLY = "B. apple"
SAMPLE_REPLIES = ("A", "B. apple", "C. pear", "D. none of these", "True")
# The fake model's next-token distribution at every prompt position (other tokens: 1e-4),
# scaled by 0.999 per prefix token so that each conversation gets its own values.
NEXT_TOKEN_PROBS = {"True": 0.6, "False": 0.3, " True": 0.05, " False": 0.02}
OTHER_TOKEN_PROB = 1e-4
# SmolLM2: 0 <|endoftext|>, 2 <|im_end|> (the tokenizer's EOS).
ENDOFTEXT_ID, IM_END_ID = 0, 2

CONVERSATIONS = [
    [
        {"role": "system", "content": "Answer with the letter of the correct option."},
        {"role": "user", "content": "Which one is a fruit?\nA. stone\nB. apple"},
    ],
    [{"role": "user", "content": "Is water wet? Answer True or False."}],
]

# vLLM's documented LLM arguments (the explicit ones plus the EngineArgs this project may pass).
LLM_ARGUMENTS = frozenset({
    "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code", "tensor_parallel_size", "dtype",
    "quantization", "revision", "tokenizer_revision", "seed", "gpu_memory_utilization", "swap_space",
    "cpu_offload_gb", "enforce_eager", "max_model_len", "enable_prefix_caching", "generation_config",
})


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True


@dataclass(kw_only=True)
class SamplingParams:
    """``vllm.SamplingParams``: the documented fields and defaults, keyword-only, with the documented ranges."""

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and value < -1:
                raise ValueError(f"{name} must be non-negative or -1, got {value}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")


@dataclass
class GenerateCall:
    prompts: list[list[int]]
    params: list[SamplingParams]
    use_tqdm: bool
    outputs: list[RequestOutput]


@dataclass
class Record:
    """What the fake vLLM saw; ``greedy_reply`` is what its model answers at temperature 0."""

    init: list[dict] = field(default_factory=list)
    calls: list[GenerateCall] = field(default_factory=list)
    greedy_reply: str = GREEDY_REPLY


def reply_logprob(position: int, token: int) -> float:
    """The fake model's logprob of a generated token."""
    return -0.05 * (position + 1) - (token % 7) / 100


def prompt_logprob(prefix_len: int, token: int, probs: dict[int, float]) -> float:
    """The fake model's logprob of ``token`` after ``prefix_len`` prompt tokens."""
    return math.log(probs.get(token, OTHER_TOKEN_PROB)) + prefix_len * math.log(0.999)


def first_token_probs(tokenizer) -> dict[int, float]:
    """``NEXT_TOKEN_PROBS`` keyed by token id."""
    return {tokenizer(text, add_special_tokens=False)["input_ids"][0]: p for text, p in NEXT_TOKEN_PROBS.items()}


@functools.cache
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class FakeLLM:
    """``vllm.LLM`` with vLLM's documented signatures; writes what it receives to ``record`` (one per test)."""

    record: Record

    def __init__(self, model: str, **kwargs):
        from transformers import AutoConfig

        unknown = set(kwargs) - LLM_ARGUMENTS
        if unknown:
            raise TypeError(f"LLM got unexpected keyword arguments {sorted(unknown)}")
        self.record.init.append({"model": model, **kwargs})
        self._tokenizer = load_tokenizer(kwargs.get("tokenizer") or model)
        hf_config = AutoConfig.from_pretrained(model)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(hf_config=hf_config))
        generation = json.loads((Path(model) / "generation_config.json").read_text())
        extra_eos = generation.get("eos_token_id", [])
        extra_eos = extra_eos if isinstance(extra_eos, list) else [extra_eos]
        # vLLM stops at the tokenizer's EOS and at the generation config's EOS ids; this model
        # ends its replies with the last of those, as chat models ending in another EOS id do.
        self._eos_id = self._tokenizer.eos_token_id
        self._stop_ids = {self._eos_id, *extra_eos}
        self._end_id = extra_eos[-1] if extra_eos else self._eos_id
        self._next_token_probs = first_token_probs(self._tokenizer)

    def get_tokenizer(self):
        return self._tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None):
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        if sampling_params is None:
            sampling_params = SamplingParams()
        if isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        prompt_ids = [self._prompt_ids(p) for p in prompts]
        outputs = [
            self._answer(str(r), ids, params) for r, (ids, params) in enumerate(zip(prompt_ids, sampling_params))
        ]
        self.record.calls.append(GenerateCall(prompt_ids, list(sampling_params), use_tqdm, outputs))
        return outputs

    def _prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            return list(self._tokenizer(prompt)["input_ids"])
        ids = prompt["prompt_token_ids"]
        if not ids or not all(isinstance(t, int) and 0 <= t < len(self._tokenizer) for t in ids):
            raise ValueError(f"invalid prompt_token_ids {ids!r}")
        return list(ids)

    def _answer(self, request_id: str, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        sampled = params.temperature > 0
        if sampled:
            rng = random.Random(params.seed)
            replies = [rng.choice(SAMPLE_REPLIES) for _ in range(params.n)]
        else:
            replies = [self.record.greedy_reply] * params.n
        outputs = [self._complete(i, reply, params, sampled) for i, reply in enumerate(replies)]
        prompt_logprobs = None
        if params.prompt_logprobs is not None:
            prompt_logprobs = [None] + [
                self._prompt_position(prefix_len, token, params.prompt_logprobs)
                for prefix_len, token in enumerate(prompt_ids[1:], start=1)
            ]
        return RequestOutput(request_id, None, prompt_ids, prompt_logprobs, outputs)

    def _complete(self, index: int, reply: str, params: SamplingParams, sampled: bool) -> CompletionOutput:
        script = self._tokenizer(reply, add_special_tokens=False)["input_ids"] + [self._end_id]
        token_ids, logprobs, text = [], [], ""
        finish_reason, stop_reason = "length", None
        for position, token in enumerate(script):
            if len(token_ids) == params.max_tokens:
                break
            token_ids.append(token)
            logprobs.append(self._sample_position(position, token, sampled))
            text = self._tokenizer.decode(token_ids, skip_special_tokens=params.skip_special_tokens)
            if token in self._stop_ids and not params.ignore_eos:
                finish_reason, stop_reason = "stop", None if token == self._eos_id else token
                break
            stop = next((s for s in params.stop or () if s in text), None)
            if stop is not None:
                text = text[: text.find(stop)]
                finish_reason, stop_reason = "stop", stop
                break
        cumulative = sum(entry[t].logprob for entry, t in zip(logprobs, token_ids))
        return CompletionOutput(index, text, token_ids, cumulative, logprobs if params.logprobs is not None else None,
                                finish_reason, stop_reason)

    def _sample_position(self, position: int, token: int, sampled: bool) -> dict[int, Logprob]:
        """The chosen token first, then the top-1 token: the chosen one itself when decoding greedily."""
        value = reply_logprob(position, token)
        other = (token + 1) % len(self._tokenizer)
        chosen = Logprob(value, 2 if sampled else 1, self._tokenizer.decode([token]))
        best = Logprob(value + 0.5 if sampled else value - 1.0, 1 if sampled else 2, self._tokenizer.decode([other]))
        return {token: chosen, other: best}

    def _prompt_position(self, prefix_len: int, token: int, k: int) -> dict[int, Logprob]:
        ranked = sorted(self._next_token_probs, key=self._next_token_probs.get, reverse=True)
        rank = ranked.index(token) + 1 if token in ranked else len(ranked) + 1
        entries = {token: Logprob(prompt_logprob(prefix_len, token, self._next_token_probs), rank)}
        for r, top in enumerate(ranked[:k], start=1):
            entries.setdefault(top, Logprob(prompt_logprob(prefix_len, top, self._next_token_probs), r))
        return entries


@pytest.fixture(scope="module")
def model_dir(smollm2_dir, tmp_path_factory) -> Path:
    """SmolLM2's tokenizer and config (no weights), with a generation config whose EOS ids add <|endoftext|>."""
    folder = tmp_path_factory.mktemp("smollm2-vllm")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2_dir / name, folder / name)
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    generation["eos_token_id"] = [IM_END_ID, ENDOFTEXT_ID]
    (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(str(model_dir))


@pytest.fixture
def fake_vllm(monkeypatch) -> Record:
    """Installs the fake ``vllm`` module for one test; returns what it records."""
    record = Record()
    module = types.ModuleType("vllm")
    module.LLM = type("LLM", (FakeLLM,), {"record": record})
    module.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


@pytest.fixture
def engine(fake_vllm, model_dir):
    engine = make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=model_dir, progress=False)
    yield engine
    engine.close()


def chat_prompt_ids(tokenizer, conversation) -> list[int]:
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def token_id(tokenizer, text: str) -> int:
    (only,) = tokenizer(text, add_special_tokens=False)["input_ids"]
    return only


def test_llm_gets_the_model_path_and_engine_settings(fake_vllm, model_dir):
    engine = make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=model_dir, dtype="bfloat16",
                         tensor_parallel_size=2, gpu_memory_utilization=0.8, max_model_len=2048, seed=7,
                         batch_size=16, threads=4, device="cuda", progress=False)
    # batch_size/threads/device are the HF engine's; vLLM schedules its own batches.
    assert fake_vllm.init == [{"model": str(model_dir), "dtype": "bfloat16", "tensor_parallel_size": 2,
                               "gpu_memory_utilization": 0.8, "max_model_len": 2048, "seed": 7}]
    assert engine.model_name == "smollm2-135m"
    assert engine.tokenizer is engine.llm.get_tokenizer()
    # The tokenizer's EOS and the generation config's: vLLM stops at both.
    assert engine.eos_ids == {IM_END_ID, ENDOFTEXT_ID}

    defaults = make_engine(model_spec("llama-3.1-70b"), model_dir=model_dir)
    assert fake_vllm.init[1] == {"model": str(model_dir), "dtype": "auto", "tensor_parallel_size": 4,
                                 "gpu_memory_utilization": 0.9, "seed": 0}
    assert defaults.model_name == "llama-3.1-70b"


def test_greedy_generate(fake_vllm, engine, tokenizer):
    completions = engine.generate(CONVERSATIONS, max_new_tokens=12, temperature=0.0, top_p=1.0, n=1, seed=50)

    (call,) = fake_vllm.calls
    assert call.prompts == [chat_prompt_ids(tokenizer, c) for c in CONVERSATIONS]
    assert call.use_tqdm is False
    for params in call.params:
        assert (params.temperature, params.top_p, params.n, params.max_tokens) == (0.0, 1.0, 1, 12)
        assert params.logprobs == 1 and params.prompt_logprobs is None
        assert params.seed is None and params.stop is None and params.skip_special_tokens

    answer = tokenizer(GREEDY_REPLY, add_special_tokens=False)["input_ids"]
    assert [len(c) for c in completions] == [1, 1]
    for (completion,), request in zip(completions, call.outputs):
        (out,) = request.outputs
        # vLLM keeps the EOS it stopped at (here the generation config's <|endoftext|>); the reply does not.
        assert out.token_ids == answer + [ENDOFTEXT_ID] and out.finish_reason == "stop"
        assert completion.token_ids == answer
        assert completion.text == out.text == GREEDY_REPLY == "".join(completion.tokens)
        assert completion.token_logprobs == pytest.approx([reply_logprob(i, t) for i, t in enumerate(answer)])


def test_seeded_samples(fake_vllm, engine, tokenizer):
    settings = dict(max_new_tokens=16, temperature=1.0, top_p=0.95, n=5, seed=50)
    samples = engine.generate(CONVERSATIONS, **settings)

    (call,) = fake_vllm.calls
    for params, ids in zip(call.params, call.prompts):
        assert (params.n, params.temperature, params.top_p, params.max_tokens, params.logprobs) == (5, 1.0, 0.95, 16, 1)
        # One random stream per prompt, derived as in the HF engine: batch-independent samples.
        assert params.seed == sample_seed(50, ids, 0)
    assert call.params[0].seed != call.params[1].seed

    assert [len(s) for s in samples] == [5, 5]
    for completions, request in zip(samples, call.outputs):
        for completion, out in zip(completions, request.outputs):
            assert out.token_ids[-1] == ENDOFTEXT_ID
            assert completion.token_ids == out.token_ids[:-1]
            assert completion.text == out.text == "".join(completion.tokens)
            # The sampled token's own logprob, not the more likely alternative's.
            chosen = [entry[t].logprob for entry, t in zip(out.logprobs, completion.token_ids)]
            assert completion.token_logprobs == pytest.approx(chosen)
            assert all(max(e.logprob for e in entry.values()) > entry[t].logprob
                       for entry, t in zip(out.logprobs, completion.token_ids))
    assert len({c.text for s in samples for c in s}) > 1

    assert engine.generate(CONVERSATIONS, **settings) == samples
    assert [p.seed for p in fake_vllm.calls[1].params] == [p.seed for p in call.params]
    engine.generate(CONVERSATIONS, **{**settings, "seed": 51})
    assert not {p.seed for p in fake_vllm.calls[2].params} & {p.seed for p in call.params}


def test_reply_cut_by_the_token_budget_keeps_all_its_tokens(fake_vllm, engine, tokenizer):
    (completions,) = engine.generate(CONVERSATIONS[:1], max_new_tokens=2, temperature=0.0)

    (out,) = fake_vllm.calls[0].outputs[0].outputs
    assert out.finish_reason == "length" and len(out.token_ids) == 2
    (completion,) = completions
    assert completion.token_ids == out.token_ids and completion.text == out.text == "B."
    assert completion.token_logprobs == pytest.approx([reply_logprob(i, t) for i, t in enumerate(out.token_ids)])


def test_next_token_probs_read_the_candidates_after_each_prompt(fake_vllm, engine, tokenizer):
    probs = engine.next_token_probs(CONVERSATIONS, ["True", "False"])

    (call,) = fake_vllm.calls
    prompts = [chat_prompt_ids(tokenizer, c) for c in CONVERSATIONS]
    # The chat prompt ends in "assistant\n", so the candidates are written without a leading space.
    true, false = token_id(tokenizer, "True"), token_id(tokenizer, "False")
    assert call.prompts == [prompts[0] + [true], prompts[0] + [false], prompts[1] + [true], prompts[1] + [false]]
    for params in call.params:
        assert (params.temperature, params.max_tokens, params.prompt_logprobs, params.logprobs) == (0.0, 1, 1, None)

    table = first_token_probs(tokenizer)
    expected = [[math.exp(prompt_logprob(len(ids), c, table)) for c in (true, false)] for ids in prompts]
    assert probs.shape == (2, 2) and probs.dtype == np.float64
    assert np.allclose(probs, expected, rtol=1e-12)
    assert not np.allclose(probs[0], probs[1])


def test_plain_completion_format_stop_strings_and_candidates(fake_vllm, model_dir, tokenizer):
    spec = model_spec("gemma3-270m")
    engine = make_engine(spec, kind="vllm", model_dir=model_dir, progress=False)
    fake_vllm.greedy_reply = " B\nQuestion: And now?"
    conversation = [{"role": "user", "content": "Is water wet?"}]

    (completions,) = engine.generate([conversation], max_new_tokens=12)
    (call,) = fake_vllm.calls
    prompt = tokenizer("Question: Is water wet?\nAnswer:")["input_ids"]
    assert call.prompts == [prompt]
    assert call.params[0].stop == list(spec.stop) == ["\nQuestion:"]
    (out,) = call.outputs[0].outputs
    assert out.stop_reason == "\nQuestion:" and out.text == " B"
    (completion,) = completions
    assert completion.text == " B" and completion.token_ids == [token_id(tokenizer, " B")]

    probs = engine.next_token_probs([conversation], ["True", "False"])
    # After "Answer:" a candidate is written with a leading space.
    true, false = token_id(tokenizer, " True"), token_id(tokenizer, " False")
    assert fake_vllm.calls[1].prompts == [prompt + [true], prompt + [false]]
    table = first_token_probs(tokenizer)
    assert np.allclose(probs, [[math.exp(prompt_logprob(len(prompt), c, table)) for c in (true, false)]])
    engine.close()


def test_hidden_states_are_refused_with_the_model_name(fake_vllm, engine):
    answered = CONVERSATIONS[1] + [{"role": "assistant", "content": "True"}]
    with pytest.raises(NotImplementedError, match="smollm2-135m.*engine kind 'hf'"):
        engine.hidden_states([answered], -8)
    assert fake_vllm.calls == []


def test_close_lets_the_llm_go(fake_vllm, model_dir):
    engine = make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=model_dir, progress=False)
    llm = weakref.ref(engine.llm)
    engine.close()
    gc.collect()
    # vLLM shuts its engine down and frees the GPU when the LLM is collected.
    assert engine.llm is None and llm() is None


def test_missing_vllm_names_the_model(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="smollm2-135m.*vllm.*engine kind 'hf'"):
        make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=model_dir)
