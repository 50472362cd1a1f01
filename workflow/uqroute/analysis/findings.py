"""The numbers behind the paper's observations and insights, one row per finding.

Each row of :func:`findings_table` is ``finding, slm, llm, method, value, description``, then ``low, high,
verdict``; a ``slm``/``llm``/``method`` of ``"all"`` means the value is averaged over that axis, ``None`` that
the axis does not apply. The descriptive rows (mean AUROC, mean ranks, distances, ...) have no interval; the
paper's observations and insights made testable (:mod:`uqroute.analysis.verdicts`) carry their interval and a
verdict: holds, does not hold, or undecided.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from uqroute.analysis.alignment import cells_without_confidence

FINDING_COLUMNS = ("finding", "slm", "llm", "method", "value", "description", "low", "high", "verdict")
DISTANCE_COLUMNS = ("slm", "comparison", "fixed", "mean_distance", "n_pairs")
ALL = "all"


def scaled_confidences(uq_pooled: pd.DataFrame) -> pd.DataFrame:
    """Valid rows with ``scaled`` = confidence min-max scaled to [0, 1] per (slm, method)."""
    missing = [c for c in ("slm", "dataset", "method", "confidence") if c not in uq_pooled.columns]
    if missing:
        raise ValueError(f"pooled uq table: missing column(s) {missing}; has {list(uq_pooled.columns)}")
    conf = uq_pooled["confidence"].to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(conf)
    if "valid" in uq_pooled.columns:
        keep &= uq_pooled["valid"].to_numpy(dtype=bool, na_value=False)
    table = uq_pooled.loc[keep, ["slm", "dataset", "method", "confidence"]].copy()
    by = table.groupby(["slm", "method"], sort=False)["confidence"]
    lo, hi = by.transform("min"), by.transform("max")
    span = (hi - lo).to_numpy()
    table["scaled"] = np.where(span > 0, (table["confidence"] - lo).to_numpy() / np.where(span > 0, span, 1.0), 0.5)
    return table


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between the empirical distributions of two *sorted* samples.

    W1 = integral |F_a(x) - F_b(x)| dx, the quantity ``scipy.stats.wasserstein_distance``
    computes; taking sorted input lets every pair reuse one sort per sample, and the merge of
    two sorted runs is linear with a stable (run-detecting) sort.
    """
    values = np.concatenate([a, b])
    values.sort(kind="stable")
    cdf_a = np.searchsorted(a, values[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, values[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(values)))


def _mean_pairwise_distance(samples: list[np.ndarray]) -> tuple[float, int]:
    samples = [np.sort(s) for s in samples]
    pairs = [wasserstein_sorted(a, b) for a, b in combinations(samples, 2)]
    return (float(np.mean(pairs)) if pairs else float("nan")), len(pairs)


def distribution_distances(uq_pooled: pd.DataFrame) -> pd.DataFrame:
    """How much the confidence distribution moves with the dataset vs with the UQ method (Insight 1).

    ``uq_pooled``: ``slm, dataset, method, confidence`` (and ``valid``, if present, to drop
    invalid rows), one row per question. Each method's confidences are min-max scaled to [0, 1]
    over all datasets of its SLM, so the methods' different units (probabilities, reciprocal
    perplexities, ...) become comparable while each keeps its shape; a rank transform would make
    every method's pooled distribution uniform and hide exactly the shape differences compared
    here. Then, on that common scale, the 1-Wasserstein distance (:func:`wasserstein_sorted`) is
    averaged over every pair of datasets for a fixed (slm, method) (``comparison =
    "between_datasets"``, ``fixed`` = the method) and over every pair of methods for a fixed
    (slm, dataset) (``"between_methods"``, ``fixed`` = the dataset).
    Columns: ``slm, comparison, fixed, mean_distance, n_pairs``.
    """
    table = scaled_confidences(uq_pooled)
    rows = []
    for (slm, method), group in table.groupby(["slm", "method"], sort=True):
        samples = [g.to_numpy() for _, g in group.groupby("dataset", sort=True)["scaled"]]
        mean, n_pairs = _mean_pairwise_distance(samples)
        rows.append((slm, "between_datasets", method, mean, n_pairs))
    for (slm, dataset), group in table.groupby(["slm", "dataset"], sort=True):
        samples = [g.to_numpy() for _, g in group.groupby("method", sort=True)["scaled"]]
        mean, n_pairs = _mean_pairwise_distance(samples)
        rows.append((slm, "between_methods", dataset, mean, n_pairs))
    return pd.DataFrame(rows, columns=list(DISTANCE_COLUMNS))


def _rows(frame: pd.DataFrame, finding: str, description: str, *, slm=ALL, llm=None, method=ALL) -> pd.DataFrame:
    """Finding rows from ``frame`` (a ``value`` column plus whichever of slm/llm/method vary)."""
    out = pd.DataFrame({"finding": finding, "value": frame["value"].to_numpy(dtype=float)})
    for column, default in (("slm", slm), ("llm", llm), ("method", method)):
        out[column] = frame[column].to_numpy() if column in frame.columns else default
    out["description"] = description
    out["low"], out["high"], out["verdict"] = np.nan, np.nan, None
    return out[list(FINDING_COLUMNS)]


def _no_confidence_index(alignment: pd.DataFrame | None) -> pd.MultiIndex:
    """:func:`cells_without_confidence` as an index (empty without an alignment table)."""
    cells = sorted(cells_without_confidence(alignment)) if alignment is not None and "n_valid" in alignment else []
    return pd.MultiIndex.from_tuples(cells, names=["slm", "dataset", "method"])


def _without(frame: pd.DataFrame, cells: pd.MultiIndex) -> pd.DataFrame:
    if not len(cells):
        return frame
    keys = pd.MultiIndex.from_frame(frame[["slm", "dataset", "method"]])
    return frame[~keys.isin(cells)]


def findings_table(alignment: pd.DataFrame | None, routing_metrics: pd.DataFrame | None,
                   relative: pd.DataFrame | None, generalization: pd.DataFrame | None, *,
                   distances: pd.DataFrame | None = None, statements: pd.DataFrame | None = None) -> pd.DataFrame:
    """All findings that the given tables support (a None table skips its findings).

    Inputs: ``alignment`` = metrics/alignment.parquet; ``routing_metrics`` =
    metrics/routing.parquet; ``relative`` = :func:`~uqroute.analysis.routing.relative_accuracy`
    rows stacked with ``slm, llm, dataset, method`` columns; ``generalization`` = generalization
    tables stacked with ``slm, llm, dataset, method`` columns; ``distances`` =
    :func:`distribution_distances`.
    Findings: ``mean_auroc`` and ``mean_auroc_rank`` per method (rank 1 = highest AUROC within
    each (slm, dataset), ties averaged; Obs. 1); ``mean_routing_rank`` per (llm, method), the rank
    of the area under the accuracy-vs-ratio curve within each (slm, llm, dataset) (Obs. 3; the
    area, not APGR, because APGR reverses its order where the "LLM" is the weaker model);
    ``relative_accuracy_at_80`` per (slm, llm, method), mean over datasets of SLM/LLM accuracy on
    the 20 % most confident queries (Obs. 4); ``distance_between_datasets``,
    ``distance_between_methods`` and their ``distance_ratio`` per slm: mean Wasserstein distance
    between datasets for a fixed method, between methods for a fixed dataset, and the first over
    the second (< 1: the dataset moves the distribution less than the method; Insight 1);
    ``ratio_fidelity_error`` per (slm, method), mean |achieved - target| routing ratio under
    leave-one-out calibration over the target ratios strictly between 0 and 1 (0 and 1 are met
    by construction), and ``calibration_accuracy_gap`` per (slm, llm, method), mean |accuracy -
    ground-truth accuracy| (Insight 2).

    ``statements``: :func:`uqroute.analysis.verdicts.statements`, the testable rows, placed first.
    Cells whose method gave no valid confidence at all (``n_valid == 0`` in ``alignment``) are
    left out of every finding: their routing order is arbitrary, not the method's.
    """
    parts = [statements[list(FINDING_COLUMNS)]] if statements is not None and len(statements) else []
    no_confidence = _no_confidence_index(alignment)
    if alignment is not None and len(alignment):
        cells = alignment.dropna(subset=["auroc"]).copy()
        cells["rank"] = cells.groupby(["slm", "dataset"])["auroc"].rank(ascending=False, method="average")
        per_method = (cells.groupby("method", sort=True)
                      .agg(value=("auroc", "mean"), rank=("rank", "mean")).reset_index())
        parts.append(_rows(per_method, "mean_auroc",
                           "AUROC of confidence vs SLM correctness, mean over SLMs and datasets"))
        parts.append(_rows(per_method.assign(value=per_method["rank"]), "mean_auroc_rank",
                           "rank of the method's AUROC among methods (1 = best), mean over (SLM, dataset)"))
    if routing_metrics is not None and len(routing_metrics):
        cells = _without(routing_metrics, no_confidence).dropna(subset=["area"]).copy()
        cells["value"] = cells.groupby(["slm", "llm", "dataset"])["area"].rank(ascending=False, method="average")
        per_method = cells.groupby(["llm", "method"], sort=True)["value"].mean().reset_index()
        parts.append(_rows(per_method, "mean_routing_rank",
                           "rank of the method's area under the accuracy-vs-routing-ratio curve among "
                           "methods (1 = best), mean over (SLM, dataset)"))
    if relative is not None and len(relative):
        relative = _without(relative, no_confidence)
        at80 = relative[np.isclose(relative["excluded_pct"].to_numpy(dtype=float), 80)]
        per_cell = at80.groupby(["slm", "llm", "method"], sort=True)["relative_accuracy"].mean()
        parts.append(_rows(per_cell.rename("value").reset_index(), "relative_accuracy_at_80",
                           "SLM accuracy / LLM accuracy on the 20% most confident queries, mean over datasets"))
    if distances is not None and len(distances):
        means = distances.groupby(["slm", "comparison"])["mean_distance"].mean().unstack("comparison")
        scale = "confidences min-max scaled per (SLM, method)"
        parts.append(_rows(means["between_datasets"].rename("value").reset_index(), "distance_between_datasets",
                           f"mean Wasserstein distance between datasets' distributions, method fixed; {scale}"))
        parts.append(_rows(means["between_methods"].rename("value").reset_index(), "distance_between_methods",
                           f"mean Wasserstein distance between methods' distributions, dataset fixed; {scale}"))
        ratio = (means["between_datasets"] / means["between_methods"]).rename("value").reset_index()
        parts.append(_rows(ratio, "distance_ratio",
                           "distance_between_datasets / distance_between_methods (< 1: the method shapes "
                           "the distribution more than the dataset)"))
    if generalization is not None and len(generalization):
        gen = _without(generalization, no_confidence)
        gen = gen.assign(
            ratio_error=(gen["achieved_ratio"] - gen["target_ratio"]).abs(),
            accuracy_error=(gen["accuracy"] - gen["oracle_threshold_accuracy"]).abs(),
        )
        inner = gen[(gen["target_ratio"] > 0) & (gen["target_ratio"] < 1)]
        fidelity = inner.groupby(["slm", "method"], sort=True)["ratio_error"].mean().rename("value").reset_index()
        parts.append(_rows(fidelity, "ratio_fidelity_error",
                           "|achieved - target| routing ratio with leave-one-out calibration thresholds, "
                           "mean over datasets, runs and target ratios in (0, 1)", llm=ALL))
        gap = gen.groupby(["slm", "llm", "method"], sort=True)["accuracy_error"].mean().rename("value").reset_index()
        parts.append(_rows(gap, "calibration_accuracy_gap",
                           "|accuracy with calibration thresholds - accuracy with the target's own thresholds|, "
                           "mean over datasets, runs and target ratios"))
    if not parts:
        return pd.DataFrame(columns=list(FINDING_COLUMNS))
    found = pd.concat(parts, ignore_index=True)
    # One Arrow type whether or not any row is descriptive (an object column of text and nulls would store as
    # `string`, text alone as `large_string`): docs/contracts.md documents `large_string`.
    found["verdict"] = found["verdict"].astype("str")
    return found
