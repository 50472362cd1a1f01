"""Decoding on grouped key/value heads: the hf engine's CPU attention against transformers' own SDPA attention.

    .venv/bin/python bench/grouped_attention.py [--models smollm2-135m gemma3-270m] [--dtype bfloat16]
        [--dataset svamp] [--questions 16] [--max-new-tokens 64] [--repeats 2] [--threads 1]

One engine per model; its model switches between the two attentions (``set_attn_implementation``) and the
greedy and sampling passes (m = 5, T = 1) alternate between them, ``--repeats`` times each, on the same prompts
(the greedy pass's prompts of the dataset's first test questions). Prints the best time of each side, their
ratio, and whether the completions (tokens and logprobs) came out bit for bit the same.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from uqroute.datasets import load_split, take_subset
from uqroute.engines import Sampling, make_engine
from uqroute.engines.hf import CPU_ATTENTION
from uqroute.gguf import materialize
from uqroute.machine import cpu_description
from uqroute.models import model_spec
from uqroute.passes import PASSES
from uqroute.prompts import PromptSet

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ATTENTION = "sdpa"


def completions_key(outputs) -> list:
    return [[(c.token_ids, c.token_logprobs) for c in completions] for completions in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="svamp")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    print(f"CPU: {cpu_description()}")
    questions = take_subset(load_split(args.dataset, "test", Path(args.data_dir)), args.questions, 50)
    prompts = PromptSet.load()
    budgets = {task: args.max_new_tokens for task in ("mcq", "tf", "ff_num", "ff_text")}
    conversations = [PASSES["greedy"].conversation(prompts, row, None, {"max_new_tokens": budgets})
                     for row in questions.to_dict("records")]
    passes = {"greedy": Sampling(max_new_tokens=args.max_new_tokens),
              "sample": Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0, n=5, seed=50)}
    for model in args.models:
        model_dir = materialize(model_spec(model), ROOT / "results" / "models" / model)
        # No stored conversations: every repeat prefills its prompts whole, as the first one does.
        engine = make_engine(model_spec(model), kind="hf", model_dir=model_dir, dtype=args.dtype,
                             threads=args.threads, batch_size=args.questions, progress=False, prefix_cache_mb=0)
        try:
            for pass_name, sampling in passes.items():
                best, outputs = {}, {}
                for _ in range(args.repeats):
                    for attention in (REFERENCE_ATTENTION, CPU_ATTENTION):
                        engine.model.set_attn_implementation(attention)
                        started = time.perf_counter()
                        outputs[attention] = engine.generate(conversations, sampling)
                        best[attention] = min(best.get(attention, float("inf")), time.perf_counter() - started)
                same = completions_key(outputs[REFERENCE_ATTENTION]) == completions_key(outputs[CPU_ATTENTION])
                print(f"{model} {args.dtype} {pass_name}: transformers' sdpa {best[REFERENCE_ATTENTION]:.1f} s, "
                      f"grouped {best[CPU_ATTENTION]:.1f} s, ratio {best[REFERENCE_ATTENTION] / best[CPU_ATTENTION]:.2f}"
                      f"; completions {'bit for bit the same' if same else 'DIFFER'} ({len(conversations)} questions,"
                      f" best of {args.repeats}, {args.threads} thread(s))")
        finally:
            engine.close()


if __name__ == "__main__":
    main()
