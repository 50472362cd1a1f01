"""Calibration data for routing on an unseen dataset (paper Sec. 4.1, Algorithm 1).

An SLM's confidence distribution under one UQ method barely depends on the dataset, so a
small sample of confidences pooled from other datasets can set the routing thresholds for a
new one. Leave-one-out: the calibration set for target dataset d is built from the pool of
every other dataset (``calibration/{slm}/{method}/holdout-{d}.parquet``), and its thresholds
are judged on d (``generalization/{slm}/{llm}/{method}/{d}.parquet``).

Threshold rule (:func:`thresholds_for_ratios`): to route a fraction r, route every query
whose confidence is strictly below the threshold; rows without a confidence are always routed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import logging

import numpy as np
import pandas as pd

from uqroute.analysis.alignment import as_bool_array, as_float_array, valid_mask
from uqroute.analysis.routing import INVALID_RULES, check_ratios, round_half_up
from uqroute.uq.tables import ROUTING_COLUMNS

from .bootstrap import interval

POOL_COLUMNS = ("source_dataset", "id", "confidence")
log = logging.getLogger(__name__)

CALIBRATION_COLUMNS = ("run", "source_dataset", "id", "confidence", "bin")
GENERALIZATION_COLUMNS = (
    "run", "target_ratio", "threshold", "achieved_ratio", "accuracy", "oracle_threshold_accuracy",
    "achieved_ratio_low", "achieved_ratio_high", "accuracy_low", "accuracy_high",
)
# Default target ratios: 0 %, 5 %, ..., 100 % routed (read-only, shared as a default argument).
TARGET_RATIOS = np.linspace(0, 1, 21)
TARGET_RATIOS.flags.writeable = False


def pool_confidences(uq_tables: Mapping[str, pd.DataFrame], exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Valid confidences of several datasets' UQ tables, stacked: ``source_dataset, id, confidence``.

    ``uq_tables`` maps dataset name -> ``uq/{slm}/{dataset}/{method}`` table of one (slm, method);
    datasets in ``exclude`` (the held-out target) are left out. Rows keep the mapping's order and
    each table's row order, which fixes what a seed samples.
    """
    exclude = set(exclude)
    parts = []
    for dataset, uq in uq_tables.items():
        if dataset in exclude:
            continue
        conf = as_float_array(uq["confidence"])
        keep = valid_mask(conf, uq["valid"], what=f"uq table of {dataset}", ids=uq["id"])
        # Selecting from the Series keeps the ids' type when no row is kept, so every pool has one id type.
        ids = uq["id"][keep].reset_index(drop=True)
        parts.append(pd.DataFrame({"source_dataset": dataset, "id": ids, "confidence": conf[keep]}))
    if not parts:
        raise ValueError(f"no dataset left to pool: tables {list(uq_tables)}, excluded {sorted(exclude)}")
    return pd.concat(parts, ignore_index=True)


def confidence_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index (n,) in 0..n_bins-1 over ``n_bins`` equal-width bins spanning [min, max].

    Bin b holds [min + b w, min + (b+1) w), the last also holds the max; all rows fall in bin 0
    when every confidence is the same.
    """
    lo, hi = float(confidence.min()), float(confidence.max())
    if hi == lo:
        return np.zeros(len(confidence), dtype=np.int64)
    scaled = (confidence - lo) / (hi - lo) * n_bins
    return np.minimum(scaled.astype(np.int64), n_bins - 1)


def bin_quota(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Items to sample per bin: round-half-up(fraction * count), no minimum.

    A bin with fewer than 0.5 / fraction items (under 5 at 10 %) gives none. Forcing one item
    from every non-empty bin would be up to 0.9 item off the proportional share in each sparse
    bin and flattens the sample when the pool is small; dropping them moves the pooled
    distribution by at most half an item per bin, and the extreme ratios need no tail items
    (their thresholds are -inf and +inf, see :func:`thresholds_for_ratios`).
    """
    return np.minimum(round_half_up(fraction * counts), counts)


