"""VLLMEngine on vLLM's CPU build (setup.sh installs it) with the real tiny models.

Each model gets one vLLM engine per module (start-up is paid once): SmolLM2-135M
(chat template) and Gemma 3 270M (base model, plain completion format, stop
string). Both engines run float32, so the comparison with the HF engine and a
transformers forward pass is not blurred by bf16 rounding, which changes with
batch composition in either engine.

A fake ``vllm`` module stays only for what a CPU build cannot show: the
``LLM`` arguments of a tensor-parallel (``tensor_parallel_size`` > 1) CUDA
configuration, the refusal of a device the installed build does not drive, and
the message when vLLM is not installed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from uqroute import REPO_ROOT
from uqroute.engines.vllm_engine import MULTIPROCESSING_ENV, generation_params
from uqroute.engines import Sampling, make_engine
from uqroute.engines.options import resolve_dtype
from uqroute.models import model_spec

pytestmark = pytest.mark.vllm  # the real engine, or a fake vllm module where CUDA is needed

DTYPE = "float32"
# Replies: how many identical token for token (counted, asserted to be most), and at the first
# divergence of the others how far apart (nats, under transformers) the two chosen tokens may be.
MIN_IDENTICAL_SHARE = 0.75
NEAR_TIE_NATS = 0.05
# vLLM's CPU kernels and transformers' eager fp32 forward pass differ by rounding only.
LOGPROB_ATOL = 2e-3
PROB_RTOL = 2e-3
BUDGET = 40
# Before any engine runs in this process: vLLM's CPU worker replaces it by a no-op where it runs.
SET_NUM_THREADS = torch.set_num_threads
QUESTIONS_PER_DATASET = 4
# Eager and an explicit KV cache (no profiling run): the quickest start-up on CPU.
VLLM_CPU_OPTIONS = dict(dtype=DTYPE, enforce_eager=True, kv_cache_memory_bytes=512 * 2**20, max_model_len=2048,
                        device="cpu", progress=False)


@dataclass
class EnginePair:
    name: str
    model_dir: Path
    hf: object
    vllm: object


@pytest.fixture(scope="module")
def items(data_dir) -> pd.DataFrame:
    from uqroute.datasets import load_split, take_subset

    frames = [take_subset(load_split(name, "test", data_dir), QUESTIONS_PER_DATASET, 7)
              for name in ("gsm8k", "commonsenseqa", "boolq")]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def conversations(items):
    from uqroute.prompts import PromptSet

    prompts = PromptSet.load()
    return [prompts.answer(row) for row in items.to_dict("records")]


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def engines(request, smollm2_dir, gemma3_dir):
    """The HF engine and a vLLM engine of one model, both float32; pytest finishes one model before the next."""
    model_dir = {"smollm2-135m": smollm2_dir, "gemma3-270m": gemma3_dir}[request.param]
    spec = model_spec(request.param)
    hf = make_engine(spec, kind="hf", model_dir=model_dir, dtype=DTYPE, batch_size=6, threads=1, progress=False)
    vllm = make_engine(spec, kind="vllm", model_dir=model_dir, **VLLM_CPU_OPTIONS)
    pair = EnginePair(request.param, model_dir, hf, vllm)
    yield pair
    pair.vllm.close()  # the close test may have replaced the first engine
    hf.close()


@pytest.fixture(scope="module")
def greedy(engines, conversations):
    """Greedy replies of both engines to the same prompts (one completion each)."""
    hf = [c for (c,) in engines.hf.generate(conversations, Sampling(max_new_tokens=BUDGET))]
    vllm = [c for (c,) in engines.vllm.generate(conversations, Sampling(max_new_tokens=BUDGET))]
    return hf, vllm


def forward_logprobs(hf_engine, ids: list[int]) -> torch.Tensor:
    """Log-softmax of transformers' logits at every position of one unpadded sequence."""
    with torch.inference_mode():
        logits = hf_engine.model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def first_divergence(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def chosen_at(token_ids: list[int], position: int, logprobs: torch.Tensor, eos_ids) -> int:
    """The token a reply chose at ``position``; a reply that ended there chose its (most likely) EOS."""
    if position < len(token_ids):
        return token_ids[position]
    return max(eos_ids, key=lambda t: float(logprobs[t]))


slow = pytest.mark.slow


@slow
def test_greedy_replies_match_the_hf_engine(engines, conversations, greedy):
    hf_replies, vllm_replies = greedy
    _, prompt_ids = engines.hf.encode(conversations)
    identical, gaps = 0, []
    for prompt, hf, vllm in zip(prompt_ids, hf_replies, vllm_replies):
        if hf.token_ids == vllm.token_ids:
            identical += 1
            assert (hf.text, hf.tokens) == (vllm.text, vllm.tokens)
            assert vllm.token_logprobs == pytest.approx(hf.token_logprobs, abs=LOGPROB_ATOL)
            continue
        k = first_divergence(hf.token_ids, vllm.token_ids)
        logprobs = forward_logprobs(engines.hf, prompt + hf.token_ids[:k])[-1]
        hf_token = chosen_at(hf.token_ids, k, logprobs, engines.hf.eos_ids)
        vllm_token = chosen_at(vllm.token_ids, k, logprobs, engines.hf.eos_ids)
        gaps.append(float(logprobs[hf_token] - logprobs[vllm_token]))
    print(f"{engines.name} {DTYPE}: {identical} of {len(conversations)} greedy replies identical token for token; "
          f"logprob gaps at the first divergence of the others: {[round(g, 4) for g in gaps]}")
    assert all(abs(gap) < NEAR_TIE_NATS for gap in gaps), gaps
    assert identical >= MIN_IDENTICAL_SHARE * len(conversations)


@slow
def test_token_logprobs_match_a_forward_pass(engines, conversations, greedy):
    """Greedy and sampled (T=0.7, top-p 0.9) replies carry the temperature-1, full-vocabulary logprob."""
    _, vllm_replies = greedy
    sampling = Sampling(max_new_tokens=16, temperature=0.7, top_p=0.9, n=2, seed=3)
    sampled = engines.vllm.generate(conversations[::3], sampling)
    _, prompt_ids = engines.hf.encode(conversations)
    checked = list(zip(prompt_ids, vllm_replies)) + [
        (prompt, c) for prompt, completions in zip(prompt_ids[::3], sampled) for c in completions
    ]
    worst = 0.0
    for prompt, completion in checked:
        assert completion.token_ids, "every reply has tokens"
        logprobs = forward_logprobs(engines.hf, prompt + completion.token_ids)
        rows = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(completion.token_ids))
        expected = logprobs[rows, torch.tensor(completion.token_ids)].numpy()
        worst = max(worst, float(np.abs(expected - completion.token_logprobs).max()))
    print(f"{engines.name}: largest |vLLM - transformers| token logprob over {len(checked)} replies: {worst:.2e}")
    assert worst < LOGPROB_ATOL


