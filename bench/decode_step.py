"""One decoding step of the hf engine on a CPU: eager, as the engine runs it, against the same step compiled.

    .venv/bin/python bench/decode_step.py [--model smollm2-135m] [--dtype bfloat16] [--rows 5 25]
        [--dataset gsm8k] [--steps 32] [--threads 2] [--variants eager compiled frozen autotuned]
        [--wait-policies default passive]

The engine decodes with a hand-written loop over the model's forward pass, one new token per row, on a
dynamic KV cache. This times that step on the greedy prompts of ``rows`` test questions of the dataset (its
seeded subset, seed 50, left-padded into one batch), after a prefill and 3 warm-up steps, for each variant:

- ``eager``: the engine's own step (``HFEngine._prefill`` then ``_forward`` per token), what every table is
  made with today;
- ``compiled``: the same model's step through ``torch.compile`` (fullgraph, static shapes) on a static KV cache
  of prompt + steps positions, where a step's shapes do not change;
- ``frozen``: ``compiled`` with inductor's weight freezing (the linear layers' weights prepacked for oneDNN);
- ``autotuned``: ``frozen`` with ``max_autotune`` and inductor's C++ GEMM templates among the candidates (on a
  CPU with AMX, its AMX micro-kernels); compiling takes minutes;
- ``unpacked``: ``autotuned`` without oneDNN's prepacked weights (``cpp.weight_prepack`` off), the one frozen
  variant inductor's disk cache (``TORCHINDUCTOR_CACHE_DIR``) keeps for the next process. Time it without
  ``autotuned`` (``--variants eager unpacked``; the script refuses both in one run): after ``autotuned`` in the
  same process it was seen to come out faster, with other logits and bypassing the disk cache, as if it
  inherited the prepacked weights.

Every variant is fed the eager run's greedy tokens, so all see the same sequences; each prints its ms per step,
its ratio to eager in the same process, its compile time (the warm-up steps), whether inductor's disk cache
served the graph (``hit``), compiled and stored it (``miss``) or could not keep it (``bypass``), and the largest
|difference| of its logits from eager's. libgomp reads ``OMP_WAIT_POLICY`` once, when it loads, so each wait
policy runs in a child process of its own: ``default`` leaves the variable unset, ``passive`` is what the
lm-polygraph benchmarks set (threads sleep between parallel regions instead of spinning).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM_UP_STEPS = 3
# Marks the child's result lines on its stdout, which libraries may print to as well.
RESULT = "decode_step result: "
AUTOTUNED = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}
INDUCTOR = {
    "compiled": {},
    "frozen": {"freezing": True},
    "autotuned": AUTOTUNED,
    # Prepacked oneDNN weights cannot be pickled, so inductor's disk cache skips a graph that has them: without
    # them a later process finds the compiled graph on disk.
    "unpacked": {**AUTOTUNED, "cpp.weight_prepack": False},
}


def greedy_batch(engine, dataset: str, rows: int, data_dir: Path) -> list[list[int]]:
    """Prompt token ids of the greedy pass for ``rows`` test questions of the dataset (seeded subset, seed 50)."""
    from uqroute.datasets import load_split, take_subset
    from uqroute.prompts import PromptSet

    questions = take_subset(load_split(dataset, "test", data_dir), rows, 50)
    prompts = PromptSet.load()
    return engine.encode([prompts.answer(item) for item in questions.to_dict("records")])[1]


def eager_steps(engine, batch: list[list[int]], steps: int):
    """(seconds per timed step, greedy tokens fed at each step, logits of each step) on the engine's path."""
    import torch

    output, cache, mask = engine._prefill(batch, keep_cache=True, new_tokens=steps, logits_to_keep=1)
    tokens = output.logits[:, -1, :].argmax(-1)
    position = mask.sum(-1)
    fed, logits = [], []
    started = None
    for step in range(steps):
        if step == WARM_UP_STEPS:
            started = time.perf_counter()
        fed.append(tokens)
        mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
        out = engine._forward(tokens[:, None], mask, (position + step)[:, None], cache).logits[:, -1, :]
        logits.append(out.float())
        tokens = out.argmax(-1)
    return (time.perf_counter() - started) / (steps - WARM_UP_STEPS), fed, logits


