"""Uncertainty-based routing: send the least confident queries from the SLM to the LLM.

Rows without a confidence (``valid`` false or a non-finite confidence), by ``invalid``:
``"drop"`` (the paper's rule, the default) leaves them out, so curves are over the n_valid
scored rows; ``"route_first"`` keeps them and routes them before any scored row, since nothing
vouches for the SLM's answer there (what a deployed router does with a reply it cannot score).

Order of routing: ascending confidence (rows without one first, as one group). Tied rows are
routed in uniformly random order, so every curve is the *expected* accuracy over that order: the
same treatment AUROC gives ties, and never the input order (a file sorted by subject would
otherwise route whole subjects first). Sending ``k`` queries at ratio ``r`` means
k = round-half-up(r * n) over the n rows the curve is over.

Inputs are aligned arrays of length n (position i is the same question in each): the SLM's
confidence, whether the SLM's answer is right, whether the LLM's answer is right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from uqroute.analysis.alignment import as_bool_array, as_float_array, valid_mask

from .bootstrap import expected_sums_at, interval

INVALID_RULES = ("drop", "route_first")
# Default grid: every percent from 0 % to 100 % routed (read-only, shared as a default argument).
ROUTING_RATIOS = np.linspace(0, 1, 101)
ROUTING_RATIOS.flags.writeable = False
# Guards round-half-up against r * n landing a hair below .5 (0.29 * 50 = 14.499999999999998).
_ROUND_SLACK = 1e-9


def ratio_grid(step: float) -> np.ndarray:
    """0, step, 2 step, ..., 1 (rounded, so 0.1 * 3 is 0.3)."""
    return np.round(np.arange(0, 1 + step / 2, step), 10)


def round_half_up(x) -> np.ndarray:
    """Nearest integer, halves rounded up (2.5 -> 3, unlike NumPy's round-half-even)."""
    return np.floor(np.asarray(x, dtype=float) + 0.5 + _ROUND_SLACK).astype(np.int64)


def _checked_routing_arrays(confidence, slm_correct, llm_correct, valid):
    conf = as_float_array(confidence)
    slm = as_bool_array(slm_correct, what="slm_correct")
    llm = as_bool_array(llm_correct, what="llm_correct")
    if not (len(conf) == len(slm) == len(llm)):
        raise ValueError(
            f"confidence, slm_correct and llm_correct must align; got lengths {len(conf)}, {len(slm)}, {len(llm)}"
        )
    if len(conf) == 0:
        raise ValueError("routing needs at least one question; got empty arrays")
    return conf, slm, llm, valid_mask(conf, valid, what="confidence")


def routing_rows(confidence, slm_correct, llm_correct, valid=None, invalid: str = "drop"):
    """The checked arrays ``(confidence, slm, llm, valid)`` a curve is over: all rows, or the valid ones."""
    if invalid not in INVALID_RULES:
        raise ValueError(f"invalid rows: rule {invalid!r} is not one of {INVALID_RULES} (config key analysis.invalid)")
    conf, slm, llm, valid = _checked_routing_arrays(confidence, slm_correct, llm_correct, valid)
    if invalid == "drop":
        conf, slm, llm, valid = conf[valid], slm[valid], llm[valid], valid[valid]
    return conf, slm, llm, valid


def expected_routed_sums(confidence: np.ndarray, valid: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """For k = 0..n, the expected sum of each of ``values`` over the k rows routed first; each (n + 1,).

    Rows go in ascending confidence (invalid rows first, as one group); within a group of tied
    confidences the order is uniformly random, so the expected sum grows linearly across the group:
    the cumulative sums interpolated between the groups' boundaries.
    """
    key = np.where(valid, confidence, -np.inf)
    order = np.argsort(key, kind="stable")
    key = key[order]
    n = len(key)
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if n else np.zeros(0, dtype=np.int64)
    boundaries = np.append(starts, n)
    steps = np.arange(n + 1)
    sums = []
    for value in values:
        cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(value, dtype=float)[order])])
        sums.append(np.interp(steps, boundaries, cumulative[boundaries]))
    return sums


def check_ratios(ratios, *, what: str = "routing ratios") -> np.ndarray:
    """Ratios as a 1-D float array in [0, 1]; float dust past a bound (np.arange grids) is clipped."""
    ratios = np.asarray(ratios, dtype=float)
    if ratios.ndim != 1 or not np.all(np.isfinite(ratios)) or np.any((ratios < -1e-9) | (ratios > 1 + 1e-9)):
        raise ValueError(f"{what} must be a 1-D array in [0, 1]; got {ratios!r}")
    return np.clip(ratios, 0.0, 1.0)