# p(True) read from one decoding step (logprob_token_ids) against the prompt_logprobs path it replaced (one prefill
# per candidate token). Measured 2026-12-07, float32, 12 questions: identical to the last bit on both models.
P_TRUE_PATH_ATOL = 1e-6


def prompt_logprob_probs(engine, conversations, candidates) -> np.ndarray:
    """p(candidate) the earlier way: each prompt plus one candidate token, that token's prompt logprob."""
    from uqroute.engines.rendering import candidate_token_sets

    _, prompt_ids = engine._encode(conversations)
    token_sets = candidate_token_sets(engine.tokenizer, candidates, engine.model_name)
    extended = [(ids + [token], i, c) for i, ids in enumerate(prompt_ids)
                for c, tokens in enumerate(token_sets) for token in tokens]
    outputs = engine._run([e for e, _, _ in extended],
                          [{"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 1}] * len(extended))
    probs = np.zeros((len(conversations), len(candidates)))
    for (ids, i, c), request in zip(extended, outputs):
        probs[i, c] += math.exp(request.prompt_logprobs[-1][ids[-1]].logprob)
    return probs


@slow
def test_p_true_takes_one_request_per_question_and_matches_prompt_logprobs_and_the_hf_engine(
        engines, items, greedy, monkeypatch):
    from uqroute.prompts import PromptSet

    prompts = PromptSet.load()
    hf_replies, _ = greedy
    asked = [prompts.ptrue(record, reply.text) for record, reply in zip(items.to_dict("records"), hf_replies)]
    candidates = list(prompts.ptrue_candidates)
    sent = []
    run = engines.vllm._run
    monkeypatch.setattr(engines.vllm, "_run", lambda ids, params: sent.append(params) or run(ids, params))
    got = engines.vllm.next_token_probs(asked, candidates)
    monkeypatch.undo()
    # One call, one decoding step per question (12 candidate tokens for Gemma, 8 for SmolLM2), on the prefix cache.
    assert [len(params) for params in sent] == [len(asked)]
    assert all(p["max_tokens"] == 1 and "prompt_logprobs" not in p for p in sent[0])
    assert engines.vllm.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    # The old path pays a prefill per (question, candidate token): one question of each dataset is enough to
    # compare the two paths; the HF engine checks all twelve.
    compared = slice(None, None, QUESTIONS_PER_DATASET)
    before = prompt_logprob_probs(engines.vllm, asked[compared], candidates)
    expected = engines.hf.next_token_probs(asked, candidates)
    assert got.shape == expected.shape == (len(asked), 2) and before.shape == (3, 2)
    print(f"{engines.name}: p(True) of {len(asked)} questions, |logprob_token_ids - prompt_logprobs| max "
          f"{np.abs(got[compared] - before).max():.2e}, |vLLM - HF| max {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got[compared], before, rtol=0, atol=P_TRUE_PATH_ATOL)
    assert np.allclose(got, expected, rtol=PROB_RTOL, atol=1e-7), np.abs(got - expected).max()


def _samples(replies: list[list]) -> list[list[tuple[str, list[int]]]]:
    return [[(c.text, c.token_ids) for c in completions] for completions in replies]


@slow
def test_seeded_samples_repeat_and_do_not_depend_on_the_batch(engines, conversations):
    """The same seed draws the same tokens for a prompt whatever else is in the batch; only the logprobs move,
    by rounding (SmolLM2's differ in the last digits even between two runs of the same batch)."""
    sampling = Sampling(max_new_tokens=16, temperature=1.0, n=3, seed=50)
    batch = conversations[:6]
    first = engines.vllm.generate(batch, sampling)
    assert [len(s) for s in first] == [3] * len(batch)
    assert len({c.text for s in first for c in s}) > len(batch), "samples vary"
    again = engines.vllm.generate(batch, sampling)
    # Other companions in the batch, and none at all.
    shuffled = engines.vllm.generate(conversations[8:] + batch[::-1], sampling)[-len(batch):][::-1]
    alone = engines.vllm.generate(batch[2:3], sampling)
    for label, replies, expected in (("the same batch again", again, first), ("a shuffled batch", shuffled, first),
                                     ("alone", alone, first[2:3])):
        assert _samples(replies) == _samples(expected), f"{engines.name}: other samples in {label}"
        np.testing.assert_allclose([lp for s in replies for c in s for lp in c.token_logprobs],
                                   [lp for s in expected for c in s for lp in c.token_logprobs], atol=LOGPROB_ATOL,
                                   err_msg=f"{engines.name}: logprobs in {label}")
    other_seed = engines.vllm.generate(batch, replace(sampling, seed=51))
    assert [c.token_ids for s in other_seed for c in s] != [c.token_ids for s in first for c in s]


# Questions with a one-line answer after a short question-and-answer transcript. Gemma 3 270M (base model,
# completion format) answers and goes on with the transcript's next "Question:" block, its stop string, where
# on the dataset questions it runs on to the budget (95-100 % of its embedded-default replies hit it); SmolLM2
# (chat) answers and ends at EOS. Measured 2026-12-06, vLLM float32: all six replies of each model ended so.
SHORT_ANSWERS = [
    [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris"},
     {"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"},
     {"role": "user", "content": "Which animal says moo?"}, {"role": "assistant", "content": "A cow"},
     {"role": "user", "content": question}]
    for question in ("What colour is the sky on a clear day?", "How many legs does a spider have?",
                     "What is the opposite of hot?", "Which planet do we live on?", "What is 10 minus 4?",
                     "What do bees make?")
]


@slow
def test_replies_end_at_eos_and_stop_strings_as_in_the_hf_engine(engines):
    """vLLM stops at EOS (Gemma: at the completion format's stop string); the reply is cut as HF cuts it."""
    vllm = engines.vllm
    mine = [c for (c,) in vllm.generate(SHORT_ANSWERS, Sampling(max_new_tokens=BUDGET))]
    hf_replies = [c for (c,) in engines.hf.generate(SHORT_ANSWERS, Sampling(max_new_tokens=BUDGET))]
    _, prompt_ids = vllm._encode(SHORT_ANSWERS)
    params = generation_params(prompt_ids, Sampling(max_new_tokens=BUDGET), stop=vllm.spec.stop)
    raw = [request.outputs[0] for request in vllm._run(prompt_ids, params)]
    stopped = [(out, hf, reply) for out, hf, reply in zip(raw, hf_replies, mine) if out.finish_reason == "stop"]
    print(f"{engines.name}: {len(stopped)} of {len(raw)} replies stopped before {BUDGET} tokens, reasons "
          f"{[out.stop_reason for out, _, _ in stopped]}; replies {[reply.text for reply in mine]}")
    assert len(stopped) >= len(raw) // 2, f"{engines.name}: {len(stopped)} of {len(raw)} replies stopped"
    # A stop string is reported by vLLM as the reason; EOS as None.
    by_stop_string = [out for out, _, _ in stopped if out.stop_reason in vllm.spec.stop]
    assert bool(by_stop_string) == bool(vllm.spec.stop), f"{engines.name}: stop strings {vllm.spec.stop}"
    identical = 0
    for out, hf, reply in stopped:
        assert reply.token_ids and not set(reply.token_ids) & vllm.eos_ids
        assert not any(s in reply.text for s in vllm.spec.stop)
        assert reply.text == out.text.rstrip() or reply.text == out.text
        if hf.token_ids == reply.token_ids:
            identical += 1
            assert (hf.text, hf.tokens) == (reply.text, reply.tokens)
    assert identical >= MIN_IDENTICAL_SHARE * len(stopped), f"{engines.name}: {identical} of {len(stopped)} as HF's"


class _SpecWithStop:
    """A model spec whose stop strings are ``stop`` (``ModelSpec.stop`` is derived from its completion format)."""

    def __init__(self, spec, stop: str):
        self._spec, self.stop = spec, (stop,)

    def __getattr__(self, name):
        return getattr(self._spec, name)


@slow
def test_a_stop_string_met_in_a_reply_cuts_it_where_the_hf_engine_does(engines, conversations, greedy):
    """Both engines given a stop string taken from the middle of a greedy reply end the reply where it begins
    (vLLM's own stop, then the same cut of text and tokens as transformers)."""
    hf_replies, vllm_replies = greedy
    index = next(i for i, (hf, mine) in enumerate(zip(hf_replies, vllm_replies))
                 if hf.token_ids == mine.token_ids and len(mine.text) >= 24)
    text = vllm_replies[index].text
    start = text.index(" ", len(text) // 2) if " " in text[len(text) // 2:] else len(text) // 2
    stop = text[start:start + 6]
    expected = text[:text.find(stop)]
    saved = engines.vllm.spec, engines.hf.spec
    engines.vllm.spec = engines.hf.spec = _SpecWithStop(saved[0], stop)
    try:
        ((mine,),) = engines.vllm.generate(conversations[index:index + 1], Sampling(max_new_tokens=BUDGET))
        ((hf,),) = engines.hf.generate(conversations[index:index + 1], Sampling(max_new_tokens=BUDGET))
        _, prompt_ids = engines.vllm._encode(conversations[index:index + 1])
        params = generation_params(prompt_ids, Sampling(max_new_tokens=BUDGET), stop=[stop])
        (raw,) = [request.outputs[0] for request in engines.vllm._run(prompt_ids, params)]
    finally:
        engines.vllm.spec, engines.hf.spec = saved
    assert (raw.finish_reason, raw.stop_reason) == ("stop", stop)
    assert mine.text == expected == hf.text, (stop, mine.text, hf.text)
    assert (mine.tokens, mine.token_ids) == (hf.tokens, hf.token_ids)
    assert len(mine.token_ids) < len(vllm_replies[index].token_ids)


def _vllm_processes() -> list[psutil.Process]:
    """vLLM's engine core and worker processes (they name themselves VLLM::...)."""
    return [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM::")]


@slow
def test_close_frees_the_engine_so_a_second_one_starts(engines, conversations, greedy, monkeypatch):
    """Runs last for each model. The module's engine has its core in this process (the CPU build's default
    here): close() gives back its KV cache. A second engine, with the core in child processes as the user may
    ask (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, vLLM's own default), answers the same; its close() ends them."""
    if engines.name != "smollm2-135m":
        pytest.skip("close() and a restart are shown on SmolLM2; the engine code does not depend on the model, "
                    "and a second Gemma engine would add a minute")
    _, vllm_replies = greedy
    assert not _vllm_processes(), "on the CPU build the engine core runs in this process"
    assert MULTIPROCESSING_ENV not in os.environ, "the switch is put back once the engine is built"
    assert torch.set_num_threads is SET_NUM_THREADS, "vLLM's CPU worker replaced torch.set_num_threads for good"
    rss = psutil.Process().memory_info().rss
    engines.vllm.close()
    assert engines.vllm.llm is None
    freed = rss - psutil.Process().memory_info().rss
    kv_cache = VLLM_CPU_OPTIONS["kv_cache_memory_bytes"]
    assert freed > 0.75 * kv_cache, f"close() freed {freed / 2**20:.0f} MiB, under the KV cache's {kv_cache >> 20}"
    monkeypatch.setenv(MULTIPROCESSING_ENV, "1")
    engines.vllm = make_engine(model_spec(engines.name), kind="vllm", model_dir=engines.model_dir,
                               **VLLM_CPU_OPTIONS)
    engine_processes = _vllm_processes()
    assert engine_processes, "the user's VLLM_ENABLE_V1_MULTIPROCESSING=1 puts the engine core in child processes"
    (again,) = engines.vllm.generate(conversations[:1], Sampling(max_new_tokens=BUDGET))[0]
    # Alone in its batch rather than beside the other prompts: same tokens, logprobs equal up to rounding.
    assert (again.text, again.token_ids) == (vllm_replies[0].text, vllm_replies[0].token_ids)
    np.testing.assert_allclose(again.token_logprobs, vllm_replies[0].token_logprobs, atol=LOGPROB_ATOL)
    engines.vllm.close()
    _, alive = psutil.wait_procs(engine_processes, timeout=60)
    assert not alive, f"close() ends the engine's processes; still running: {alive}"


# ---------------------------------------------------------------- fake vllm: what a CPU build cannot show


class FakeLLM:
    """``vllm.LLM``'s constructor only: records its arguments (CUDA settings cannot start the CPU build)."""

    seen: list

    def __init__(self, model: str, **kwargs):
        from transformers import AutoConfig, AutoTokenizer

        self.seen.append({"model": model, **kwargs})
        self._tokenizer = AutoTokenizer.from_pretrained(model)
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(hf_config=AutoConfig.from_pretrained(model))
        )

    def get_tokenizer(self):
        return self._tokenizer


@pytest.fixture
def fake_cuda_vllm(monkeypatch) -> list:
    """A ``vllm`` module whose platform is CUDA; returns the recorded ``LLM`` arguments."""
    seen: list = []
    module = types.ModuleType("vllm")
    module.LLM = type("LLM", (FakeLLM,), {"seen": seen})
    module.platforms = types.SimpleNamespace(current_platform=types.SimpleNamespace(device_type="cuda"))
    monkeypatch.setitem(sys.modules, "vllm", module)
    return seen


def test_tensor_parallel_cuda_settings_reach_the_llm(fake_cuda_vllm, smollm2_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # an A100
    engine = make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=smollm2_dir, dtype="bfloat16",
                         tensor_parallel_size=2, gpu_memory_utilization=0.8, max_model_len=2048, seed=7,
                         batch_size=16, threads=4, device="cuda", progress=False)
    # batch_size/threads are the HF engine's; vLLM schedules its own batches.
    assert fake_cuda_vllm == [{"model": str(smollm2_dir), "dtype": "bfloat16", "tensor_parallel_size": 2,
                               "gpu_memory_utilization": 0.8, "max_model_len": 2048, "seed": 7,
                               "enforce_eager": False, "enable_prefix_caching": True}]
    assert engine.model_name == "smollm2-135m"
    # Hidden states are not among a vLLM engine's capabilities: a hidden-state pass is refused by name.
    from uqroute.engines import EngineError, hidden_state_reader
    with pytest.raises(EngineError, match="smollm2-135m: a VLLMEngine exposes no hidden states"):
        hidden_state_reader(engine)
    # The registry's tensor parallel size and vLLM's defaults when the config sets nothing.
    make_engine(model_spec("llama-3.1-70b"), model_dir=smollm2_dir)
    # dtype auto is resolved before vLLM sees it: bfloat16 on a GPU that computes it.
    assert fake_cuda_vllm[1] == {"model": str(smollm2_dir), "dtype": "bfloat16", "tensor_parallel_size": 4,
                                 "gpu_memory_utilization": 0.9, "seed": 0, "enforce_eager": False,
                                 "enable_prefix_caching": True}


def test_a_device_the_vllm_build_does_not_drive_is_refused(fake_cuda_vllm, smollm2_dir):
    with pytest.raises(ValueError, match="smollm2-135m.*device 'cpu'.*cuda"):
        make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=smollm2_dir, device="cpu")
    assert fake_cuda_vllm == []


@slow
def test_the_installed_cpu_build_refuses_a_gpu_before_starting(tmp_path):
    """The real build: `import vllm` leaves its platform unloaded, and the check must load it, not pass."""
    with pytest.raises(ValueError, match="smollm2-135m.*device 'cuda'.*runs on 'cpu'"):
        make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=tmp_path, device="cuda")


def test_missing_vllm_names_the_model(monkeypatch, smollm2_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="smollm2-135m.*vllm.*engine kind 'hf'"):
        make_engine(model_spec("smollm2-135m"), kind="vllm", model_dir=Path(smollm2_dir))


def test_the_hidden_pass_of_a_vllm_model_leaves_the_vllm_only_settings_out(smollm2_dir):
    """One `engines.<model>` entry (config/vllm-cpu.yaml) also builds the transformers engine of the hidden pass."""
    overlay = dict(device="cpu", dtype="auto", enforce_eager=True, kv_cache_memory_bytes=1 << 29,
                   max_model_len=2048, gpu_memory_utilization=0.2, tensor_parallel_size=1)
    engine = make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=smollm2_dir, progress=False, **overlay)
    try:
        assert type(engine).__name__ == "HFEngine"
        assert engine.model.dtype == getattr(torch, resolve_dtype("auto", "cpu")) == getattr(torch, engine.dtype)
    finally:
        engine.close()


def test_the_cpu_build_hands_seeded_requests_over_in_whole_prefill_groups():
    """vLLM 0.32's CPU build dies when a seeded request's prefill is split across scheduler steps (seen in the
    sample pass of the embedded DAG: 10 prompts x 5 samples exceed one step's token budget; its scheduler keeps
    chunked prefill on whatever the arguments say). tests/test_workflow_vllm.py runs the real pass."""
    from uqroute.engines.vllm_engine import token_budget_groups

    assert token_budget_groups([500, 500, 500, 3000, 100, 5000, 10], 2048) == [[0, 1, 2], [3], [4], [5], [6]]
    assert token_budget_groups([], 2048) == []
    assert sum(map(len, token_budget_groups([100] * 50, 2048))) == 50


@slow
def test_gpu_smoke_bench_runs_on_the_cpu_build(smollm2_dir):
    """bench/gpu_smoke.py with --device cpu: the GPU node's smoke checks (greedy, samples, p(True)) run in CI.
    In float32: in bfloat16 a near-tie between two tokens can flip when the repeated batch reuses the prefix cache
    (measured here under load: 5 of 6 greedy replies repeated), which is the numerics, not the code under test."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "gpu_smoke.py"), "--device", "cpu", "--model", "smollm2-135m",
         "--model-dir", str(smollm2_dir), "--n-prompts", "6", "--max-new-tokens", "16", "--dtype", "float32"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in ("engine ready", "greedy: 6 prompts", "greedy repeat: 6/6 identical", "sample n=5", "p(True):",
                 "answers extracted"):
        assert line in result.stdout, result.stdout
