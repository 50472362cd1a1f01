"""Bootstrap over questions, vectorised: intervals for every per-cell number, bands for every curve.

A cell's questions are resampled with replacement ``resamples`` times. A resample is a row of multiplicities
(how often each question was drawn): weights are ``(resamples, questions)`` arrays, and every statistic is a
weighted sum over the cell's questions, computed for many resamples at once: no loop over single resamples,
no copy of the data. The resamples of a cell depend on
the seed and the cell's (SLM, dataset) only (:func:`resample_counts`), so every method, LLM and table of one
cell sees the same resamples: intervals of different methods are paired, and a difference between two methods
is bootstrapped on the same questions.

The weighted statistics equal scikit-learn's with ``sample_weight`` (tests/test_bootstrap.py checks AUROC,
Brier and accuracy against it) and, with every weight 1, the point estimates of
:mod:`uqroute.analysis.alignment` and :mod:`uqroute.analysis.routing`, ties included: a group of tied
confidences (a question drawn twice is tied with itself) counts at its expected value, as there.

Intervals are percentile intervals. A resample with one class only has no AUROC (nor PRR): the interval is
over the resamples that have one, and is null when fewer than half do (a cell too small to say anything).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

# Below this share of resamples with a defined value, an interval is not given.
MIN_DEFINED_SHARE = 0.5
# Elements in one block of resamples: the dozen (resamples, segments) arrays of a block fit in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class BootstrapSettings:
    """``analysis.bootstrap`` of the config: how many resamples for the per-cell intervals (``resamples``) and for
    the bands of curves (``curve_resamples``: the first of the same resamples; a band drawn on a figure needs
    fewer, and a curve holds many points), the seed, the interval's level."""

    resamples: int = 1000
    curve_resamples: int = 200
    seed: int = 50
    level: float = 0.95

    @property
    def for_curves(self) -> "BootstrapSettings":
        return BootstrapSettings(min(self.curve_resamples, self.resamples), self.curve_resamples, self.seed,
                                 self.level)

    @classmethod
    def from_config(cls, settings) -> "BootstrapSettings":
        return cls(**dict(settings or {}))

    def __post_init__(self) -> None:
        if self.resamples < 1 or self.curve_resamples < 1 or not 0 < self.level < 1:
            raise ValueError(f"analysis.bootstrap: resamples must be >= 1 and level in (0, 1); got {self}")