def routing_curve(confidence, slm_correct, llm_correct, valid=None, ratios=ROUTING_RATIOS, *,
                  invalid: str = "drop", weights: np.ndarray | None = None, level: float = 0.95) -> pd.DataFrame:
    """Overall accuracy vs routing ratio (``routing/{slm}/{llm}/{dataset}/{method}.parquet``).

    For each ratio r in ``ratios`` (fractions in [0, 1]) the first k = round-half-up(r * n) rows
    in routing order go to the LLM (see the module docstring for ``invalid`` and ties). Columns:
    ``ratio``; ``accuracy`` = E[SLM right on kept + LLM right on routed] / n;
    ``random_accuracy`` = (1 - k/n) * acc_SLM + (k/n) * acc_LLM, the expected accuracy of routing
    a uniformly random k-subset; ``oracle_accuracy`` = the best achievable with k routed: route
    first where the SLM is wrong and the LLM right, then where the two agree, last where the SLM
    is right and the LLM wrong; ``n``: the rows the curve is over (n_valid under ``"drop"``);
    ``accuracy_low``/``accuracy_high``: the ``level`` band of ``accuracy`` under the resamples (rows) of
    ``weights`` (``(resamples, len(confidence))``, :mod:`uqroute.analysis.bootstrap`), NaN without them.
    With no row to route (no valid confidence under ``"drop"``) every accuracy is NaN.
    """
    if weights is not None:
        _, _, _, kept = routing_rows(confidence, slm_correct, llm_correct, valid, "route_first")
        weights = weights[:, kept] if invalid == "drop" else weights
    conf, slm, llm, valid = routing_rows(confidence, slm_correct, llm_correct, valid, invalid)
    ratios = check_ratios(ratios)
    n = len(conf)
    if n == 0:
        nothing = np.full(len(ratios), np.nan)
        return pd.DataFrame({"ratio": ratios, "accuracy": nothing, "random_accuracy": nothing,
                             "oracle_accuracy": nothing, "n": 0, "accuracy_low": nothing, "accuracy_high": nothing})
    cum_slm, cum_llm = expected_routed_sums(conf, valid, slm, llm)
    k = round_half_up(ratios * n)
    accuracy = (cum_slm[n] - cum_slm[k] + cum_llm[k]) / n
    acc_slm, acc_llm = cum_slm[n] / n, cum_llm[n] / n
    frac = k / n
    gain = llm.astype(np.int64) - slm.astype(np.int64)
    best_first = np.concatenate([[0], np.cumsum(np.sort(gain)[::-1])])
    low = high = np.full(len(ratios), np.nan)
    if weights is not None:
        low, high = interval(_resampled_kept(conf, slm, llm, valid, weights, ratios, "overall").T, level)
    return pd.DataFrame({
        "ratio": ratios,
        "accuracy": accuracy,
        "random_accuracy": (1 - frac) * acc_slm + frac * acc_llm,
        "oracle_accuracy": acc_slm + best_first[k] / n,
        "n": n,
        "accuracy_low": low,
        "accuracy_high": high,
    })


def _resampled_kept(conf, slm, llm, valid, weights, fractions, what: str) -> np.ndarray:
    """Under each resample (row of ``weights``), with the first round-half-up(f * N) rows in routing order
    sent away (N: the resample's size): the overall accuracy of routing them to the LLM (``what="overall"``),
    or the SLM's and the LLM's accuracy on the rows kept (``"kept"``, a pair). ``(len(fractions), resamples)``."""
    size = weights.sum(axis=1, dtype=np.float64)
    k = round_half_up(np.asarray(fractions)[:, None] * size[None, :])
    routed_slm, routed_llm = expected_sums_at(conf, valid, weights, [slm, llm], k)
    total_slm = weights @ slm.astype(np.float32)
    total_llm = weights @ llm.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        if what == "overall":
            return (total_slm - routed_slm + routed_llm) / size
        kept = np.where(size - k > 0, size - k, np.nan)
        return (total_slm - routed_slm) / kept, (total_llm - routed_llm) / kept


def routing_summary(curve: pd.DataFrame, slm_accuracy: float, llm_accuracy: float) -> dict:
    """Scalar summaries of one routing curve (``metrics/routing.parquet``), after RouteLLM.

    ``curve``: :func:`routing_curve` output with ratios ascending from 0 to 1.
    ``area`` = trapezoid area under accuracy vs ratio, in accuracy units.
    Performance gap recovered PGR(r) = (acc(r) - acc_SLM) / (acc_LLM - acc_SLM); its area over
    r in [0, 1] is ``apgr`` = (area - acc_SLM) / (acc_LLM - acc_SLM); NaN when the two accuracies
    are equal. ``cptX`` (call-performance threshold) = the smallest ratio on the grid whose
    accuracy reaches acc_SLM + X% * (acc_LLM - acc_SLM), i.e. the fraction of calls to the LLM
    needed to recover X% of the gap; NaN when the LLM is not more accurate than the SLM (there
    is no gap to recover) or the curve never gets there.
    """
    ratio = curve["ratio"].to_numpy(dtype=float)
    accuracy = curve["accuracy"].to_numpy(dtype=float)
    if len(ratio) < 2 or abs(ratio[0]) > 1e-9 or abs(ratio[-1] - 1) > 1e-9 or np.any(np.diff(ratio) <= 0):
        raise ValueError(f"routing curve ratios must increase from 0 to 1; got {ratio[:3]}...{ratio[-3:]}")
    area = float(np.trapezoid(accuracy, ratio))
    gap = llm_accuracy - slm_accuracy
    summary = {"area": area, "apgr": (area - slm_accuracy) / gap if gap != 0 else float("nan")}
    for pct in (20, 50, 80):
        cpt = float("nan")
        if gap > 0:
            reached = np.flatnonzero(accuracy >= slm_accuracy + pct / 100 * gap - 1e-12)
            if len(reached):
                cpt = float(ratio[reached[0]])
        summary[f"cpt{pct}"] = cpt
    return summary


