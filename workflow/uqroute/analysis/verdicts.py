"""The paper's observations and insights as testable statements, each with its interval and a verdict.

Every statement names the number that decides it, that number's interval (``level``, 95 % by default) and a
verdict: ``holds`` when the interval lies on the statement's side, ``does not hold`` when it lies on the other,
``undecided`` when it straddles (or nothing was measured). The intervals come from the same resamples as the
tables: the per-resample AUROCs of the alignment job (paired across methods) for statements about methods,
the bands of the relative-accuracy table, and a bootstrap over datasets (a dataset drawn with replacement)
for statements about how things move from one dataset to another.

- ``observation_1``: UQ methods do not all align with correctness: among the cells with enough right and wrong
  answers, some AUROC interval lies above 0.5 and some reaches 0.5.
- ``observation_2``: verbalized methods align worse than perplexity: perplexity's AUROC minus each verbalized
  method's, averaged over the (SLM, dataset) cells both score, is above 0.
- ``observation_3``: the trained probe, the OOD probe and perplexity rank top three by mean AUROC rank: each
  has a better mean rank than every other method, by paired bootstrap intervals of the rank gaps.
- ``observation_4``: on its most confident queries an SLM comes close to the LLM: some (SLM, LLM, dataset,
  method) has SLM/LLM accuracy on its 20 % most confident queries of at least 0.9.
- ``insight_1``: the confidence distribution depends on the SLM and the method more than on the dataset: the
  distance between datasets (method fixed) over the distance between methods (dataset fixed) is below 1.
- ``insight_2``: calibration data sets routing thresholds that generalize: the mean |achieved - target|
  routed share is within ``ratio_tolerance``, and the mean |accuracy - ground truth| within
  ``accuracy_tolerance``.
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ..uq.registry import METHOD_NAMES
from .findings import wasserstein_sorted

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
TOP_THREE = ("trained_probe", "ood_probe", "perplexity")
VERBALIZED = ("verbal_1s", "verbal_2s")
NEAR_LLM = 0.9
AT_EXCLUDED = 80


def _side(low: float, high: float, *, above: float | None = None, below: float | None = None) -> str:
    """The verdict on "the number is above ``above``" (or below ``below``) from its interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return UNDECIDED
    if above is not None:
        return HOLDS if low > above else (FAILS if high <= above else UNDECIDED)
    return HOLDS if high < below else (FAILS if low >= below else UNDECIDED)


def _row(statement: str, value: float, low: float, high: float, verdict: str, description: str, *, slm="all",
         llm=None, method="all") -> dict:
    return {"finding": statement, "slm": slm, "llm": llm, "method": method, "value": float(value),
            "description": description, "low": float(low), "high": float(high), "verdict": verdict}


def _quantiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def observation_1(alignment: pd.DataFrame) -> dict:
    powered = alignment[~alignment["underpowered"].astype(bool) & alignment["auroc_low"].notna()]
    aligned = int((powered["auroc_low"] > 0.5).sum())
    at_chance = int((powered["auroc_low"] <= 0.5).sum())
    n = len(powered)
    share = aligned / n if n else float("nan")
    if not n:
        verdict = UNDECIDED
    else:
        verdict = HOLDS if aligned and at_chance else (FAILS if at_chance == 0 else UNDECIDED)
    low, high = (float("nan"),) * 2
    if n:
        interval = binomtest(aligned, n).proportion_ci(method="wilson")
        low, high = interval.low, interval.high
    return _row("observation_1", share, low, high, verdict,
                f"share of the {n} well-powered (SLM, dataset, method) cells whose AUROC interval lies above 0.5 "
                f"(Wilson interval); holds when some lie above and some reach 0.5 ({aligned} above, {at_chance} "
                "reaching it): not every method aligns with correctness")


