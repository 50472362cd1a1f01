"""AUROC heatmaps of every (SLM, dataset, method): paper Figures 1 and 6-9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..datasets import DATASET_NAMES, dataset_label
from ..uq.registry import METHOD_NAMES, method_label

from .layout import (
    PANEL_TITLE_SIZE,
    TITLE_SIZE,
    line_count,
    ordered,
    require_columns,
    save_figure,
    wrap,
)


def _heatmap(ax, cell: pd.DataFrame, n_valid: pd.DataFrame | None, half: float) -> None:
    """One annotated AUROC heatmap; an undefined cell is grey and says why."""
    ax.set_facecolor("0.88")
    sns.heatmap(cell, ax=ax, cmap="RdBu", center=0.5, vmin=0.5 - half, vmax=0.5 + half, annot=True, fmt=".2f",
                annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white", cbar=False)
    values = cell.to_numpy(dtype=float)
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        none_valid = n_valid is not None and n_valid.iat[i, j] == 0
        ax.text(j + 0.5, i + 0.5, "no valid\nconf." if none_valid else "n/a", ha="center", va="center",
                fontsize=7, color="0.3")
    ax.tick_params(axis="x", labelrotation=40)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.tick_params(axis="y", labelrotation=0)


def plot_auroc_heatmaps(alignment: pd.DataFrame, out_stem) -> list[Path]:
    """AUROC heatmaps, SLM x UQ method, one panel per dataset (paper Fig. 1, 6-9).

    ``alignment``: metrics/alignment.parquet (``slm, dataset, method, auroc``, optional
    ``n_valid``). With a single SLM, one panel of dataset x method instead (one-row panels
    would be unreadable strips). A grey cell has no AUROC: "no valid conf." when no answer has
    a valid confidence (``n_valid`` = 0), "n/a" otherwise (one class only).
    """
    table = require_columns(alignment, ("slm", "dataset", "method", "auroc"), "AUROC heatmaps")
    datasets = ordered(table["dataset"], list(DATASET_NAMES))
    methods = ordered(table["method"], list(METHOD_NAMES))
    slms = ordered(table["slm"])
    deviation = np.nanmax(np.abs(table["auroc"].to_numpy(dtype=float, na_value=np.nan) - 0.5), initial=0.0)
    half = max(0.25, float(deviation))
    title = "Alignment of confidence with SLM correctness: ROC AUC (0.5 = chance, higher = better)"

    def pivot(frame, index, values):
        out = frame.pivot_table(index=index, columns="method", values=values, aggfunc="mean", dropna=False)
        return out.reindex(columns=methods)

    if len(slms) == 1:
        panels = [(f"SLM: {slms[0]}", "dataset", datasets, table)]
        panel = (0.75 * len(methods) + 2.4, 0.45 * len(datasets) + 2.0)
        n_cols = 1
    else:
        panels = [(dataset_label(d), "slm", slms, table[table["dataset"] == d]) for d in datasets]
        panel = (0.62 * len(methods) + 2.0, 0.42 * len(slms) + 2.0)
        n_cols = min(3, len(datasets))
    n_rows = -(-len(panels) // n_cols)
    width = panel[0] * n_cols + 1.0  # + colour bar
    title = wrap(title, width - 0.2, TITLE_SIZE)
    fig = Figure(figsize=(width, panel[1] * n_rows + 0.3 * line_count(title) + 0.2), layout="constrained")
    grid = fig.subplots(n_rows, n_cols, squeeze=False)
    used = list(grid.flat)[: len(panels)]
    for ax in list(grid.flat)[len(panels):]:
        ax.set_visible(False)
    for ax, (name, index, order, frame) in zip(used, panels):
        cell = pivot(frame, index, "auroc").reindex(index=order)
        n_valid = pivot(frame, index, "n_valid").reindex(index=order) if "n_valid" in frame.columns else None
        cell.columns = [method_label(m) for m in cell.columns]
        if index == "dataset":
            cell.index = [dataset_label(d) for d in cell.index]
        _heatmap(ax, cell, n_valid, half)
        ax.set_title(name, fontsize=PANEL_TITLE_SIZE + 1)
        ax.set_xlabel("UQ method")
        ax.set_ylabel("Dataset" if index == "dataset" else "SLM")
    fig.colorbar(used[0].collections[0], ax=used, label="ROC AUC", shrink=0.8 if n_rows == 1 else 0.5,
                 aspect=25, fraction=0.04)
    fig.suptitle(title, fontsize=TITLE_SIZE)
    return save_figure(fig, out_stem)