def routing_metrics_row(curve: pd.DataFrame, *, slm: str, llm: str, dataset: str, method: str) -> dict:
    """One row of ``metrics/routing.parquet``: the cell, the accuracies at both ends of its curve (ratio 0:
    the SLM alone, ratio 1: the LLM alone), :func:`routing_summary`, and ``n``, the rows routed over."""
    slm_accuracy, llm_accuracy = float(curve["accuracy"].iloc[0]), float(curve["accuracy"].iloc[-1])
    return {"slm": slm, "llm": llm, "dataset": dataset, "method": method, "slm_accuracy": slm_accuracy,
            "llm_accuracy": llm_accuracy, **routing_summary(curve, slm_accuracy, llm_accuracy),
            "n": int(curve["n"].iloc[0])}


def relative_accuracy(confidence, slm_correct, llm_correct, valid=None, excluded=range(0, 91, 10), *,
                      invalid: str = "drop", weights: np.ndarray | None = None, level: float = 0.95) -> pd.DataFrame:
    """SLM vs LLM accuracy on the most confident queries (paper Fig. 3).

    For each percentage p in ``excluded`` the first round-half-up(p/100 * n) rows in routing order
    (the least confident; ties and ``invalid`` as in the module docstring) are dropped. Columns:
    ``excluded_pct``, ``n_kept``, the expected ``slm_accuracy`` and ``llm_accuracy`` on the kept
    rows, ``relative_accuracy`` = their ratio (NaN when the LLM gets none of the kept rows right or
    nothing is kept), and its ``level`` band ``relative_low``/``relative_high`` under the resamples of
    ``weights`` (as in :func:`routing_curve`; NaN without them).
    """
    if weights is not None:
        _, _, _, kept_rows = routing_rows(confidence, slm_correct, llm_correct, valid, "route_first")
        weights = weights[:, kept_rows] if invalid == "drop" else weights
    conf, slm, llm, valid = routing_rows(confidence, slm_correct, llm_correct, valid, invalid)
    pct = np.asarray(list(excluded), dtype=float)
    if np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"excluded percentages must be in [0, 100]; got {pct!r}")
    n = len(conf)
    cum_slm, cum_llm = expected_routed_sums(conf, valid, slm, llm)
    k = round_half_up(pct / 100 * n)
    n_kept = n - k
    with np.errstate(invalid="ignore", divide="ignore"):
        slm_acc = np.where(n_kept > 0, (cum_slm[n] - cum_slm[k]) / np.maximum(n_kept, 1), np.nan)
        llm_acc = np.where(n_kept > 0, (cum_llm[n] - cum_llm[k]) / np.maximum(n_kept, 1), np.nan)
        rel = np.where(llm_acc > 0, slm_acc / np.where(llm_acc > 0, llm_acc, 1.0), np.nan)
    low = high = np.full(len(pct), np.nan)
    if weights is not None and n:
        slm_kept, llm_kept = _resampled_kept(conf, slm, llm, valid, weights, pct / 100, "kept")
        with np.errstate(invalid="ignore", divide="ignore"):
            low, high = interval(np.where(llm_kept > 0, slm_kept / llm_kept, np.nan).T, level)
    return pd.DataFrame({
        "excluded_pct": pct,
        "n_kept": n_kept,
        "slm_accuracy": slm_acc,
        "llm_accuracy": llm_acc,
        "relative_accuracy": rel,
        "relative_low": low,
        "relative_high": high,
    })


def align_llm_correct(uq: pd.DataFrame, llm_greedy: pd.DataFrame, *, label: str = "llm greedy") -> np.ndarray:
    """The LLM's ``correct`` for each row of ``uq``, matched by ``id``; shape (len(uq),).

    Raises naming the first id of ``uq`` that the LLM table lacks (routing needs every answer)
    or an id the LLM table holds twice.
    """
    twice = llm_greedy["id"].duplicated()
    if twice.any():
        raise ValueError(f"{label}: id {llm_greedy['id'][twice].iloc[0]!r} appears more than once")
    llm = llm_greedy.set_index("id")["correct"]
    matched = llm.reindex(uq["id"])
    if matched.isna().any():
        missing = matched.index[matched.isna().to_numpy()]
        raise ValueError(f"{label}: no LLM answer for {len(missing)} id(s), first {missing[0]!r}")
    return matched.to_numpy(dtype=bool)