def _check_pool(pooled: pd.DataFrame, n_bins: int, fraction: float) -> pd.DataFrame:
    """The pool's rows with a finite confidence, in order; raises on bad settings or duplicates."""
    missing = [c for c in POOL_COLUMNS if c not in pooled.columns]
    if missing:
        raise ValueError(f"calibration pool: missing column(s) {missing}; has {list(pooled.columns)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"calibration fraction must be in (0, 1]; got {fraction}")
    if n_bins < 1:
        raise ValueError(f"calibration n_bins must be >= 1; got {n_bins}")
    conf = as_float_array(pooled["confidence"])
    pool = pooled.loc[np.isfinite(conf), list(POOL_COLUMNS)].reset_index(drop=True)
    twice = pool.duplicated(["source_dataset", "id"]).to_numpy()
    if twice.any():
        row = pool[twice].iloc[0]
        raise ValueError(f"calibration pool: ({row['source_dataset']!r}, {row['id']!r}) appears more than once")
    return pool


def _stratified_sample(confidence: np.ndarray, n_bins: int, fraction: float, seeds: Iterable[int],
                       label: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed: positions (sorted) of the sampled rows and their bins (Algorithm 1 on an array)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("a calibration set needs at least one seed")
    nothing = [(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)) for _ in seeds]
    if len(confidence) == 0:
        # A method that never gave a score here (e.g. no verbalized confidence) has nothing to sample:
        # an empty set, counted downstream, rather than a failed job.
        log.warning("%s has no finite confidence: empty calibration set", label)
        return nothing
    bins = confidence_bins(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    quota = bin_quota(counts, fraction)
    bin_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if quota.sum() == 0:
        log.warning("%s of %d items gives an empty sample: no bin of %d holds %g items for fraction %g",
                    label, len(confidence), n_bins, 0.5 / fraction, fraction)
        return nothing
    # int16 bins let the stable sort below run as a radix sort.
    bins_small = bins.astype(np.int16 if n_bins <= np.iinfo(np.int16).max else np.int64)
    samples = []
    for seed in seeds:
        # A random permutation, then a stable sort by bin: rows grouped by bin, in random order
        # within it, so the first quota[b] rows of bin b are a uniform draw without replacement.
        shuffled = np.random.default_rng(seed).permutation(len(confidence))
        order = shuffled[np.argsort(bins_small[shuffled], kind="stable")]
        sorted_bins = bins[order]
        rank_in_bin = np.arange(len(order)) - bin_start[sorted_bins]
        chosen = np.sort(order[rank_in_bin < quota[sorted_bins]])
        samples.append((chosen, bins[chosen]))
    return samples


def _calibration_frame(pool: pd.DataFrame, samples: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    positions = np.concatenate([chosen for chosen, _ in samples])
    frame = pool.iloc[positions].reset_index(drop=True)
    frame.insert(0, "run", np.repeat(np.arange(len(samples)), [len(chosen) for chosen, _ in samples]))
    frame["bin"] = np.concatenate([bins for _, bins in samples])
    return frame[list(CALIBRATION_COLUMNS)]


def build_calibration_set(pooled: pd.DataFrame, *, n_bins: int = 30, fraction: float = 0.1,
                          seeds: Iterable[int] = (50, 51, 52)) -> pd.DataFrame:
    """Paper Algorithm 1: a stratified sample of pooled confidences, one run per seed.

    ``pooled``: ``source_dataset, id, confidence`` (:func:`pool_confidences`); rows without a
    finite confidence cannot be binned and are skipped. The confidences are cut into ``n_bins``
    equal-width bins over their [min, max] (:func:`confidence_bins`); from each bin
    :func:`bin_quota` items are drawn without replacement with ``np.random.default_rng(seed)``.
    Returns ``run, source_dataset, id, confidence, bin`` (``run`` = index of the seed in
    ``seeds``), rows of a run in pool order.
    """
    pool = _check_pool(pooled, n_bins, fraction)
    samples = _stratified_sample(pool["confidence"].to_numpy(dtype=float), n_bins, fraction, list(seeds),
                                 "calibration pool")
    return _calibration_frame(pool, samples)


def thresholds_for_ratios(calibration_confidences, target_ratios) -> np.ndarray:
    """Confidence threshold (R,) that routes each target ratio of the calibration set.

    With the n calibration confidences sorted c_(1) <= ... <= c_(n) and k = round-half-up(r n),
    the threshold is the midpoint (c_(k) + c_(k+1)) / 2, -inf when k = 0 and +inf when k = n:
    routing ``confidence < threshold`` then sends exactly k calibration items (fewer when
    c_(k) = c_(k+1)), nothing at r = 0 and everything at r = 1 on any dataset, and the midpoint
    sits halfway between the two items it separates.
    """
    conf = np.sort(as_float_array(calibration_confidences))
    if len(conf) == 0 or not np.all(np.isfinite(conf)):
        raise ValueError(f"thresholds need finite calibration confidences; got {len(conf)} values")
    ratios = check_ratios(target_ratios, what="target ratios")
    n = len(conf)
    k = round_half_up(ratios * n)
    padded = np.concatenate([[-np.inf], conf, [np.inf]])
    below, above = padded[k], padded[k + 1]
    with np.errstate(invalid="ignore"):
        mid = (below + above) / 2
    return np.where(k == 0, -np.inf, np.where(k == n, np.inf, mid))


def tie_shares_for_ratios(calibration_confidences, target_ratios) -> np.ndarray:
    """Share (R,) of the items tied at each threshold of :func:`thresholds_for_ratios` that are routed.

    When c_(k) = c_(k+1) the threshold falls inside a group of tied calibration items; routing
    them in uniformly random order sends (k - first index of the group) / group size of them (the
    same rule the routing curves use). 0 where the threshold lies between two distinct values.
    """
    conf = np.sort(as_float_array(calibration_confidences))
    ratios = check_ratios(target_ratios, what="target ratios")
    n = len(conf)
    k = round_half_up(ratios * n)
    shares = np.zeros(len(ratios))
    inside = (k > 0) & (k < n)
    if inside.any():
        value = conf[np.clip(k - 1, 0, n - 1)]
        tied = inside & (conf[np.clip(k, 0, n - 1)] == value)
        first = np.searchsorted(conf, value, side="left")
        last = np.searchsorted(conf, value, side="right")
        shares = np.where(tied, (k - first) / np.maximum(last - first, 1), 0.0)
    return shares


def _no_generalization_rows() -> pd.DataFrame:
    """A generalization table without rows, with the column types of one with rows (``run`` an integer)."""
    return pd.DataFrame({column: pd.Series(dtype="int64" if column == "run" else "float64")
                         for column in GENERALIZATION_COLUMNS})


def routing_target(target_uq: pd.DataFrame, llm_correct, invalid: str = "drop"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a target dataset that routing on it goes over: ``confidence``, whether the SLM and the LLM
    answer right and ``valid`` (each (n,)), and which rows of ``target_uq`` they are (a mask). ``invalid``:
    the rows without a confidence are left out (``"drop"``) or kept, to be routed (``"route_first"``).
    ``target_uq``: a ``uq`` table (``id, confidence, correct, valid``); ``llm_correct``: aligned by position."""
    missing = [c for c in ROUTING_COLUMNS if c not in target_uq.columns]
    if missing:
        raise ValueError(f"target uq table: missing column(s) {missing}; has {list(target_uq.columns)}")
    conf = as_float_array(target_uq["confidence"])
    slm = as_bool_array(target_uq["correct"], what="target correct")
    llm = as_bool_array(llm_correct, what="llm_correct")
    if len(llm) != len(conf):
        raise ValueError(f"llm_correct has {len(llm)} rows, the target uq table {len(conf)}")
    if len(conf) == 0:
        raise ValueError("target uq table is empty")
    if invalid not in INVALID_RULES:
        raise ValueError(f"invalid rows: rule {invalid!r} is not one of {INVALID_RULES} (config key analysis.invalid)")
    valid = valid_mask(conf, target_uq["valid"], what="target uq table", ids=target_uq["id"])
    kept = valid if invalid == "drop" else np.ones(len(conf), dtype=bool)
    return conf[kept], slm[kept], llm[kept], valid[kept], kept


def generalization(calibration: pd.DataFrame, target_uq: pd.DataFrame, llm_correct,
                   target_ratios=TARGET_RATIOS, *, invalid: str = "drop", weights: np.ndarray | None = None,
                   level: float = 0.95) -> pd.DataFrame:
    """Routing on an unseen target with thresholds from each calibration run.

    ``calibration``: :func:`build_calibration_set` output (``run, confidence`` used).
    ``target_uq``: the target's ``uq`` table (``id, confidence, correct, valid``); ``llm_correct``:
    whether the LLM answers each of its rows right, aligned by position. ``invalid``: the target's
    rows without a confidence are left out (``"drop"``, the paper's rule) or always routed
    (``"route_first"``).
    For each run and target ratio r: ``threshold`` and tie share from the run's confidences; the
    target routes its rows with confidence < threshold, the tie share of the rows equal to it (in
    expectation, as the routing curves treat ties) and, under ``"route_first"``, every invalid row;
    ``achieved_ratio`` = routed / n; ``accuracy`` = E[SLM right on kept + LLM right on routed] / n.
    ``oracle_threshold_accuracy`` is the ground truth: the same with the thresholds taken from the
    target's own valid confidences (its routing curve at r). n: the rows of the target it is over.
    ``achieved_ratio_low/_high`` and ``accuracy_low/_high``: their ``level`` band over the target's questions,
    under the resamples (rows) of ``weights`` (``(resamples, len(target_uq))``,
    :mod:`uqroute.analysis.bootstrap`; NaN without them): the thresholds stay, the questions they meet vary.
    """
    conf, slm, llm, valid, kept = routing_target(target_uq, llm_correct, invalid)
    ratios = check_ratios(target_ratios, what="target ratios")
    if weights is not None and not kept.all():
        weights = weights[:, kept]
    n, n_invalid = len(conf), int((~valid).sum())
    if n == 0:
        log.warning("target has no valid confidence: no generalization rows")
        return _no_generalization_rows()
    order = np.argsort(conf[valid], kind="stable")
    sorted_conf = conf[valid][order]
    cum_slm = np.concatenate([[0], np.cumsum(slm[valid][order])])
    cum_llm = np.concatenate([[0], np.cumsum(llm[valid][order])])
    always_routed = int(llm[~valid].sum())

    def route(thresholds: np.ndarray, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        below = np.searchsorted(sorted_conf, thresholds, side="left")
        upto = np.searchsorted(sorted_conf, thresholds, side="right")
        routed = below + shares * (upto - below)
        slm_routed = cum_slm[below] + shares * (cum_slm[upto] - cum_slm[below])
        llm_routed = cum_llm[below] + shares * (cum_llm[upto] - cum_llm[below])
        accuracy = (always_routed + cum_slm[-1] - slm_routed + llm_routed) / n
        return (n_invalid + routed) / n, accuracy

    if len(sorted_conf):
        _, oracle = route(thresholds_for_ratios(sorted_conf, ratios), tie_shares_for_ratios(sorted_conf, ratios))
    else:
        oracle = np.full(len(ratios), always_routed / n)
    runs = []
    for run, rows in calibration.groupby("run", sort=True):
        run_confidences = rows["confidence"].to_numpy(dtype=float)
        runs.append((run, thresholds_for_ratios(run_confidences, ratios),
                     tie_shares_for_ratios(run_confidences, ratios)))
    nothing = np.full(len(ratios), np.nan)
    bands = {run: (nothing,) * 4 for run, _, _ in runs}
    if weights is not None and len(sorted_conf) and runs:
        bands = _generalization_bands(runs, sorted_conf, weights, np.flatnonzero(valid)[order], slm[valid][order],
                                      llm[valid][order], valid, llm, level)
    frames = []
    for run, thresholds, shares in runs:
        achieved, accuracy = route(thresholds, shares)
        achieved_low, achieved_high, accuracy_low, accuracy_high = bands[run]
        frames.append(pd.DataFrame({
            "run": run, "target_ratio": ratios, "threshold": thresholds, "achieved_ratio": achieved,
            "accuracy": accuracy, "oracle_threshold_accuracy": oracle, "achieved_ratio_low": achieved_low,
            "achieved_ratio_high": achieved_high, "accuracy_low": accuracy_low, "accuracy_high": accuracy_high,
        }))
    if not frames:
        log.warning("empty calibration set: no thresholds, no generalization rows")
        return _no_generalization_rows()
    return pd.concat(frames, ignore_index=True)[list(GENERALIZATION_COLUMNS)]


def _generalization_bands(runs, sorted_conf, weights, taken, slm_sorted, llm_sorted, valid, llm, level) -> dict:
    """Per run, the ``level`` bands of the achieved ratio and accuracy of its thresholds under the resamples (rows)
    of ``weights``: :func:`generalization`'s routing with every count a weighted sum per resample. ``taken``: the
    columns of ``weights`` of the valid rows in ascending confidence (``sorted_conf``). A threshold cuts the
    sorted rows at two positions (below it, up to it); the weighted sums are needed there only, so the rows are
    summed between the cuts rather than run through."""
    cuts = {run: (np.searchsorted(sorted_conf, thresholds, side="left"),
                  np.searchsorted(sorted_conf, thresholds, side="right"), shares) for run, thresholds, shares in runs}
    n = len(sorted_conf)
    starts = np.unique(np.concatenate([[0], *(np.concatenate(c[:2]) for c in cuts.values())]))
    starts = starts[starts < n]
    positions = np.append(starts, n)  # the running sums at position p are over the rows before it
    scored = np.take(weights, taken, axis=1)
    running = []
    for column in (None, slm_sorted, llm_sorted):
        summed = np.add.reduceat(scored if column is None else scored * column.astype(np.float32), starts, axis=1)
        running.append(np.concatenate([np.zeros((len(scored), 1), np.float32), np.cumsum(summed, axis=1)], axis=1))
    size = weights.sum(axis=1, dtype=np.float64)[:, None]
    unscored = weights[:, ~valid].sum(axis=1, dtype=np.float64)[:, None]
    unscored_llm = (weights[:, ~valid] @ llm[~valid].astype(np.float32))[:, None]
    bands = {}
    for run, (below, upto, shares) in cuts.items():
        below, upto = np.searchsorted(positions, below), np.searchsorted(positions, upto)
        routed, slm_routed, llm_routed = (c[:, below] + shares * (c[:, upto] - c[:, below]) for c in running)
        with np.errstate(invalid="ignore", divide="ignore"):
            achieved = (unscored + routed) / size
            accuracy = (unscored_llm + running[1][:, -1:] - slm_routed + llm_routed) / size
        bands[run] = (*interval(achieved, level), *interval(accuracy, level))
    return bands
