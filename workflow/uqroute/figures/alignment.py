"""AUROC heatmaps of every (SLM, dataset, method): paper Figures 1 and 6-9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..datasets import DATASET_NAMES, dataset_label
from ..uq.registry import method_label

from .layout import (
    PANEL_TITLE_SIZE,
    TITLE_SIZE,
    line_count,
    method_order,
    ordered,
    require_columns,
    save_figure,
    wrap,
)


def _annotation(auroc: float, low: float, high: float, n_valid: float, n_correct: float) -> str:
    """A cell's text: its AUROC, its interval and what it rests on (right answers of the scored ones)."""
    if not np.isfinite(auroc):
        return ""
    lines = [f"{auroc:.2f}"]
    if np.isfinite(low):
        lines.append(f"[{low:.2f}, {high:.2f}]")
    if np.isfinite(n_valid) and np.isfinite(n_correct):
        lines.append(f"{int(n_correct)}/{int(n_valid)}")
    return "\n".join(lines)


def _heatmap(ax, cell: pd.DataFrame, extra: dict[str, pd.DataFrame], half: float) -> None:
    """One annotated AUROC heatmap: each cell's AUROC, interval and right/scored answers; a dashed frame where
    the interval covers 0.5, its text italic where the cell is underpowered; an undefined cell is grey and says why."""
    values = cell.to_numpy(dtype=float)

    def grid(name):
        frame = extra.get(name)
        return np.full(values.shape, np.nan) if frame is None else frame.to_numpy(dtype=float)

    low, high, n_valid, n_correct = grid("auroc_low"), grid("auroc_high"), grid("n_valid"), grid("n_valid_correct")
    weak = grid("underpowered") > 0
    text = np.vectorize(_annotation, otypes=[object])(values, low, high, n_valid, n_correct)
    ax.set_facecolor("0.88")
    sns.heatmap(cell, ax=ax, cmap="RdBu", center=0.5, vmin=0.5 - half, vmax=0.5 + half, annot=text, fmt="",
                annot_kws={"fontsize": 6.5, "linespacing": 1.1}, linewidths=0.5, linecolor="white", cbar=False)
    for i, j in zip(*np.nonzero(np.isfinite(values))):
        if np.isfinite(low[i, j]) and low[i, j] <= 0.5 <= high[i, j]:
            ax.add_patch(Rectangle((float(j) + 0.06, float(i) + 0.06), 0.88, 0.88, fill=False, ls=(0, (3, 2)),
                                   edgecolor="0.2",
                                   lw=0.9, zorder=2))
    for label in ax.texts:
        x, y = label.get_position()
        label.set_color("0.1")
        label.set_bbox({"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.6, "lw": 0})
        if weak[int(y), int(x)]:
            label.set_fontstyle("italic")
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        none_valid = n_valid[i, j] == 0
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
    ``n_valid``, ``n_valid_correct``, ``auroc_low/_high``, ``underpowered``). With a single SLM, one panel
    of dataset x method instead (one-row panels would be unreadable strips). A cell shows its AUROC, its
    bootstrap interval and right/scored answers; it has a dashed frame where the interval covers 0.5 (no better than
    chance at the interval's level), its text italic where it is underpowered. A grey cell has no
    AUROC: "no valid conf." when no answer has a valid confidence (``n_valid`` = 0), "n/a" otherwise (one
    class only).
    """
    table = require_columns(alignment, ("slm", "dataset", "method", "auroc"), "AUROC heatmaps")
    datasets = ordered(table["dataset"], list(DATASET_NAMES))
    methods = method_order(table["method"])
    slms = ordered(table["slm"])
    deviation = np.nanmax(np.abs(table["auroc"].to_numpy(dtype=float, na_value=np.nan) - 0.5), initial=0.0)
    half = max(0.25, float(deviation))
    title = ("Alignment of confidence with SLM correctness: ROC AUC (0.5 = chance, higher = better), its 95 % "
             "bootstrap interval and right/scored answers; dashed frame: the interval covers 0.5; italic: "
             "underpowered (few right or wrong answers, or a wide interval)")

    def pivot(frame, index, values):
        out = frame.pivot_table(index=index, columns="method", values=values, aggfunc="mean", dropna=False)
        return out.reindex(columns=methods)

    if len(slms) == 1:
        panels = [(f"SLM: {slms[0]}", "dataset", datasets, table)]
        panel = (0.8 * len(methods) + 2.4, 0.55 * len(datasets) + 2.0)
        n_cols = 1
    else:
        panels = [(dataset_label(d), "slm", slms, table[table["dataset"] == d]) for d in datasets]
        panel = (0.75 * len(methods) + 2.0, 0.55 * len(slms) + 2.0)
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
        extra = {name: pivot(frame.assign(**{name: frame[name].astype(float)}), index, name).reindex(index=order)
                 for name in ("n_valid", "n_valid_correct", "auroc_low", "auroc_high", "underpowered")
                 if name in frame.columns}
        cell.columns = [method_label(m) for m in cell.columns]
        if index == "dataset":
            cell.index = [dataset_label(d) for d in cell.index]
        _heatmap(ax, cell, extra, half)
        ax.set_title(name, fontsize=PANEL_TITLE_SIZE + 1)
        ax.set_xlabel("UQ method")
        ax.set_ylabel("Dataset" if index == "dataset" else "SLM")
    fig.colorbar(used[0].collections[0], ax=used, label="ROC AUC", shrink=0.8 if n_rows == 1 else 0.5,
                 aspect=25, fraction=0.04)
    fig.suptitle(title, fontsize=TITLE_SIZE)
    return save_figure(fig, out_stem)
