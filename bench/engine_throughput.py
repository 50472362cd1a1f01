"""Throughput of HFEngine on the embedded SLM (SmolLM2-135M fp32, CPU), next to the memory-bandwidth bound.

Each decode step reads every weight once, so at small batch sizes a step cannot
be faster than ``weight bytes / memory bandwidth``; the bound printed for batch
size B is ``B / that time`` tokens/s (it ignores the KV cache and compute, so
large batches may legitimately approach it only until compute dominates).
Bandwidth is measured by timing a large tensor copy (read + write traffic).

The table splits each run's time into the prefill (timed separately as the
single forward pass of ``next_token_probs`` over the same prompts and batch
size) and the decode steps; the bound applies to the decode part.

Also compared: bf16 vs fp32 weights, and prompt-length bucketing (the engine
sorts prompts by length before batching) vs batches taken in input order.

    .venv/bin/python bench/engine_throughput.py [--threads 1] [--max-new-tokens 32]

``--engine vllm`` instead measures the wrapper's overhead: VLLMEngine.generate's tokens/s next
to raw ``LLM.generate`` of the same engine on the same prompt token ids and SamplingParams
(greedy, and ``--n-samples`` samples at T=1), best of ``--repeats`` alternating runs. On the CPU
build the raw sample run drops the seeds (seeded requests in one call crash its engine core; see
``vllm_overhead``), so its draws, and token counts, differ from the engine's.

    .venv/bin/python bench/engine_throughput.py --engine vllm [--dtype auto|float32|bfloat16] [--eager]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from uqroute import REPO_ROOT
from uqroute.paths import model_folder
from uqroute.datasets import load_split, take_subset
from uqroute.engines import Sampling, make_engine
from uqroute.gguf import materialize
from uqroute.models import model_spec
from uqroute.prompts import PromptSet


def copy_bandwidth(n_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes/s of read + write traffic of a large float32 tensor copy (best of ``repeats``)."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * n_bytes / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weight_bytes(model) -> int:
    """Bytes read per decode step: every parameter once (a tied embedding counts once, as the LM head)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def questions(data_dir: Path, n: int) -> pd.DataFrame:
    """A mix of short (gsm8k, commonsenseqa) and long (boolq: passage) prompts."""
    per = max(1, n // 3)
    frames = [take_subset(load_split(d, "test", data_dir), per, 50) for d in ("gsm8k", "commonsenseqa", "boolq")]
    return pd.concat(frames, ignore_index=True).head(n)


def prefill_seconds(engine, conversations, prompts_per_batch: int) -> float:
    saved = engine.batch_size
    engine.batch_size = prompts_per_batch
    try:
        return _timed(lambda: engine.next_token_probs(conversations, ["A"]))
    finally:
        engine.batch_size = saved


def run(engine, conversations, *, max_new_tokens, temperature=0.0, n=1, in_order_batches=None) -> tuple[float, int]:
    """(seconds, generated tokens). ``in_order_batches``: call the engine per chunk of that size in
    input order, so no length bucketing happens across chunks."""
    chunks = [conversations] if in_order_batches is None else [
        conversations[k : k + in_order_batches] for k in range(0, len(conversations), in_order_batches)
    ]
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, n=n, seed=50)
    start = time.perf_counter()
    tokens = 0
    for chunk in chunks:
        out = engine.generate(chunk, sampling)
        tokens += sum(len(c.token_ids) for completions in out for c in completions)
    return time.perf_counter() - start, tokens


def _prompt_lengths(spec, model_dir, conversations):
    from transformers import AutoTokenizer

    from uqroute.engines.rendering import encode_prompt, render_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return [encode_prompt(tokenizer, render_prompt(tokenizer, c, spec), spec) for c in conversations]


