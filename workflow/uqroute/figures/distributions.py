"""Confidence distributions per SLM and method, pooled and per dataset: paper Figure 4."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from scipy.stats import gaussian_kde

from ..datasets import DATASET_NAMES
from ..uq.registry import method_label

from .layout import (
    Facets,
    dataset_color,
    dataset_handles,
    method_order,
    note,
    ordered,
    require_columns,
    save_figure,
)


def _density(sample: np.ndarray, grid: np.ndarray, lo: float, hi: float, min_bandwidth: float = 0.0) -> np.ndarray:
    """Gaussian KDE of ``sample`` on ``grid``, reflected at [lo, hi].

    Confidences are bounded and often pile up at a bound (probabilities near 1), where a plain
    KDE leaks half its mass past the bound and flattens the peak; reflection keeps the mass
    inside. Half of Scott's bandwidth keeps the bimodal shapes the pooled histogram shows.
    The bandwidth is at least ``min_bandwidth`` (confidence units; the histogram's bin width),
    so a tight cluster or a few discrete levels do not become a needle that dwarfs every other
    curve. ``sample`` needs two distinct values.
    """
    kde = gaussian_kde(sample)
    std = float(np.std(sample, ddof=1))
    kde.set_bandwidth(max(0.5 * kde.scotts_factor(), min_bandwidth / std))
    return kde(grid) + kde(2 * lo - grid) + kde(2 * hi - grid)


def _histogram_edges(values: np.ndarray, pad: float, n_bins: int = 30) -> np.ndarray:
    """``n_bins`` equal bins over the range; for values on a coarse regular grid (verbalized
    confidences in steps of 10 %), one bin per grid step, which equal bins would show as spikes
    amid empty bins. Irregular discrete values (0.999 next to 1.0) get the equal bins: a bin
    per level would be a needle of enormous density."""
    levels = np.unique(values)
    if len(levels) == 1:
        return np.array([levels[0] - pad, levels[0] + pad])
    step = float(np.min(np.diff(levels)))
    span = float(levels[-1] - levels[0])
    steps = (levels - levels[0]) / step
    if span / step <= n_bins and np.allclose(steps, np.round(steps), atol=1e-6):
        n = int(round(span / step))
        return levels[0] + (np.arange(n + 2) - 0.5) * step
    return np.linspace(levels[0], levels[-1], n_bins + 1)


def plot_confidence_distributions(uq_pooled: pd.DataFrame, out_stem,
                                  panels: Sequence[tuple[str, str]] | None = None) -> list[Path]:
    """Confidence distributions, a panel per (SLM, method) (Fig. 4).

    ``panels``: the (SLM, method) panels to draw, in this order and in one row (the paper's Fig. 4:
    Phi-3.5-mini with the OOD probe, then Llama-3.1-8B with perplexity); default every SLM x method.

    ``uq_pooled``: ``slm, dataset, method, confidence`` (+ ``valid``) rows. Grey histogram =
    all datasets pooled; one kernel-density curve per dataset (:func:`_density`; skipped for a
    dataset with fewer than two distinct confidences, which has no density). Invalid or
    non-finite confidences are left out; a method without any valid one gets a panel saying so.
    The y axis is capped at three times the tallest histogram bar, so one narrow density peak
    cannot flatten the others (a capped peak runs off the top).
    """
    table = require_columns(uq_pooled, ("slm", "dataset", "method", "confidence"), "confidence distributions")
    conf = table["confidence"].to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(conf)
    if "valid" in table.columns:
        keep &= table["valid"].to_numpy(dtype=bool, na_value=False)
    slms = ordered(table["slm"])
    methods = method_order(table["method"])
    datasets = ordered(table["dataset"], list(DATASET_NAMES))
    totals = table.groupby(["slm", "method"]).size()
    table = table.loc[keep]
    handles = [Patch(color="0.75", label="All datasets pooled")] + dataset_handles(datasets)
    single = panels is None and len(slms) == 1
    title = ("Distribution of SLM confidence per UQ method: pooled histogram and one density per dataset"
             + (f" — SLM: {slms[0]}" if single else ""))
    if panels is None:
        facets = Facets(slms, methods, handles=handles, legend_title="Dataset", title=title)
        keys = [key for key, _ in facets]
    else:
        keys = [tuple(panel) for panel in panels]
        facets = Facets([None], keys, handles=handles, legend_title="Dataset", title=title)
    for (slm, method), (_, ax) in zip(keys, facets):
        cell = table[(table["slm"] == slm) & (table["method"] == method)]
        facets.title(ax, method_label(method) if single else f"{slm} · {method_label(method)}")
        ax.set_xlabel("Confidence score")
        ax.set_ylabel("Density (per unit confidence)" if facets.first_in_row(ax) else "Density")
        ax.grid(True, alpha=0.3, linewidth=0.6)
        total = int(totals.get((slm, method), 0))
        if cell.empty:
            ax.set_yticks([])
            note(ax, f"No valid confidence\n(0 of {total} answers)")
            continue
        values = cell["confidence"].to_numpy(dtype=float)
        lo, hi = float(values.min()), float(values.max())
        pad = 0.02 * (hi - lo) if hi > lo else 0.05
        edges = _histogram_edges(values, pad)
        heights, _, _ = ax.hist(values, bins=edges, density=True, color="0.75", edgecolor="white", linewidth=0.4)
        top = float(np.max(heights))
        grid = np.linspace(lo, hi, 256)
        for i, dataset in enumerate(datasets):
            sample = cell.loc[cell["dataset"] == dataset, "confidence"].to_numpy(dtype=float)
            if len(np.unique(sample)) < 2:
                continue
            density = _density(sample, grid, lo, hi, min_bandwidth=(hi - lo) / 30)
            top = max(top, min(float(density.max()), 3 * float(np.max(heights))))
            ax.plot(grid, density, lw=1.2, color=dataset_color(dataset, i))
        ax.set_ylim(0, 1.08 * top)
        ax.set_xlim(min(lo - pad, edges[0]), max(hi + pad, edges[-1]))
        ax.text(0.98, 0.97, f"n = {len(values)}" + (f" of {total}" if len(values) < total else ""),
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color="0.3")
    return save_figure(facets.fig, out_stem)
