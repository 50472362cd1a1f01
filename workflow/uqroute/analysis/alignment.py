"""How well one UQ method's confidence lines up with the SLM's correctness.

All metrics take one ``uq/{slm}/{dataset}/{method}`` table (columns ``id, confidence,
prediction, correct, valid``). ``accuracy`` is over every row; the ranking and calibration
metrics (AUROC, PRR, AURC, ECE, Brier) are over the valid rows only, because an invalid row
has no confidence to rank. ``n - n_valid`` says how many rows that left out.

Tied confidences are never broken by row order here: the rejection and risk-coverage curves
use the expected accuracy over a random order within each tie group (as AUROC counts a tied
pair as one half), so a constant confidence scores exactly like a random one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from ..uq.tables import OUTPUT_COLUMNS as UQ_COLUMNS
from .bootstrap import BootstrapSettings, cell_seed, interval, mean_statistics, ranking_statistics, resample_weights

# The metrics that carry a bootstrap interval (``<metric>_low``, ``<metric>_high``).
INTERVAL_METRICS = ("accuracy", "auroc", "prr", "aurc", "ece", "brier")
ALIGNMENT_COLUMNS = (
    "slm", "dataset", "method", "n", "n_valid", "accuracy", "auroc", "prr", "aurc", "ece", "brier",
    "normalized", "n_correct", "n_valid_correct",
    *(f"{metric}_{bound}" for metric in INTERVAL_METRICS for bound in ("low", "high")),
    "underpowered",
)
RESAMPLE_COLUMNS = ("slm", "dataset", "method", "resample", "auroc")
COMPARISON_COLUMNS = ("slm", "dataset", "method_a", "method_b", "auroc_a", "auroc_b", "difference",
                      "difference_low", "difference_high", "p_value", "better", "underpowered")
# Floating-point slack for a probability that should be in [0, 1] (e.g. 1 + 2e-16 after a softmax).
_UNIT_TOLERANCE = 1e-9


def as_bool_array(values, *, what: str) -> np.ndarray:
    """1-D bool array from a bool/0-1 sequence; missing values are an error naming ``what``."""
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if series.isna().any():
        first = series.index[series.isna().to_numpy()][0]
        raise ValueError(f"{what}: missing value at row {first!r}")
    return series.to_numpy(dtype=bool)


def as_float_array(values) -> np.ndarray:
    """1-D float array; missing values (None, pd.NA) become NaN."""
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy(dtype=float, na_value=np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(float, copy=False)
    return np.asarray(pd.array(values, dtype="Float64").to_numpy(dtype=float, na_value=np.nan))


def valid_mask(confidence: np.ndarray, valid=None, *, what: str, ids=None) -> np.ndarray:
    """Rows that carry a usable confidence: ``valid`` (all true when None) and finite.

    A row flagged valid but without a finite confidence is a bug upstream, so it raises,
    naming the row (its id when ``ids`` is given).
    """
    finite = np.isfinite(confidence)
    if valid is None:
        return finite
    flags = as_bool_array(valid, what=f"{what} valid")
    if len(flags) != len(confidence):
        raise ValueError(f"{what}: valid has {len(flags)} rows, confidence has {len(confidence)}")
    broken = flags & ~finite
    if broken.any():
        pos = int(np.flatnonzero(broken)[0])
        row = pos if ids is None else (ids.iloc[pos] if isinstance(ids, pd.Series) else ids[pos])
        raise ValueError(f"{what}: row {row!r} is marked valid but its confidence is {confidence[pos]!r}")
    return flags


def kept_accuracy_curve(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Expected accuracy of the ``j`` most confident rows, for j = 1..n; shape (n,).

    Within a group of tied confidences the rows enter in random order, so the expected number
    of correct rows grows linearly across the group.
    """
    n = len(confidence)
    order = np.argsort(-confidence, kind="stable")
    conf = confidence[order]
    hits = correct[order].astype(float)
    starts_group = np.ones(n, dtype=bool)
    starts_group[1:] = conf[1:] != conf[:-1]
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.append(starts, n))
    group = np.cumsum(starts_group) - 1
    cum = np.concatenate([[0.0], np.cumsum(hits)])
    group_hits = cum[starts + sizes] - cum[starts]
    pos = np.arange(n)
    start = starts[group]
    expected_cum = cum[start] + (pos - start + 1) * group_hits[group] / sizes[group]
    return expected_cum / (pos + 1)


