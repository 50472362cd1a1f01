"""A cell's passes on transformers with and without the stored greedy conversations (``prefix_cache_mb``).

    .venv/bin/python bench/prefix_reuse.py [--model smollm2-135m] [--dtype float32] [--dataset piqa]
        [--questions 16] [--repeats 2] [--threads 1]

Two engines of one model, alike but for ``prefix_cache_mb`` (0: every prompt prefilled whole; the default: a
prompt that starts with a conversation the engine answered starts from its stored keys and values). Each runs a
test cell's passes in the order a cell job runs them (greedy, sample, verbal 2-stage, p(True), then the hidden
states of the answered conversation) on the dataset's first test questions, with the generation settings of
config/config.yaml; the two alternate ``--repeats`` times, the store emptied before each run as a new cell job's
is. Prints the best time of each pass on each side, the store's use, and how far the tables of the two sides
are apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml

from uqroute.datasets import load_split, take_subset
from uqroute.engines import make_engine
from uqroute.gguf import materialize
from uqroute.machine import cpu_description
from uqroute.models import model_spec
from uqroute.passes import pass_settings, run_hidden, run_pass
from uqroute.prompts import PromptSet

ROOT = Path(__file__).resolve().parents[1]
PASS_ORDER = ("greedy", "sample", "verbal2s", "ptrue")


def run_cell(engine, questions, prompts, generation: dict, task_type: str) -> tuple[dict, dict]:
    """(seconds per pass, table per pass) of one cell's passes on ``engine``."""
    seconds, tables = {}, {}
    for name in PASS_ORDER:
        settings = pass_settings(name, generation, [task_type])
        started = time.perf_counter()
        tables[name] = run_pass(name, engine, questions, prompts, settings, grade=False,
                                greedy=tables.get("greedy"))
        seconds[name] = time.perf_counter() - started
    started = time.perf_counter()
    tables["hidden"] = run_hidden(engine, questions, tables["greedy"], prompts, -8, len(questions))
    seconds["hidden"] = time.perf_counter() - started
    return seconds, tables


def differences(whole: dict, reused: dict) -> list[str]:
    """How far the reused side's tables are from the whole-prefill side's."""
    lines = []
    for name in ("greedy", "verbal2s", "sample"):
        same = int((whole[name]["response"] == reused[name]["response"]).sum())
        lines.append(f"{name}: {same} of {len(whole[name])} replies the same")
    gaps = [abs(a - b) for x, y in zip(whole["greedy"]["token_logprobs"], reused["greedy"]["token_logprobs"])
            for a, b in zip(x, y)]
    lines.append(f"greedy token logprobs: largest |difference| {max(gaps):.2g}")
    lines.append(f"p(True): largest |difference| {np.max(np.abs(whole['ptrue']['p_true'] - reused['ptrue']['p_true'])):.2g}")
    ours, theirs = (np.stack(table["hidden"]["vector"]) for table in (reused, whole))
    lines.append(f"hidden states: largest |difference| {np.max(np.abs(ours - theirs)):.2g}, "
                 f"{np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)):.2g} of their largest value")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="piqa")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    print(f"CPU: {cpu_description()}")
    questions = take_subset(load_split(args.dataset, "test", Path(args.data_dir)), args.questions, 50)
    task_type = str(questions["task_type"].iloc[0])
    generation = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["generation"]
    generation["part_size"] = args.questions
    prompts = PromptSet.load()
    model_dir = materialize(model_spec(args.model), ROOT / "results" / "models" / args.model)
    sides = {"whole": {"prefix_cache_mb": 0}, "reused": {}}
    engines = {side: make_engine(model_spec(args.model), kind="hf", model_dir=model_dir, dtype=args.dtype,
                                 threads=args.threads, batch_size=args.questions, progress=False, **options)
               for side, options in sides.items()}
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    tables, used = {}, ""
    try:
        for _ in range(args.repeats):
            for side, engine in engines.items():
                if engine.prefixes is not None:
                    engine.prefixes.clear()
                seconds, tables[side] = run_cell(engine, questions, prompts, generation, task_type)
                for name, value in seconds.items():
                    best[side][name] = min(best[side].get(name, float("inf")), value)
        store = engines["reused"].prefixes
        used = (f"{store.hits} prompts started from a stored conversation, {store.reused_tokens} tokens not "
                f"prefilled again, {store.bytes / 2**20:.0f} MB stored")
    finally:
        for engine in engines.values():
            engine.close()
    print(f"{args.model} {args.dtype}, {len(questions)} {args.dataset} questions, one engine batch a pass, "
          f"{args.threads} thread(s), best of {args.repeats}:")
    for name in (*PASS_ORDER, "hidden"):
        whole, reused = best["whole"][name], best["reused"][name]
        print(f"  {name:8s} whole {whole:6.2f} s, reused {reused:6.2f} s, ratio {whole / reused:.2f}")
    total_whole, total_reused = sum(best["whole"].values()), sum(best["reused"].values())
    print(f"  {'all':8s} whole {total_whole:6.2f} s, reused {total_reused:6.2f} s, ratio "
          f"{total_whole / total_reused:.2f}")
    print(f"store (last run): {used}")
    for line in differences(tables["whole"], tables["reused"]):
        print(f"  {line}")


if __name__ == "__main__":
    main()