def vllm_overhead(args, spec, convs) -> int:
    """VLLMEngine.generate vs raw LLM.generate on identical requests (tokens/s and their ratio)."""
    from vllm import SamplingParams

    from uqroute.engines.vllm_engine import generation_params

    opts = dict(dtype=args.dtype, enforce_eager=args.eager, kv_cache_memory_bytes=1 << 30, max_model_len=2048,
                device="cpu", progress=False, max_num_batched_tokens=args.max_num_batched_tokens)
    start = time.perf_counter()
    engine = make_engine(spec, kind="vllm", model_dir=args.model_dir, **opts)
    print(f"vLLM {engine.dtype} max_num_batched_tokens {engine.seeded_token_budget} {'eager' if args.eager else 'compiled'}: engine started in "
          f"{time.perf_counter() - start:.1f} s; load average {os.getloadavg()[0]:.1f} (2 cores shared)")
    _, prompt_ids = engine._encode(convs)
    requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
    rows = []
    for label, temperature, n in (("greedy", 0.0, 1), (f"sample n={args.n_samples}", 1.0, args.n_samples)):
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=temperature, n=n, seed=50)
        raw_kwargs = generation_params(prompt_ids, sampling, stop=spec.stop)
        if n > 1:
            # vLLM 0.32's CPU build kills its engine core when a seeded request's prefill is split across
            # scheduler steps, which 15 prompts x n samples in one call do; the engine sends seeded requests
            # in groups that fit one step. The raw side drops the seeds instead (same amount of sampling work).
            for kwargs in raw_kwargs:
                kwargs.pop("seed", None)
        params = [SamplingParams(**p) for p in raw_kwargs]
        engine.generate(convs[:2], sampling)  # warm-up
        best = {"raw LLM.generate": 0.0, "VLLMEngine.generate": 0.0}
        for _ in range(args.repeats):
            begin = time.perf_counter()
            outputs = engine.llm.generate(requests, params, use_tqdm=False)
            raw_s = time.perf_counter() - begin
            raw_tokens = sum(len(o.token_ids) for r in outputs for o in r.outputs)
            best["raw LLM.generate"] = max(best["raw LLM.generate"], raw_tokens / raw_s)
            begin = time.perf_counter()
            replies = engine.generate(convs, sampling)
            seconds = time.perf_counter() - begin
            # The engine drops the EOS (or stop string) a reply ends with before its budget; count that token
            # as generated, as the raw run does.
            tokens = sum(len(c.token_ids) + (len(c.token_ids) < args.max_new_tokens)
                         for completions in replies for c in completions)
            best["VLLMEngine.generate"] = max(best["VLLMEngine.generate"], tokens / seconds)
        rows.append({"run": label, "prompts": len(convs), "raw tok/s": round(best["raw LLM.generate"], 1),
                     "engine tok/s": round(best["VLLMEngine.generate"], 1),
                     "engine / raw": round(best["VLLMEngine.generate"] / best["raw LLM.generate"], 3)})
        print(rows[-1], flush=True)
    engine.close()
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=model_folder(REPO_ROOT / "results", "smollm2-135m"))
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--n-samples", type=int, default=5)
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="--engine vllm only (auto: bfloat16 on a CPU with bf16 instructions, else float32)")
    parser.add_argument("--eager", action="store_true", help="--engine vllm: enforce_eager (no torch.compile)")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="--engine vllm: the scheduler's prompt tokens per step (bounds the engine's seeded groups)")
    parser.add_argument("--repeats", type=int, default=2, help="--engine vllm: alternating runs per side")
    parser.add_argument("--sample-batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="prompts per batch when sampling (each decodes its n samples in the same batch)")
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU

    spec = model_spec("smollm2-135m")
    materialize(spec, args.model_dir)
    torch.set_num_threads(args.threads)
    convs = [PromptSet.load().answer(r) for r in questions(args.data_dir, args.n_prompts).to_dict("records")]
    if args.engine == "vllm":
        return vllm_overhead(args, spec, convs)
    bandwidth = copy_bandwidth()
    lengths = [len(ids) for ids in _prompt_lengths(spec, args.model_dir, convs)]
    print(f"prompt tokens: mean {sum(lengths) / len(lengths):.0f}, min {min(lengths)}, max {max(lengths)}")
    print(f"CPU threads {args.threads}, load average {os.getloadavg()[0]:.1f} (2 cores shared), "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, {len(convs)} prompts, max_new_tokens {args.max_new_tokens}")

    rows = []

    def record(label, dtype, bs, seconds, tokens, step_bound, prefill):
        decode = max(seconds - prefill, 1e-9)
        rows.append({"run": label, "dtype": dtype, "batch rows": bs, "new tokens": tokens, "seconds": round(seconds, 1),
                     "prefill s": round(prefill, 1), "tok/s": round(tokens / seconds, 1),
                     "decode tok/s": round(tokens / decode, 1), "bound tok/s": round(bs / step_bound, 1)})
        print(rows[-1], flush=True)

    for dtype in ("float32", "bfloat16"):
        # No stored conversations: each batch size prefills the same prompts whole again.
        engine = make_engine(spec, kind="hf", model_dir=args.model_dir, dtype=dtype, batch_size=1,
                             threads=args.threads, progress=False, prefix_cache_mb=0)
        step_bound = weight_bytes(engine.model) / bandwidth
        sizes = args.batch_sizes if dtype == "float32" else [8]
        for bs in sizes:
            engine.batch_size = bs
            record("greedy", dtype, bs, *run(engine, convs, max_new_tokens=args.max_new_tokens), step_bound,
                   prefill_seconds(engine, convs, bs))
        if dtype == "float32":
            engine.batch_size = 8
            in_order = _timed(
                lambda: [engine.next_token_probs(convs[k : k + 8], ["A"]) for k in range(0, len(convs), 8)]
            )
            record("greedy, in-order batches (no bucketing)", dtype, 8,
                   *run(engine, convs, max_new_tokens=args.max_new_tokens, in_order_batches=8), step_bound, in_order)
            for bs in args.sample_batch_sizes:
                engine.batch_size = bs
                subset = convs[: max(4, len(convs) // 2)]
                record(f"sample n={args.n_samples}", dtype, bs * args.n_samples,
                       *run(engine, subset, max_new_tokens=args.max_new_tokens, temperature=1.0, n=args.n_samples),
                       step_bound, prefill_seconds(engine, subset, bs))
        engine.close()

    print()
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