def prediction_rejection_ratio(confidence: np.ndarray, correct: np.ndarray) -> float:
    """PRR = (A_method - A_random) / (A_oracle - A_random), in (-inf, 1]; 0 random, 1 oracle.

    The rejection-accuracy curve gives, for each rejection fraction k/n (k = 0..n-1 least
    confident rows rejected), the accuracy of the kept rows; ``A`` is its area, i.e. the mean of
    that accuracy over k. A random rejection keeps the base accuracy at every k; the oracle
    rejects every wrong answer first. NaN when all answers are right or all wrong (the oracle
    is then no better than random).
    """
    n = len(correct)
    if n == 0:
        return float("nan")
    n_correct = int(correct.sum())
    area_random = n_correct / n
    kept = np.arange(1, n + 1)
    area_oracle = float(np.mean(np.minimum(kept, n_correct) / kept))
    if area_oracle - area_random <= 0:
        return float("nan")
    area_method = float(np.mean(kept_accuracy_curve(confidence, correct)))
    return (area_method - area_random) / (area_oracle - area_random)


def area_under_risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> float:
    """AURC = mean over coverage j/n (j = 1..n most confident rows kept) of the error rate.

    Lower is better; equals 1 - A_method of :func:`prediction_rejection_ratio`.
    """
    if len(correct) == 0:
        return float("nan")
    return float(np.mean(1.0 - kept_accuracy_curve(confidence, correct)))