def compiled_steps(engine, batch: list[list[int]], fed: list, options: dict):
    """(seconds per timed step, compile and warm-up seconds, logits of each step, what inductor's disk cache did
    with the graph): ``fed`` through the model's step compiled by inductor with ``options``, on a static cache."""
    import torch
    from torch._dynamo.utils import counters
    from transformers import StaticCache

    torch._dynamo.reset()
    model = engine.model
    input_ids, prompt_mask, positions = engine._left_pad(batch)
    width, steps = input_ids.shape[1], len(fed)
    cache = StaticCache(config=model.config, max_cache_len=width + steps)
    mask = torch.zeros((len(batch), width + steps), dtype=torch.long)
    mask[:, :width] = prompt_mask
    model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions, past_key_values=cache,
          cache_position=torch.arange(width), use_cache=True, logits_to_keep=1)
    next_position = prompt_mask.sum(-1)

    def step(tokens, mask, position_ids, cache_position):
        return model(input_ids=tokens, attention_mask=mask, position_ids=position_ids, past_key_values=cache,
                     cache_position=cache_position, use_cache=True).logits[:, -1, :]

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    before = dict(counters["inductor"])
    logits = []
    started = time.perf_counter()
    with torch._inductor.config.patch(options):
        for index, tokens in enumerate(fed):
            if index == WARM_UP_STEPS:
                compile_seconds = time.perf_counter() - started
                started = time.perf_counter()
            mask[:, width + index] = 1
            out = compiled(tokens[:, None], mask, (next_position + index)[:, None], torch.tensor([width + index]))
            logits.append(out.float())
    cache = [outcome for outcome in ("hit", "miss", "bypass")
             if counters["inductor"][f"fxgraph_cache_{outcome}"] > before.get(f"fxgraph_cache_{outcome}", 0)]
    seconds = (time.perf_counter() - started) / (steps - WARM_UP_STEPS)
    return seconds, compile_seconds, logits, "+".join(cache) or "none"


def child(args) -> None:
    """One wait policy: every variant at every row count, one JSON line per measurement."""
    import torch

    from uqroute.engines import make_engine
    from uqroute.gguf import materialize
    from uqroute.models import model_spec
    from uqroute.paths import model_folder

    spec = model_spec(args.model)
    model_dir = materialize(spec, model_folder(ROOT / "results", args.model))
    engine = make_engine(spec, model_dir=model_dir, kind="hf", device="cpu", dtype=args.dtype, threads=args.threads,
                         progress=False, prefix_cache_mb=0)
    with torch.no_grad():
        for rows in args.rows:
            batch = greedy_batch(engine, args.dataset, rows, Path(args.data_dir))
            eager, fed, reference = eager_steps(engine, batch, args.steps + WARM_UP_STEPS)
            results = {"eager": (eager, 0.0, "-", 0.0)}
            for variant in args.variants:
                if variant == "eager":
                    continue
                seconds, compile_seconds, logits, cache = compiled_steps(engine, batch, fed, INDUCTOR[variant])
                gap = max(float((a - b).abs().max()) for a, b in zip(logits, reference))
                results[variant] = (seconds, compile_seconds, cache, gap)
            for variant, (seconds, compile_seconds, cache, gap) in results.items():
                print(RESULT + json.dumps({"rows": rows, "prompt width": max(map(len, batch)), "variant": variant,
                                  "ms per step": 1e3 * seconds, "vs eager": eager / seconds,
                                  "compile s": compile_seconds, "disk cache": cache, "max |logit diff|": gap}),
                      flush=True)
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--rows", type=int, nargs="+", default=[5, 25])
    parser.add_argument("--steps", type=int, default=32, help="timed steps per variant (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["eager", "compiled", "frozen", "autotuned"],
                        choices=["eager", *INDUCTOR])
    parser.add_argument("--wait-policies", nargs="+", default=["default", "passive"], choices=["default", "passive"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if min(args.rows) < 1:
        parser.error(f"--rows must be >= 1, got {args.rows}")
    if {"autotuned", "unpacked"} <= set(args.variants):
        parser.error("--variants: time unpacked in a run without autotuned (after autotuned, in one process, it "
                     "inherits autotuned's prepacked weights)")
    if args.child:
        child(args)
        return

    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}; {args.model} {args.dtype}, {args.threads} torch threads, {args.dataset} "
          f"greedy prompts, {args.steps} timed steps after {WARM_UP_STEPS} warm-up steps")
    print(f"{'OMP_WAIT_POLICY':>15} {'rows':>4} {'width':>5} {'variant':>9} {'ms/step':>8} {'vs eager':>8} "
          f"{'compile s':>9} {'disk cache':>10} {'max |logit diff|':>16}")
    for policy in args.wait_policies:
        env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
        if policy == "passive":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        command = [sys.executable, __file__, "--child", *sys.argv[1:]]
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout:
                if not line.startswith(RESULT):
                    continue
                result = json.loads(line[len(RESULT):])
                print(f"{policy:>15} {result['rows']:>4} {result['prompt width']:>5} {result['variant']:>9} "
                      f"{result['ms per step']:>8.1f} {result['vs eager']:>7.2f}x {result['compile s']:>9.1f} "
                      f"{result['disk cache']:>10} {result['max |logit diff|']:>16.3g}", flush=True)
        if process.returncode:
            raise SystemExit(f"the {policy} child failed (exit {process.returncode})")


if __name__ == "__main__":
    main()
