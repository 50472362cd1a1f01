"""Analysis at the paper's scale on synthetic tables: is the CPU side fast enough?

Grid: 8 SLMs x 14 datasets (test sizes of the paper's Table 2, 36,851 questions per SLM)
x 8 UQ methods, 2 LLMs. Stages, each over the whole grid: alignment metrics (896 cells),
routing curves + summaries (1,792), relative accuracy (1,792), leave-one-out calibration sets
(896, 3 seeds each, pooled once per (slm, method)), generalization (1,792), findings (Wasserstein distances + table).
Target: the first five stages in <= 60 s on 2 cores.

    .venv/bin/python bench/analysis_scale.py [--slms 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from uqroute.uq.registry import METHOD_NAMES
from uqroute.analysis import (
    alignment_table,
    build_calibration_set,
    distribution_distances,
    findings_table,
    generalization,
    pool_confidences,
    relative_accuracy,
    routing_curve,
    routing_summary,
)

TEST_SIZES = {  # paper Table 2, "# Test"
    "gsm8k": 1319, "aqua": 254, "multiarith": 180, "svamp": 300, "boolq": 3270, "commonsenseqa": 1221,
    "hellaswag": 10042, "openbookqa": 500, "piqa": 1838, "social_iqa": 1954, "truthfulqa": 164,
    "winogrande": 1267, "coqa": 500, "mmlu": 14042,
}
METHODS = METHOD_NAMES
LLMS = ("llama-3.1-70b", "gpt-4o-mini")


def synthetic_grid(n_slms: int, seed: int):
    """uq tables {(slm, dataset, method): DataFrame} and LLM correctness {(llm, dataset): bool array}."""
    rng = np.random.default_rng(seed)
    uq, llm_correct = {}, {}
    for dataset, n in TEST_SIZES.items():
        ids = np.array([f"{dataset}-{i}" for i in range(n)], dtype=object)
        for llm in LLMS:
            llm_correct[llm, dataset] = rng.random(n) < rng.uniform(0.6, 0.95)
        for s in range(n_slms):
            correct = rng.random(n) < rng.uniform(0.2, 0.8)
            for j, method in enumerate(METHODS):
                conf = 1 / (1 + np.exp(-(0.3 * j * (2 * correct - 1) + rng.normal(0, 1, n))))
                valid = np.ones(n, bool)
                if method.startswith("verbal"):  # steps of 5 %, some replies without a number
                    conf = np.round(conf * 20) / 20
                    valid = rng.random(n) > 0.05
                    conf = np.where(valid, conf, np.nan)
                uq[f"slm{s}", dataset, method] = pd.DataFrame(
                    {"id": ids, "confidence": conf, "prediction": "A", "correct": correct, "valid": valid})
    return uq, llm_correct


def stack(frames: dict) -> pd.DataFrame:
    """Concatenate per-cell frames, keys -> leading slm, llm, dataset, method columns."""
    names = ["slm", "llm", "dataset", "method"]
    return pd.concat(frames, names=[*names, "row"]).reset_index(level=names).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU

    start = time.perf_counter()
    uq, llm_correct = synthetic_grid(args.slms, args.seed)
    slms = sorted({k[0] for k in uq})
    n_questions = sum(len(t) for (s, _, m), t in uq.items() if s == slms[0] and m == METHODS[0])
    print(f"synthetic grid: {len(slms)} SLMs x {len(TEST_SIZES)} datasets x {len(METHODS)} methods x "
          f"{len(LLMS)} LLMs, {n_questions} questions per SLM ({time.perf_counter() - start:.1f} s to build)")

    timings, cpu = {}, {}

    def stage(name):
        class Timer:
            def __enter__(self):
                self.t0, self.c0 = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timings[name] = time.perf_counter() - self.t0
                cpu[name] = time.process_time() - self.c0
                print(f"  {name:<24} {timings[name]:7.2f} s wall {cpu[name]:7.2f} s CPU")
        return Timer()

    cells = [(s, d, m) for s in slms for d in TEST_SIZES for m in METHODS]
    with stage("alignment"):
        alignment = alignment_table((s, d, m, uq[s, d, m]) for s, d, m in cells)
    with stage("routing"):
        summaries = []
        for s, d, m in cells:
            table = uq[s, d, m]
            for llm in LLMS:
                curve = routing_curve(table["confidence"], table["correct"], llm_correct[llm, d], table["valid"])
                summaries.append({"slm": s, "llm": llm, "dataset": d, "method": m,
                                  **routing_summary(curve, curve["accuracy"].iloc[0], curve["accuracy"].iloc[-1])})
        routing_metrics = pd.DataFrame(summaries)
    with stage("relative_accuracy"):
        relative = stack({
            (s, llm, d, m): relative_accuracy(uq[s, d, m]["confidence"], uq[s, d, m]["correct"], llm_correct[llm, d],
                                              uq[s, d, m]["valid"])
            for s, d, m in cells for llm in LLMS
        })
    with stage("loo_calibration"):
        # What each calibration_set job does: pool the other datasets, then sample (Algorithm 1).
        calibration = {
            (s, m, d): build_calibration_set(pool_confidences({o: uq[s, o, m] for o in TEST_SIZES if o != d}))
            for s in slms for m in METHODS for d in TEST_SIZES
        }
    with stage("generalization"):
        gen = stack({
            (s, llm, d, m): generalization(calibration[s, m, d], uq[s, d, m], llm_correct[llm, d])
            for s, d, m in cells for llm in LLMS
        })
    core, core_cpu = sum(timings.values()), sum(cpu.values())
    with stage("findings"):
        pooled = pd.concat([uq[s, d, m].assign(slm=s, dataset=d, method=m) for s, d, m in cells], ignore_index=True)
        distances = distribution_distances(pooled)
        findings = findings_table(alignment, routing_metrics, relative, gen, distances=distances)
    print(f"  {'total (first five)':<24} {core:7.2f} s wall {core_cpu:7.2f} s CPU   (target <= 60 s)")
    print(f"  {'total (with findings)':<24} {sum(timings.values()):7.2f} s wall {sum(cpu.values()):7.2f} s CPU")
    sizes = [len(c) // 3 for c in calibration.values()]
    print(f"calibration sets: {min(sizes)}-{max(sizes)} items per run; findings: {len(findings)} rows")
    ratio_error = (gen["achieved_ratio"] - gen["target_ratio"]).abs()
    print(f"LOO ratio fidelity: mean |achieved - target| = {ratio_error.mean():.4f}, max {ratio_error.max():.4f}")


if __name__ == "__main__":
    main()