def expected_calibration_error(probability: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / n) |accuracy_b - mean confidence_b| over ``n_bins`` equal-width bins of [0, 1].

    Bin b holds [b/B, (b+1)/B); the last bin also holds 1.0.
    """
    n = len(probability)
    if n == 0:
        return float("nan")
    if n_bins < 1:
        raise ValueError(f"ece_bins must be >= 1, got {n_bins}")
    bins = np.minimum((probability * n_bins).astype(int), n_bins - 1)
    gap = np.bincount(bins, weights=correct.astype(float) - probability, minlength=n_bins)
    return float(np.abs(gap).sum() / n)


def brier_score(probability: np.ndarray, correct: np.ndarray) -> float:
    """Brier = mean (confidence - correct)^2 over rows, in [0, 1] (NaN without rows).

    scikit-learn sums the squared errors of both classes, (1 - p) and p, and halves them, so a
    value can differ from the one-column mean in its last bits (measured: at most 2 ulp, in ~5 %
    of random tables; equal on every real table tried).
    """
    if len(probability) == 0:
        return float("nan")
    return brier_score_loss(correct, probability)


def as_probability(confidence: np.ndarray) -> tuple[np.ndarray, bool]:
    """Confidences as probabilities for ECE/Brier, and whether they had to be min-max normalized.

    Values within 1e-9 of [0, 1] are clipped. Anything further out is not a probability, so the
    whole column is min-max scaled to [0, 1] (a constant out-of-range column becomes 0.5: it
    says nothing about any row).
    """
    if len(confidence) == 0:
        return confidence, False
    lo, hi = float(confidence.min()), float(confidence.max())
    if lo >= -_UNIT_TOLERANCE and hi <= 1 + _UNIT_TOLERANCE:
        return np.clip(confidence, 0.0, 1.0), False
    if hi == lo:
        return np.full_like(confidence, 0.5), True
    return (confidence - lo) / (hi - lo), True


def alignment_metrics(uq: pd.DataFrame, *, ece_bins: int = 15, label: str = "uq table") -> dict:
    """Alignment metrics of one (slm, dataset, method) UQ table.

    ``uq``: columns ``id, confidence, prediction, correct, valid``, one row per question.
    Returns ``{n, n_valid, accuracy, auroc, prr, aurc, ece, brier, normalized}``:
    ``accuracy`` = SLM accuracy over all n rows; the others on the valid rows: ``auroc``
    (sklearn ROC AUC of confidence against correctness; NaN when one class only), ``prr``
    (:func:`prediction_rejection_ratio`), ``aurc`` (:func:`area_under_risk_coverage`),
    ``ece`` (:func:`expected_calibration_error`, ``ece_bins`` equal-width bins) and ``brier``;
    ``normalized`` says whether ECE/Brier used min-max normalized confidences
    (:func:`as_probability`). ``label`` names the table in errors.
    """
    missing = [c for c in UQ_COLUMNS if c not in uq.columns]
    if missing:
        raise ValueError(f"{label}: missing column(s) {missing}; has {list(uq.columns)}")
    confidence = as_float_array(uq["confidence"])
    correct = as_bool_array(uq["correct"], what=f"{label} correct")
    valid = valid_mask(confidence, uq["valid"], what=label, ids=uq["id"])
    n = len(uq)
    conf_v, correct_v = confidence[valid], correct[valid]
    auroc = float("nan")
    if correct_v.any() and not correct_v.all():
        auroc = float(roc_auc_score(correct_v, conf_v))
    probability, normalized = as_probability(conf_v)
    return {
        "n": n,
        "n_valid": int(valid.sum()),
        "accuracy": float(correct.mean()) if n else float("nan"),
        "auroc": auroc,
        "prr": prediction_rejection_ratio(conf_v, correct_v),
        "aurc": area_under_risk_coverage(conf_v, correct_v),
        "ece": expected_calibration_error(probability, correct_v, ece_bins),
        "brier": brier_score(probability, correct_v),
        "normalized": normalized,
    }


@dataclass(frozen=True)
class PowerSettings:
    """``analysis.power``: a cell is underpowered with fewer than ``min_class`` right or wrong answers among its
    scored rows, or an AUROC interval wider than ``max_auroc_width`` (or none at all)."""

    min_class: int = 10
    max_auroc_width: float = 0.2

    @classmethod
    def from_config(cls, settings) -> "PowerSettings":
        return cls(**dict(settings or {}))


def metric_resamples(uq: pd.DataFrame, weights: np.ndarray, *, ece_bins: int = 15,
                     label: str = "uq table") -> dict[str, np.ndarray]:
    """Each interval metric of one UQ table under each resample (row) of ``weights`` (``(resamples,
    len(uq))``, columns aligned with ``uq``'s rows): accuracy over all rows, the others over the valid rows, as
    :func:`alignment_metrics` (ECE and Brier on the same probabilities). Each ``(resamples,)``."""
    confidence = as_float_array(uq["confidence"])
    correct = as_bool_array(uq["correct"], what=f"{label} correct")
    valid = valid_mask(confidence, uq["valid"], what=label, ids=uq["id"])
    conf_v, correct_v, scored = confidence[valid], correct[valid], np.flatnonzero(valid)
    probability, _ = as_probability(conf_v)
    return {**ranking_statistics(conf_v, correct_v, weights, scored),
            **mean_statistics(correct, probability, scored, weights, ece_bins)}


def _aligned_tables(slm: str, dataset: str, tables: list[tuple[str, pd.DataFrame]]) -> tuple[np.ndarray, list]:
    """The cell's question ids in id order, and each method's table in that order (every method of a cell scores
    the same questions; a table that does not is an error naming it)."""
    ids = np.sort(tables[0][1]["id"].astype(str).to_numpy())
    aligned = []
    for method, table in tables:
        order = np.argsort(table["id"].astype(str).to_numpy(), kind="stable")
        if not np.array_equal(table["id"].astype(str).to_numpy()[order], ids):
            raise ValueError(f"uq/{slm}/{dataset}/{method}: its questions differ from those of "
                             f"uq/{slm}/{dataset}/{tables[0][0]} (the bootstrap resamples a cell's questions once)")
        aligned.append((method, table.iloc[order].reset_index(drop=True)))
    return ids, aligned


def _comparisons(slm: str, dataset: str, resampled: dict[str, np.ndarray], points: dict[str, float],
                 weak: dict[str, bool], level: float) -> list[dict]:
    """Every pair of methods of one cell: their AUROC difference and its paired-bootstrap interval and p-value;
    ``underpowered`` where either method's cell is (``weak``)."""
    rows = []
    methods = list(resampled)
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            difference = resampled[a] - resampled[b]
            defined = difference[np.isfinite(difference)]
            low, high = interval(difference, level)
            p_value, better = float("nan"), None
            if np.isfinite(low):
                # Two-sided: how rarely the resampled difference falls on the far side of zero.
                p_value = float(min(1.0, 2 * (min((defined <= 0).sum(), (defined >= 0).sum()) + 1)
                                    / (len(defined) + 1)))
                better = a if low > 0 else (b if high < 0 else None)
            rows.append({"slm": slm, "dataset": dataset, "method_a": a, "method_b": b, "auroc_a": points[a],
                         "auroc_b": points[b], "difference": points[a] - points[b], "difference_low": float(low),
                         "difference_high": float(high), "p_value": p_value, "better": better,
                         "underpowered": bool(weak[a] or weak[b])})
    return rows


def alignment_tables(cells: Iterable[tuple[str, str, str, pd.DataFrame]], *, ece_bins: int = 15,
                     bootstrap=None, power: PowerSettings | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``metrics/alignment.parquet`` and ``metrics/comparisons.parquet`` from ``(slm, dataset, method, uq_table)``
    cells.

    Alignment: the contract ``slm, dataset, method, n, n_valid, accuracy, auroc, prr, aurc, ece, brier``, then
    ``normalized``, ``n_correct`` (all rows) and ``n_valid_correct`` (scored rows), a percentile bootstrap
    interval ``<metric>_low/_high`` of each metric (:mod:`uqroute.analysis.bootstrap`; the same resamples of the
    cell's questions for every method) and ``underpowered`` (:class:`PowerSettings`). Comparisons: every pair
    of methods of an (SLM, dataset), the AUROC difference (each method over its own scored rows, as in the
    alignment table), its paired interval and two-sided p-value, and ``better``: the method whose AUROC is
    higher at the interval's level, null when the interval covers 0. Third: every cell's AUROC under every
    resample (``slm, dataset, method, resample, auroc``), from which statements about methods are bootstrapped
    (:mod:`uqroute.analysis.verdicts`).
    """
    bootstrap = bootstrap or BootstrapSettings()
    power = power or PowerSettings()
    by_cell: dict[tuple[str, str], list[tuple[str, pd.DataFrame]]] = {}
    for slm, dataset, method, uq in cells:
        by_cell.setdefault((slm, dataset), []).append((method, uq))
    rows, comparisons, resample_frames = [], [], []
    for (slm, dataset), tables in by_cell.items():
        ids, aligned = _aligned_tables(slm, dataset, tables)
        weights = resample_weights(len(ids), bootstrap.resamples, cell_seed(bootstrap.seed, slm, dataset))
        resampled, points, weak = {}, {}, {}
        for method, uq in aligned:
            label = f"uq/{slm}/{dataset}/{method}"
            row = {"slm": slm, "dataset": dataset, "method": method,
                   **alignment_metrics(uq, ece_bins=ece_bins, label=label)}
            valid = valid_mask(as_float_array(uq["confidence"]), uq["valid"], what=label)
            correct = uq["correct"].to_numpy(dtype=bool)
            row["n_correct"], row["n_valid_correct"] = int(correct.sum()), int(correct[valid].sum())
            samples = metric_resamples(uq, weights, ece_bins=ece_bins, label=label)
            for metric in INTERVAL_METRICS:
                row[f"{metric}_low"], row[f"{metric}_high"] = map(float, interval(samples[metric], bootstrap.level))
            width = row["auroc_high"] - row["auroc_low"]
            row["underpowered"] = bool(min(row["n_valid_correct"], row["n_valid"] - row["n_valid_correct"])
                                       < power.min_class or not width <= power.max_auroc_width)
            rows.append(row)
            resampled[method], points[method], weak[method] = samples["auroc"], row["auroc"], row["underpowered"]
            resample_frames.append(pd.DataFrame({"slm": slm, "dataset": dataset, "method": method,
                                                 "resample": np.arange(bootstrap.resamples, dtype=np.int64),
                                                 "auroc": samples["auroc"]}))
        comparisons += _comparisons(slm, dataset, resampled, points, weak, bootstrap.level)
    resampled_auroc = (pd.concat(resample_frames, ignore_index=True)[list(RESAMPLE_COLUMNS)] if resample_frames
                       else pd.DataFrame(columns=list(RESAMPLE_COLUMNS)))
    return (pd.DataFrame(rows, columns=list(ALIGNMENT_COLUMNS)),
            pd.DataFrame(comparisons, columns=list(COMPARISON_COLUMNS)), resampled_auroc)


def alignment_table(cells: Iterable[tuple[str, str, str, pd.DataFrame]], *, ece_bins: int = 15, bootstrap=None,
                    power: PowerSettings | None = None) -> pd.DataFrame:
    """``metrics/alignment.parquet`` alone (:func:`alignment_tables`)."""
    return alignment_tables(cells, ece_bins=ece_bins, bootstrap=bootstrap, power=power)[0]


def cells_without_confidence(alignment: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(slm, dataset, method) cells of an alignment table where no answer got a valid confidence."""
    empty = alignment.loc[alignment["n_valid"] == 0, ["slm", "dataset", "method"]]
    return set(empty.itertuples(index=False, name=None))