def cell_seed(seed: int, *names: str) -> int:
    """The resampling seed of one cell: the config's seed and the cell's names (stable across runs and
    machines, unlike ``hash``)."""
    return int(seed) * 1_000_003 + zlib.crc32("/".join(names).encode())


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` float32 multiplicities: row b counts how often each of n questions was drawn in the
    b-th resample of n draws with replacement (counts stay below 2**24: float32 holds them and their sums
    exactly)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n), dtype=np.int32)
    counts = np.empty((resamples, n), dtype=np.float32)
    for b in range(resamples):  # one count of n values per resample: it stays in cache, a flat count would not
        counts[b] = np.bincount(draws[b], minlength=n)
    return counts


def question_weights(ids, settings: BootstrapSettings, *cell: str) -> np.ndarray:
    """A cell's resample weights (:func:`resample_weights`) for the rows whose question ids are ``ids``, in that
    order: the resamples draw from the cell's questions in id order, so every table of the cell, whatever its
    row order, gets the same resamples."""
    ids = np.asarray(ids).astype(str)
    order = np.argsort(ids, kind="stable")
    drawn = resample_weights(len(ids), settings.resamples, cell_seed(settings.seed, *cell))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return np.take(drawn, rank, axis=1)


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of ``samples`` (``(resamples,)`` or ``(resamples, k)``), over the
    resamples where it is defined (finite); NaN where fewer than :data:`MIN_DEFINED_SHARE` of them are."""
    samples = np.asarray(samples, dtype=float)
    flat = samples.reshape(len(samples), -1)
    defined = np.isfinite(flat)
    share = defined.mean(axis=0) if len(flat) else np.zeros(flat.shape[1])
    enough = share >= MIN_DEFINED_SHARE
    tail = (1 - level) / 2
    low = np.full(flat.shape[1], np.nan)
    high = np.full(flat.shape[1], np.nan)
    # Columns defined in every resample at once; the others (few: a curve's far end, say) one by one, as
    # nanquantile would, only much faster.
    complete = enough & defined.all(axis=0)
    if complete.any():
        low[complete], high[complete] = np.quantile(flat[:, complete], [tail, 1 - tail], axis=0)
    for column in np.flatnonzero(enough & ~complete):
        low[column], high[column] = np.quantile(flat[defined[:, column], column], [tail, 1 - tail])
    shape = samples.shape[1:]
    return low.reshape(shape), high.reshape(shape)


# ---- segments: runs of questions that a statistic may treat as one ------------------------------------------
# Sorted by confidence, a cell's questions fall into groups of tied confidence. The ranking statistics and the
# routing curves only need, per resample, sums over these groups, and a run of consecutive groups whose rows all
# carry the same values (all right, say) may be summed as one: within such a run every sum grows linearly with
# the weight, so the statistics computed from the run's totals are exact. Segments are these runs; a tie group
# whose rows differ stays a segment of its own. On real tables segments are a half to a third as many as rows.


def segments(key: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by ``key`` (ascending, stable), cut into segments by ``values`` (``(k, n)``, one row per value
    the statistic sums). Returns the row order, each segment's first position in that order, and whether each
    segment's rows all carry the same values."""
    order = np.argsort(key, kind="stable")
    ordered_key, ordered_values = key[order], values[:, order]
    n = len(order)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = ordered_key[1:] != ordered_key[:-1]
    group = np.cumsum(new_group) - 1
    group_starts = np.flatnonzero(new_group)
    # A group is pure when every row equals its first row in every value.
    differs = (ordered_values != ordered_values[:, group_starts[group]]).any(axis=0)
    pure = ~np.bincount(group, weights=differs, minlength=len(group_starts)).astype(bool)
    # A segment starts at a group that is mixed, follows a mixed group, or carries other values than the last.
    starts_segment = np.ones(len(group_starts), dtype=bool)
    changed = (ordered_values[:, group_starts[1:]] != ordered_values[:, group_starts[:-1]]).any(axis=0)
    starts_segment[1:] = changed | ~pure[1:] | ~pure[:-1]
    return order, group_starts[starts_segment], pure[starts_segment]


def _running_sums(drawn: np.ndarray, starts: np.ndarray, pure: np.ndarray, values: np.ndarray,
                  per_segment: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per resample (row of ``drawn``, columns in segment order) and segment: the segment's weight, and the
    running weight and running weighted sum of each of ``values`` (``(k, n)`` in the same order) through the
    segment's end. A pure segment's sum is its weight times its value (``per_segment``)."""
    if len(starts) * 8 < drawn.shape[1]:  # few segments (confidences on a coarse scale): sum each one
        size = np.add.reduceat(drawn, starts, axis=1)
        sums = ([size * value for value in per_segment] if pure.all()
                else [np.add.reduceat(drawn * value, starts, axis=1) for value in values])
        return size, np.cumsum(size, axis=1), [np.cumsum(column, axis=1) for column in sums]
    # Else running sums over the rows, read at the segments' ends: NumPy sums many short runs slowly.
    ends = np.append(starts[1:], drawn.shape[1]) - 1
    running_weight = np.cumsum(drawn, axis=1)
    if len(ends) < drawn.shape[1]:
        running_weight = np.take(running_weight, ends, axis=1)
    size = np.diff(running_weight, axis=1, prepend=np.float32(0))
    if pure.all():
        running = [np.cumsum(size * value, axis=1) for value in per_segment]
    else:
        running = [np.take(np.cumsum(drawn * value, axis=1), ends, axis=1) for value in values]
    return size, running_weight, running


def ranking_statistics(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray,
                       columns: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """AUROC, PRR and AURC of ``confidence`` against ``correct`` under each resample (row) of ``weights``;
    each ``(resamples,)``. ``columns``: the columns of ``weights`` that hold these rows (all of them by
    default), so that a subset of a cell's questions (the valid ones) is scored without a copy of its weights.
    Equal to :mod:`uqroute.analysis.alignment`'s functions on the resampled questions, ties included: a tied (right, wrong) pair counts one half in AUROC, and the rejection curve behind PRR and
    AURC takes the expected accuracy of a tie group in random order.

    Segments (above) run from the most confident down; per resample, a segment of weight m with h right
    answers, below segments of weight a with c right answers, adds (m - h)(c + h / 2) ranked (right, wrong)
    pairs to AUROC, and to the rejection curve's area (the mean over j = 1..N of the expected accuracy of the
    j most confident questions, N the resample's size)
    sum_{j=a+1}^{a+m} (c + (j - a) h / m) / j = (c - a h / m) (H[a + m] - H[a]) + h, H the harmonic numbers.
    AUROC and PRR are NaN in a resample with one class only; everything is NaN in an empty one.
    """
    resamples = weights.shape[0]
    if not len(confidence):
        nothing = np.full(resamples, np.nan)
        return {"auroc": nothing, "prr": nothing.copy(), "aurc": nothing.copy()}
    right_rows = np.asarray(correct, dtype=np.float32)
    order, starts, pure = segments(-np.asarray(confidence, dtype=float), right_rows[None, :])
    right_rows = right_rows[order]
    share_right = right_rows[starts]  # a pure segment's share of right answers
    taken = order if columns is None else np.asarray(columns)[order]
    harmonic = _harmonic(len(order))
    pairs, area = np.zeros(resamples), np.zeros(resamples)
    total, n_right = np.zeros(resamples), np.zeros(resamples)
    block = max(1, BLOCK_ELEMENTS // len(order))
    for first in range(0, resamples, block):
        rows = slice(first, first + block)
        size, a, (c,) = _running_sums(np.take(weights[rows], taken, axis=1), starts, pure, right_rows[None, :],
                                      share_right[None, :])
        total[rows], n_right[rows] = a[:, -1], c[:, -1]
        if total[rows].max() >= len(harmonic):  # a resample that drew more than one question per row
            harmonic = _harmonic(2 * int(total[rows].max()))
        right = np.diff(c, axis=1, prepend=np.float32(0))
        span = np.take(harmonic, a.astype(np.int32))
        a -= size
        span -= np.take(harmonic, a.astype(np.int32))
        c -= right
        half_tied = right * 0.5
        half_tied += c
        pairs[rows] = np.einsum("bs,bs->b", size - right, half_tied, dtype=np.float64)
        share = share_right if pure.all() else np.divide(right, size, out=np.zeros_like(right), where=size > 0)
        a *= share
        c -= a
        area[rows] = np.einsum("bs,bs->b", c, span, dtype=np.float64)
    n_wrong = total - n_right
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = pairs / (n_right * n_wrong)
        area = (area + n_right) / total
        random = n_right / total
        k = n_right.astype(np.int64)
        oracle = (k + k * (harmonic[total.astype(np.int64)] - harmonic[k])) / total
        prr = np.where(oracle - random > 0, (area - random) / (oracle - random), np.nan)
    both = (n_right > 0) & (n_wrong > 0)
    return {"auroc": np.where(both, auroc, np.nan), "prr": np.where(both, prr, np.nan),
            "aurc": np.where(total > 0, 1.0 - area, np.nan)}


def _harmonic(n: int) -> np.ndarray:
    """H[k] = 1 + 1/2 + ... + 1/k for k = 0..n (float32, as the segment sums: a difference of two is exact to
    ~1e-7 relative)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))]).astype(np.float32)


def mean_statistics(correct: np.ndarray, probability: np.ndarray, scored: np.ndarray, weights: np.ndarray,
                    n_bins: int) -> dict[str, np.ndarray]:
    """Per resample (row of ``weights``): ``accuracy`` (the weighted mean of ``correct`` over all rows), and over
    the ``scored`` rows (indices; ``probability`` is theirs) ``brier`` and ``ece`` (equal-width bins of [0, 1],
    as :func:`~uqroute.analysis.alignment.expected_calibration_error`). All are ratios of weighted sums, so
    one matrix product of the weights with the summed columns gives them all."""
    correct = np.asarray(correct, dtype=np.float32)
    probability = np.asarray(probability, dtype=np.float32)
    columns = np.zeros((len(correct), 3 + n_bins), dtype=np.float32)
    columns[:, 0] = correct
    columns[scored, 1] = 1.0
    columns[scored, 2] = (probability - correct[scored]) ** 2
    bins = np.minimum((probability * n_bins).astype(int), n_bins - 1)
    columns[scored, 3 + bins] = correct[scored] - probability
    sums = (weights @ columns).astype(np.float64)
    size = weights.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": sums[:, 0] / size, "brier": sums[:, 2] / sums[:, 1],
                "ece": np.abs(sums[:, 3:]).sum(axis=1) / sums[:, 1]}


# ---- curves: expected sums in routing order ----------------------------------------------------------------


def expected_sums_at(confidence: np.ndarray, valid: np.ndarray, weights: np.ndarray, values: list[np.ndarray],
                     steps: np.ndarray) -> list[np.ndarray]:
    """Per step and resample, the expected weighted sum of each of ``values`` over the first ``steps[s, b]``
    units of weight in routing order (ascending confidence, invalid rows first as one group, ties in random
    order): :func:`~uqroute.analysis.routing.expected_routed_sums` of the weighted sample; each
    ``(steps, resamples)``. Within a segment every sum grows linearly with the weight, so the expected sums
    are interpolated between the segments' running totals."""
    resamples = weights.shape[0]
    stacked = np.array([np.asarray(v, dtype=np.float32) for v in values])
    order, starts, pure = segments(np.where(valid, confidence, -np.inf), stacked)
    stacked = stacked[:, order]
    _, weight, sums = _running_sums(np.take(weights, order, axis=1), starts, pure, stacked, stacked[:, starts])
    # One interpolation for all resamples: resample b's running weights shifted by b times (the largest size + 1)
    # increase along the flattened rows. A resample of a cell's questions can weigh more than the rows here (the
    # valid ones, say), so the shift is the largest size.
    shift = float(weights.sum(axis=1).max(initial=0)) + 1.0
    offsets = np.arange(resamples)[:, None] * shift
    x = np.zeros((resamples, weight.shape[1] + 1))
    x[:, 1:] = weight
    x += offsets
    x = x.ravel()
    query = (np.asarray(steps, dtype=float).T + offsets).ravel()
    upper = np.minimum(np.searchsorted(x, query, side="left"), len(x) - 1)  # the first running weight >= the step
    lower = np.maximum(upper - 1, 0)
    span = x[upper] - x[lower]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(span > 0, (query - x[lower]) / span, 1.0)
    out = []
    for through in sums:
        y = np.zeros((resamples, through.shape[1] + 1))
        y[:, 1:] = through
        y = y.ravel()
        out.append((y[lower] + fraction * (y[upper] - y[lower])).reshape(resamples, -1).T)
    return out