def _paired_means(resamples: pd.DataFrame, first: str, second: str) -> tuple[float, np.ndarray, int]:
    """Mean over the (SLM, dataset) cells both methods score of AUROC(first) - AUROC(second): the point and the
    per-resample values (the resamples are paired: the same questions for both methods)."""
    table = resamples[resamples["method"].isin([first, second])]
    wide = table.pivot_table(index=["slm", "dataset", "resample"], columns="method", values="auroc")
    if first not in wide.columns or second not in wide.columns:
        return float("nan"), np.full(0, np.nan), 0
    difference = (wide[first] - wide[second]).rename("difference").reset_index()
    cells = difference.groupby(["slm", "dataset"])["difference"].apply(lambda d: d.notna().mean() >= 0.5)
    cells = cells[cells].index
    kept = difference.set_index(["slm", "dataset"]).loc[cells].reset_index() if len(cells) else difference.iloc[:0]
    per_resample = kept.groupby("resample")["difference"].mean().to_numpy()
    return float(np.nanmean(per_resample)) if len(per_resample) else float("nan"), per_resample, len(cells)


def observation_2(alignment: pd.DataFrame, resamples: pd.DataFrame, level: float) -> list[dict]:
    rows = []
    points = alignment.set_index(["slm", "dataset", "method"])["auroc"]
    for method in VERBALIZED:
        _, per_resample, n_cells = _paired_means(resamples, "perplexity", method)
        both = points.unstack("method").reindex(columns=["perplexity", method]).dropna()
        value = float((both["perplexity"] - both[method]).mean()) if len(both) else float("nan")
        low, high = _quantiles(per_resample, level)
        rows.append(_row("observation_2", value, low, high, _side(low, high, above=0.0),
                         f"AUROC of perplexity minus AUROC of {method}, mean over the {n_cells} (SLM, dataset) "
                         "cells both score (paired bootstrap over questions); holds above 0: the verbalized "
                         "method aligns worse", method=method))
    return rows


def _mean_ranks(frame: pd.DataFrame, methods: list[str]) -> np.ndarray:
    """Mean AUROC rank (1 = best) of each of ``methods`` over the (SLM, dataset) cells of ``frame`` (``slm, dataset,
    method, auroc`` and, for resamples, ``resample``): ``(resamples, methods)``, a single row without resamples."""
    frame = frame if "resample" in frame.columns else frame.assign(resample=0)
    table = frame.pivot_table(index=["resample", "slm", "dataset"], columns="method", values="auroc",
                              aggfunc="first", dropna=False).reindex(columns=methods)
    ranks = table.rank(axis=1, ascending=False)  # within a cell; a method without an AUROC there has no rank
    with np.errstate(invalid="ignore"):
        means = ranks.groupby(level="resample").mean()
    return means.to_numpy(dtype=float)


def observation_3(resamples: pd.DataFrame, alignment: pd.DataFrame, level: float) -> dict:
    target = list(TOP_THREE)
    # The paper's claim is about its eight methods: others the grid adds (P(IK), a plugin's) stay out of it.
    scored = alignment[alignment["method"].isin(METHOD_NAMES)].dropna(subset=["auroc"])
    resamples = resamples[resamples["method"].isin(METHOD_NAMES)]
    others = sorted(set(scored["method"]) - set(target))
    if not set(target) <= set(scored["method"]) or resamples.empty:
        return _row("observation_3", float("nan"), float("nan"), float("nan"), UNDECIDED,
                    "mean AUROC rank of trained probe, OOD probe and perplexity against every other method: not "
                    "measured (the grid lacks one of them)")
    if not others:
        return _row("observation_3", float("nan"), float("nan"), float("nan"), HOLDS,
                    "trained probe, OOD probe and perplexity are the only methods with an AUROC: top three by "
                    "construction")
    methods = target + others
    point = _mean_ranks(scored, methods)[0]
    drawn = _mean_ranks(resamples.dropna(subset=["auroc"]), methods)
    # Every (one of the three, another method) pair: how far the other's mean rank lies behind. The statement
    # holds when every gap's interval lies above 0, fails when some interval lies below; each pair's interval at
    # a Bonferroni-corrected level, so the statement as a whole is tested at ``level``.
    pairs = [(t, o) for t in range(3) for o in range(3, len(methods))]
    pair_level = 1 - (1 - level) / len(pairs)
    gaps = [(point[o] - point[t], *_quantiles(drawn[:, o] - drawn[:, t], pair_level), t, o) for t, o in pairs]
    gap, low, high, t, o = min(gaps, key=lambda g: (g[1] if np.isfinite(g[1]) else -np.inf, g[0]))
    if any(np.isfinite(g[2]) and g[2] < 0 for g in gaps):
        verdict = FAILS
        gap, low, high, t, o = min((g for g in gaps if np.isfinite(g[2])), key=lambda g: g[2])
    elif all(np.isfinite(g[1]) and g[1] > 0 for g in gaps):
        verdict = HOLDS
    else:
        verdict = UNDECIDED
    return _row("observation_3", gap, low, high, verdict,
                f"mean AUROC rank of {methods[o]} minus that of {methods[t]} over (SLM, dataset), the closest of "
                f"the {len(pairs)} (top-three method, other method) pairs (intervals at {pair_level:.1%}, "
                f"Bonferroni); holds when every such gap's interval is above 0")


