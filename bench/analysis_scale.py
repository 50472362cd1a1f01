"""Analysis at the paper's scale on synthetic tables: is the CPU side fast enough?

Grid: 8 SLMs x 14 datasets (test sizes of the paper's Table 2, 36,851 questions per SLM)
x 8 UQ methods, 2 LLMs. Stages, each over the whole grid and each with the bootstrap intervals and bands the
workflow computes (``analysis.bootstrap`` of config/paper.yaml: 1,000 resamples per cell, 100 for curves; drawn
anew per job, as the workflow's jobs draw them): alignment metrics and paired comparisons (896 cells), routing
curves + summaries (1,792), relative accuracy
(1,792), leave-one-out calibration sets (896, 3 seeds each, pooled once per (slm, method)), generalization
(1,792), findings (Wasserstein distances, verdicts + table). The stages run on ``--workers`` processes (2, as the
workflow runs two jobs at a time on 2 cores), one (SLM, dataset) cell at a time each.
Target: the first five stages in <= 60 s on 2 cores.

    .venv/bin/python bench/analysis_scale.py [--slms 8] [--seed 0] [--workers 2] [--resamples N]
                                             [--curve-resamples N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from uqroute.analysis import (
    build_calibration_set,
    distribution_distances,
    findings_table,
    generalization,
    pool_confidences,
    relative_accuracy,
    routing_curve,
    routing_summary,
)
from uqroute.analysis.alignment import alignment_tables
from uqroute.analysis.bootstrap import BootstrapSettings, question_weights
from uqroute.analysis.findings import scaled_confidences
from uqroute.analysis.verdicts import statements
from uqroute.uq.registry import METHOD_NAMES

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


def paper_bootstrap() -> BootstrapSettings:
    """``analysis.bootstrap`` of config/paper.yaml (the schema's defaults where it sets none)."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    return BootstrapSettings.from_config((config.get("analysis") or {}).get("bootstrap"))


def one_blas_thread() -> None:
    """A worker's matrix products on one thread, as in a one-thread workflow job (uqroute.jobs.run_job)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


# The grid, set before the worker processes fork (they read it, nothing is pickled).
GRID: dict = {}


def _weights(slm: str, dataset: str):
    """A curve job's resamples of its cell (``curve_resamples``), drawn anew as every workflow job draws them."""
    table = GRID["uq"][slm, dataset, METHODS[0]]
    return question_weights(table["id"], GRID["settings"].for_curves, slm, dataset)


def alignment_cell(cell):
    slm, dataset = cell
    return alignment_tables([(slm, dataset, m, GRID["uq"][slm, dataset, m]) for m in METHODS],
                            bootstrap=GRID["settings"])


def routing_cell(cell):
    slm, dataset = cell
    rows = []
    for m in METHODS:
        table = GRID["uq"][slm, dataset, m]
        for llm in LLMS:
            curve = routing_curve(table["confidence"], table["correct"], GRID["llm"][llm, dataset], table["valid"],
                                  weights=_weights(slm, dataset))
            rows.append({"slm": slm, "llm": llm, "dataset": dataset, "method": m,
                         **routing_summary(curve, curve["accuracy"].iloc[0], curve["accuracy"].iloc[-1])})
    return rows


def relative_cell(cell):
    slm, dataset = cell
    out = {}
    for m in METHODS:  # the relative-accuracy job draws a UQ table's resamples once for all its LLMs
        table, weights = GRID["uq"][slm, dataset, m], _weights(slm, dataset)
        for llm in LLMS:
            out[slm, llm, dataset, m] = relative_accuracy(table["confidence"], table["correct"],
                                                          GRID["llm"][llm, dataset], table["valid"], weights=weights)
    return out


def calibration_cell(cell):
    slm, method = cell
    pooled = {d: GRID["uq"][slm, d, method] for d in TEST_SIZES}
    return {(slm, method, d): build_calibration_set(pool_confidences({o: t for o, t in pooled.items() if o != d}))
            for d in TEST_SIZES}


def generalization_cell(cell):
    slm, dataset = cell
    return {(slm, llm, dataset, m): generalization(
        GRID["calibration"][slm, m, dataset], GRID["uq"][slm, dataset, m], GRID["llm"][llm, dataset],
        weights=_weights(slm, dataset)) for m in METHODS for llm in LLMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    paper = paper_bootstrap()
    parser.add_argument("--resamples", type=int, default=paper.resamples)
    parser.add_argument("--curve-resamples", type=int, default=paper.curve_resamples)
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU

    start = time.perf_counter()
    uq, llm_correct = synthetic_grid(args.slms, args.seed)
    GRID.update(uq=uq, llm=llm_correct,
                settings=BootstrapSettings(resamples=args.resamples, curve_resamples=args.curve_resamples))
    slms = sorted({k[0] for k in uq})
    n_questions = sum(len(t) for (s, _, m), t in uq.items() if s == slms[0] and m == METHODS[0])
    print(f"synthetic grid: {len(slms)} SLMs x {len(TEST_SIZES)} datasets x {len(METHODS)} methods x "
          f"{len(LLMS)} LLMs, {n_questions} questions per SLM ({time.perf_counter() - start:.1f} s to build); "
          f"{args.resamples} bootstrap resamples ({args.curve_resamples} for curves), {args.workers} worker processes")

    timings = {}
    cells = [(s, d) for s in slms for d in sorted(TEST_SIZES, key=TEST_SIZES.get, reverse=True)]

    def stage(name, function, work):
        # A fresh pool per stage: the workers fork with the grid as it is then (calibration sets included).
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=one_blas_thread) as pool:
            results = list(pool.map(function, work))
        timings[name] = time.perf_counter() - t0
        print(f"  {name:<24} {timings[name]:7.2f} s wall", flush=True)
        return results

    parts = stage("alignment", alignment_cell, cells)
    alignment = pd.concat([p[0] for p in parts], ignore_index=True)
    resamples = pd.concat([p[2] for p in parts], ignore_index=True)
    routing_metrics = pd.DataFrame([row for rows in stage("routing", routing_cell, cells) for row in rows])
    relative = stack({k: v for part in stage("relative_accuracy", relative_cell, cells) for k, v in part.items()})
    calibration = {k: v for part in stage("loo_calibration", calibration_cell,
                                          [(s, m) for s in slms for m in METHODS]) for k, v in part.items()}
    GRID["calibration"] = calibration
    gen = stack({k: v for part in stage("generalization", generalization_cell, cells) for k, v in part.items()})
    core = sum(timings.values())
    t0 = time.perf_counter()
    pooled = pd.concat([uq[s, d, m].assign(slm=s, dataset=d, method=m) for s in slms for d in TEST_SIZES
                        for m in METHODS], ignore_index=True)
    distances = distribution_distances(pooled)
    settings = GRID["settings"]
    tested = statements(alignment, resamples, relative, gen, scaled_confidences(pooled), resamples=settings.resamples,
                        seed=settings.seed, level=settings.level, ratio_tolerance=0.05, accuracy_tolerance=0.02)
    findings = findings_table(alignment, routing_metrics, relative, gen, distances=distances, statements=tested)
    timings["findings"] = time.perf_counter() - t0
    print(f"  {'findings':<24} {timings['findings']:7.2f} s wall")
    print(f"  {'total (first five)':<24} {core:7.2f} s wall   (target <= 60 s)")
    print(f"  {'total (with findings)':<24} {sum(timings.values()):7.2f} s wall")
    sizes = [len(c) // 3 for c in calibration.values()]
    print(f"calibration sets: {min(sizes)}-{max(sizes)} items per run; findings: {len(findings)} rows")
    ratio_error = (gen["achieved_ratio"] - gen["target_ratio"]).abs()
    print(f"LOO ratio fidelity: mean |achieved - target| = {ratio_error.mean():.4f}, max {ratio_error.max():.4f}")
    width = (alignment["auroc_high"] - alignment["auroc_low"])
    print(f"AUROC interval width: median {width.median():.3f}, max {width.max():.3f}; "
          f"{int(alignment['underpowered'].sum())} of {len(alignment)} cells underpowered")


if __name__ == "__main__":
    main()