def observation_4(relative: pd.DataFrame) -> dict:
    at = relative[np.isclose(relative["excluded_pct"].to_numpy(dtype=float), AT_EXCLUDED)]
    at = at.dropna(subset=["relative_accuracy"])
    if at.empty or "relative_low" not in at.columns:
        return _row("observation_4", float("nan"), float("nan"), float("nan"), UNDECIDED,
                    "SLM/LLM accuracy on the 20 % most confident queries: not measured")
    best = at.loc[at["relative_low"].fillna(-np.inf).idxmax()]
    near = int((at["relative_low"] >= NEAR_LLM).sum())
    far = int((at["relative_high"] < NEAR_LLM).all())
    verdict = HOLDS if near else (FAILS if far else UNDECIDED)
    return _row("observation_4", best["relative_accuracy"], best["relative_low"], best["relative_high"], verdict,
                f"SLM/LLM accuracy on the 20 % most confident queries of the cell whose band lies highest "
                f"({best['dataset']}); holds when some cell's band lies at or above {NEAR_LLM} ({near} of "
                f"{len(at)} cells do), fails when every cell's lies below", slm=best["slm"], llm=best["llm"],
                method=best["method"])


def _dataset_bootstrap(datasets: list[str], resamples: int, seed: int) -> np.ndarray:
    """``(resamples, len(datasets))`` indices: the datasets drawn with replacement, once per resample."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(datasets), size=(resamples, len(datasets)))


def insight_1(scaled: pd.DataFrame, resamples: int, seed: int, level: float) -> dict:
    """``scaled``: valid confidences min-max scaled per (slm, method), with ``slm, dataset, method, scaled``."""
    rows_between_datasets, rows_between_methods = [], []
    datasets = sorted(scaled["dataset"].unique())
    if len(datasets) < 2 or scaled["method"].nunique() < 2:
        return _row("insight_1", float("nan"), float("nan"), float("nan"), UNDECIDED,
                    "distance between datasets over distance between methods: needs two datasets and two methods")
    samples = {key: np.sort(group.to_numpy()) for key, group in scaled.groupby(["slm", "dataset", "method"])["scaled"]}
    slms, methods = sorted(scaled["slm"].unique()), sorted(scaled["method"].unique())
    index = {d: i for i, d in enumerate(datasets)}
    # Pairwise distances, once: between datasets for each (slm, method), between methods for each (slm, dataset).
    between_datasets = np.full((len(slms), len(methods), len(datasets), len(datasets)), np.nan)
    between_methods = np.full((len(slms), len(datasets)), np.nan)
    for s, slm in enumerate(slms):
        for m, method in enumerate(methods):
            for a, b in combinations(datasets, 2):
                if (slm, a, method) in samples and (slm, b, method) in samples:
                    d = wasserstein_sorted(samples[slm, a, method], samples[slm, b, method])
                    between_datasets[s, m, index[a], index[b]] = between_datasets[s, m, index[b], index[a]] = d
        for dataset in datasets:
            pairs = [wasserstein_sorted(samples[slm, dataset, a], samples[slm, dataset, b])
                     for a, b in combinations(methods, 2)
                     if (slm, dataset, a) in samples and (slm, dataset, b) in samples]
            between_methods[s, index[dataset]] = np.mean(pairs) if pairs else np.nan

    def ratio(draw: np.ndarray) -> float:
        picked = between_datasets[:, :, draw][:, :, :, draw]
        # Pairs of distinct draws only (a dataset drawn twice is no pair of datasets).
        distinct = draw[:, None] != draw[None, :]
        datasets_mean = np.nanmean(np.where(distinct, picked, np.nan))
        methods_mean = np.nanmean(between_methods[:, draw])
        return float(datasets_mean / methods_mean) if methods_mean > 0 else float("nan")

    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = ratio(np.arange(len(datasets)))
            draws = _dataset_bootstrap(datasets, resamples, seed)
            per_resample = np.array([ratio(draw) for draw in draws])
    low, high = _quantiles(per_resample, level)
    return _row("insight_1", value, low, high, _side(low, high, below=1.0),
                f"mean Wasserstein distance between datasets (method fixed) over that between methods (dataset "
                f"fixed), confidences min-max scaled per (SLM, method), bootstrap over the {len(datasets)} datasets; "
                "holds below 1: the method shapes the distribution more than the dataset")


def insight_2(generalization: pd.DataFrame, resamples: int, seed: int, level: float, *, ratio_tolerance: float,
              accuracy_tolerance: float) -> list[dict]:
    if generalization is None or generalization.empty:
        return [_row("insight_2", float("nan"), float("nan"), float("nan"), UNDECIDED,
                     "calibration thresholds on unseen datasets: not measured")]
    gen = generalization.assign(
        ratio_error=(generalization["achieved_ratio"] - generalization["target_ratio"]).abs(),
        accuracy_error=(generalization["accuracy"] - generalization["oracle_threshold_accuracy"]).abs())
    inner = gen[(gen["target_ratio"] > 0) & (gen["target_ratio"] < 1)]
    datasets = sorted(inner["dataset"].unique())
    per_dataset = inner.groupby("dataset")[["ratio_error", "accuracy_error"]].mean().reindex(datasets)
    draws = _dataset_bootstrap(datasets, resamples, seed)
    rows = []
    for column, tolerance, what in (("ratio_error", ratio_tolerance, "routed share"),
                                    ("accuracy_error", accuracy_tolerance, "accuracy")):
        values = per_dataset[column].to_numpy(dtype=float)
        per_resample = np.nanmean(values[draws], axis=1) if len(values) else np.full(0, np.nan)
        low, high = _quantiles(per_resample, level)
        reference = "target" if column == "ratio_error" else "ground truth"
        rows.append(_row("insight_2", float(np.nanmean(values)) if len(values) else float("nan"), low, high,
                         _side(low, high, below=tolerance),
                         f"mean |{what} with calibration thresholds - {reference}| "
                         f"on the held-out dataset, target ratios in (0, 1), bootstrap over the {len(datasets)} "
                         f"held-out datasets; holds below {tolerance}", llm="all"))
    return rows


def statements(alignment: pd.DataFrame, auroc_resamples: pd.DataFrame, relative: pd.DataFrame,
               generalization: pd.DataFrame | None, scaled: pd.DataFrame, *, resamples: int, seed: int,
               level: float, ratio_tolerance: float, accuracy_tolerance: float) -> pd.DataFrame:
    """Every statement of the module docstring, one row each (two for observation 2 and insight 2)."""
    rows = [observation_1(alignment), *observation_2(alignment, auroc_resamples, level),
            observation_3(auroc_resamples, alignment, level), observation_4(relative),
            insight_1(scaled, resamples, seed, level),
            *insight_2(generalization, resamples, seed, level, ratio_tolerance=ratio_tolerance,
                       accuracy_tolerance=accuracy_tolerance)]
    return pd.DataFrame(rows)
