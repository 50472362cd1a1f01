"""The paper's figure families, drawn from the analysis tables.

Every function takes the (stacked) tables, draws one figure and writes ``{out_stem}.pdf`` and
``{out_stem}.png`` atomically, returning both paths. Figures are built on
:class:`matplotlib.figure.Figure` directly (Agg rendering, no pyplot), so importing this module
changes no global matplotlib state and leaks no open figures in long runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.stats import gaussian_kde

from .io import atomic_path

METHOD_LABELS = {
    "avg_token_prob": "Avg. token prob.",
    "perplexity": "Perplexity",
    "p_true": "p(True)",
    "jaccard_degree": "Jaccard degree",
    "verbal_1s": "Verbalization-1s",
    "verbal_2s": "Verbalization-2s",
    "trained_probe": "Trained probe",
    "ood_probe": "OOD probe",
}
DATASET_LABELS = {
    "gsm8k": "GSM8K", "aqua": "AQuA", "multiarith": "MultiArith", "svamp": "SVAMP", "boolq": "BoolQ",
    "commonsenseqa": "CommonsenseQA", "hellaswag": "HellaSwag", "openbookqa": "OpenBookQA", "piqa": "PIQA",
    "social_iqa": "Social IQa", "truthfulqa": "TruthfulQA", "winogrande": "WinoGrande", "coqa": "CoQA",
    "mmlu": "MMLU",
}
# Fixed colours, so a method or dataset looks the same in every figure of a run.
# tab10 without its grey, which is kept for the random-routing baseline.
METHOD_COLORS = dict(zip(METHOD_LABELS, [sns.color_palette("tab10")[i] for i in (0, 1, 2, 4, 8, 5, 3, 9)]))
DATASET_COLORS = dict(zip(DATASET_LABELS, sns.color_palette("tab20", len(DATASET_LABELS))))
PANEL_SIZE = (3.6, 2.8)  # inches per panel
PNG_DPI = 150


def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _ordered(values, known: Sequence[str] = ()) -> list:
    """Unique values, names of ``known`` first in its order, the rest sorted."""
    present = list(pd.unique(pd.Series(values)))
    first = [v for v in known if v in present]
    return first + sorted(v for v in present if v not in first)


def _color(name: str, palette: dict, fallback: list, index: int):
    return palette.get(name, fallback[index % len(fallback)])


def _require(table: pd.DataFrame | None, columns: Sequence[str], figure: str) -> pd.DataFrame:
    if table is None or len(table) == 0:
        raise ValueError(f"{figure}: nothing to plot (empty table)")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{figure}: missing column(s) {missing}; has {list(table.columns)}")
    return table


def _grid(n_rows: int, n_cols: int, *, panel=PANEL_SIZE, extra_width: float = 0.0, **subplot_kw):
    fig = Figure(figsize=(panel[0] * n_cols + extra_width, panel[1] * n_rows + 1.2), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)
    return fig, axes


def _save(fig: Figure, out_stem: str | os.PathLike) -> list[Path]:
    """Write ``{out_stem}.pdf`` and ``.png`` (temp file + rename); returns the two paths."""
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("pdf", "png"):
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            # No creation date in the PDF, so an unchanged figure is byte-identical on rerun.
            metadata = {"CreationDate": None} if fmt == "pdf" else None
            # "tight" grows the canvas to hold a title or legend wider than the panels.
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=metadata, bbox_inches="tight")
        paths.append(path)
    return paths


def _legend(fig: Figure, handles: list, title: str | None = None) -> None:
    """One legend under the panels, as many columns as fit the width (about 2.2 inches an entry)."""
    ncols = max(1, min(len(handles), int(fig.get_figwidth() // 2.2)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, title=title)


def _percent_axes(ax, *, xlabel: str, ylabel: str | None) -> None:
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3, linewidth=0.6)


def _method_handles(methods: Sequence[str]) -> list:
    return [Line2D([], [], color=_color(m, METHOD_COLORS, sns.color_palette("husl", 12), i), lw=2,
                   label=method_label(m)) for i, m in enumerate(methods)]


def _dataset_handles(datasets: Sequence[str]) -> list:
    return [Line2D([], [], color=_color(d, DATASET_COLORS, sns.color_palette("husl", 12), i), lw=2,
                   label=dataset_label(d)) for i, d in enumerate(datasets)]


def plot_auroc_heatmaps(alignment: pd.DataFrame, out_stem) -> list[Path]:
    """AUROC heatmaps, SLM x UQ method, one panel per dataset (paper Fig. 1, 6-9).

    ``alignment``: metrics/alignment.parquet (``slm, dataset, method, auroc``). Cells are
    annotated; a blank grey cell means the AUROC is undefined (one class only).
    """
    table = _require(alignment, ("slm", "dataset", "method", "auroc"), "AUROC heatmaps")
    datasets = _ordered(table["dataset"], list(DATASET_LABELS))
    methods = _ordered(table["method"], list(METHOD_LABELS))
    slms = _ordered(table["slm"])
    deviation = np.nanmax(np.abs(table["auroc"].to_numpy(dtype=float) - 0.5), initial=0.0)
    half = max(0.25, float(deviation))
    n_cols = min(3, len(datasets))
    n_rows = -(-len(datasets) // n_cols)
    panel = (0.62 * len(methods) + 1.6, 0.42 * len(slms) + 1.7)
    fig, axes = _grid(n_rows, n_cols, panel=panel, extra_width=0.8)
    for ax, dataset in zip(axes.flat, datasets):
        cell = table[table["dataset"] == dataset].pivot_table(index="slm", columns="method", values="auroc",
                                                              aggfunc="mean", dropna=False)
        cell = cell.reindex(index=slms, columns=methods)
        cell.columns = [method_label(m) for m in cell.columns]
        ax.set_facecolor("0.85")
        sns.heatmap(cell, ax=ax, cmap="RdBu", center=0.5, vmin=0.5 - half, vmax=0.5 + half, annot=True,
                    fmt=".2f", annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white", cbar=False)
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("UQ method")
        ax.set_ylabel("SLM")
        ax.tick_params(axis="x", labelrotation=40)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.tick_params(axis="y", labelrotation=0)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    used = list(axes.flat)[: len(datasets)]
    fig.colorbar(used[0].collections[0], ax=used, label="ROC AUC", shrink=0.6, aspect=30, fraction=0.03)
    fig.suptitle("Alignment of confidence with SLM correctness: ROC AUC (0.5 = chance, higher = better)")
    return _save(fig, out_stem)


def _curve_rows(table: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = table[["llm", "dataset"]].drop_duplicates()
    datasets = _ordered(pairs["dataset"], list(DATASET_LABELS))
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (str(p[0]), datasets.index(p[1])))


def plot_routing_curves(curves: pd.DataFrame, out_stem) -> list[Path]:
    """Overall accuracy vs routing ratio: a row per (LLM, dataset), a panel per SLM (Fig. 2, 10-13).

    ``curves``: routing curves stacked with ``slm, llm, dataset, method`` columns. One line per
    UQ method, plus random routing and the oracle (both method-independent).
    """
    table = _require(curves, ("slm", "llm", "dataset", "method", "ratio", "accuracy", "random_accuracy",
                              "oracle_accuracy"), "routing curves")
    rows = _curve_rows(table)
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_LABELS))
    fig, axes = _grid(len(rows), len(slms), sharey="row")
    for (llm, dataset), ax_row in zip(rows, axes):
        for slm, ax in zip(slms, ax_row):
            cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
            ax.set_title(f"{slm} → {llm}\n{dataset_label(dataset)}", fontsize=9)
            _percent_axes(ax, xlabel="Queries routed to the LLM (%)",
                          ylabel="Overall accuracy (%)" if ax is ax_row[0] else None)
            if cell.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                continue
            for i, method in enumerate(methods):
                line = cell[cell["method"] == method].sort_values("ratio")
                if len(line):
                    ax.plot(line["ratio"] * 100, line["accuracy"] * 100, lw=1.4,
                            color=_color(method, METHOD_COLORS, sns.color_palette("husl", 12), i))
            base = cell[cell["method"] == cell["method"].iloc[0]].sort_values("ratio")
            ax.plot(base["ratio"] * 100, base["random_accuracy"] * 100, color="0.45", ls="--", lw=1.2)
            ax.plot(base["ratio"] * 100, base["oracle_accuracy"] * 100, color="black", ls=":", lw=1.5)
    handles = _method_handles(methods) + [
        Line2D([], [], color="0.45", ls="--", lw=1.2, label="Random routing"),
        Line2D([], [], color="black", ls=":", lw=1.5, label="Oracle routing"),
    ]
    _legend(fig, handles, title="Routing by")
    fig.suptitle("Overall accuracy vs. share of queries routed from the SLM to the LLM (lowest confidence first)")
    return _save(fig, out_stem)


def plot_relative_accuracy(rel: pd.DataFrame, out_stem) -> list[Path]:
    """SLM/LLM accuracy on the most confident queries vs % least confident excluded (Fig. 3).

    ``rel``: relative-accuracy rows stacked with ``slm, llm, dataset, method`` columns; a row
    per (LLM, dataset), a panel per SLM, a line per UQ method.
    """
    table = _require(rel, ("slm", "llm", "dataset", "method", "excluded_pct", "relative_accuracy"),
                     "relative accuracy")
    rows = _curve_rows(table)
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_LABELS))
    fig, axes = _grid(len(rows), len(slms), sharey="row")
    for (llm, dataset), ax_row in zip(rows, axes):
        for slm, ax in zip(slms, ax_row):
            cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
            ax.set_title(f"{slm} vs {llm}\n{dataset_label(dataset)}", fontsize=9)
            _percent_axes(ax, xlabel="Lowest-confidence queries excluded (%)",
                          ylabel="Relative accuracy (SLM / LLM)" if ax is ax_row[0] else None)
            ax.axhline(1.0, color="black", ls=":", lw=1.2)
            for i, method in enumerate(methods):
                line = cell[cell["method"] == method].sort_values("excluded_pct")
                if len(line):
                    ax.plot(line["excluded_pct"], line["relative_accuracy"], marker="o", ms=3, lw=1.3,
                            color=_color(method, METHOD_COLORS, sns.color_palette("husl", 12), i))
    handles = _method_handles(methods) + [Line2D([], [], color="black", ls=":", lw=1.2, label="SLM = LLM")]
    _legend(fig, handles, title="Confidence from")
    fig.suptitle("SLM accuracy relative to the LLM on the queries the SLM is most confident about")
    return _save(fig, out_stem)


def _density(sample: np.ndarray, grid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Gaussian KDE of ``sample`` on ``grid``, reflected at [lo, hi].

    Confidences are bounded and often pile up at a bound (probabilities near 1), where a plain
    KDE leaks half its mass past the bound and flattens the peak; reflection keeps the mass
    inside. Half of Scott's bandwidth keeps the bimodal shapes the pooled histogram shows.
    ``sample`` needs two distinct values.
    """
    kde = gaussian_kde(sample)
    factor = 0.5 * kde.scotts_factor()
    levels = np.unique(sample)
    if len(levels) <= 30:
        # Discrete confidences (verbalized, in steps): a bandwidth under the step draws a wiggle
        # per level, so never go below one step.
        factor = max(factor, float(np.min(np.diff(levels))) / float(np.std(sample, ddof=1)))
    kde.set_bandwidth(factor)
    return kde(grid) + kde(2 * lo - grid) + kde(2 * hi - grid)


def _histogram_edges(values: np.ndarray, pad: float, n_bins: int = 30) -> np.ndarray:
    """30 equal bins over the range; one bin per value for a few discrete values (verbalized
    confidences in steps of 10 %), which equal bins would show as spikes amid empty bins."""
    levels = np.unique(values)
    if len(levels) == 1:
        return np.array([levels[0] - pad, levels[0] + pad])
    if len(levels) <= n_bins:
        mids = (levels[1:] + levels[:-1]) / 2
        return np.concatenate([[levels[0] - (mids[0] - levels[0])], mids, [levels[-1] + (levels[-1] - mids[-1])]])
    return np.linspace(levels[0], levels[-1], n_bins + 1)


def plot_confidence_distributions(uq_pooled: pd.DataFrame, out_stem) -> list[Path]:
    """Confidence distributions, a panel per (SLM, method) (Fig. 4).

    ``uq_pooled``: ``slm, dataset, method, confidence`` (+ ``valid``) rows. Grey histogram =
    all datasets pooled; one kernel-density curve per dataset (:func:`_density`; skipped for a
    dataset with fewer than two distinct confidences, which has no density).
    """
    table = _require(uq_pooled, ("slm", "dataset", "method", "confidence"), "confidence distributions")
    conf = table["confidence"].to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(conf)
    if "valid" in table.columns:
        keep &= table["valid"].to_numpy(dtype=bool, na_value=False)
    table = table.loc[keep]
    if table.empty:
        raise ValueError("confidence distributions: no valid confidence to plot")
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_LABELS))
    datasets = _ordered(table["dataset"], list(DATASET_LABELS))
    fig, axes = _grid(len(slms), len(methods))
    fallback = sns.color_palette("husl", 12)
    for slm, ax_row in zip(slms, axes):
        for method, ax in zip(methods, ax_row):
            cell = table[(table["slm"] == slm) & (table["method"] == method)]
            ax.set_title(f"{slm} · {method_label(method)}", fontsize=9)
            ax.set_xlabel("Confidence")
            ax.set_ylabel("Density")
            ax.grid(True, alpha=0.3, linewidth=0.6)
            if cell.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                continue
            values = cell["confidence"].to_numpy(dtype=float)
            lo, hi = float(values.min()), float(values.max())
            pad = 0.02 * (hi - lo) if hi > lo else 0.05
            ax.hist(values, bins=_histogram_edges(values, pad), density=True, color="0.75", edgecolor="white",
                    linewidth=0.4)
            grid = np.linspace(lo, hi, 256)
            for i, dataset in enumerate(datasets):
                sample = cell.loc[cell["dataset"] == dataset, "confidence"].to_numpy(dtype=float)
                if len(np.unique(sample)) < 2:
                    continue
                ax.plot(grid, _density(sample, grid, lo, hi), lw=1.2,
                        color=_color(dataset, DATASET_COLORS, fallback, i))
            ax.set_xlim(lo - pad, hi + pad)
    handles = [Patch(color="0.75", label="All datasets pooled")] + _dataset_handles(datasets)
    _legend(fig, handles, title="Dataset")
    fig.suptitle("Distribution of SLM confidence per UQ method: pooled histogram and one density per dataset")
    return _save(fig, out_stem)


def plot_generalization(gen: pd.DataFrame, curves: pd.DataFrame | None, out_stem) -> list[Path]:
    """Routing with leave-one-out calibration thresholds vs the ground truth (Fig. 5, 14-17).

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a row per
    (LLM, held-out dataset), a panel per (SLM, method). Coloured line: accuracy at each target
    ratio with calibration thresholds, mean over runs, band = min-max over runs. Black line: the
    ground truth, the target's own routing curve (from ``curves``, stacked routing curves; the
    ``oracle_threshold_accuracy`` column when ``curves`` is None or lacks the cell).
    """
    table = _require(gen, ("slm", "llm", "dataset", "method", "run", "target_ratio", "accuracy",
                           "oracle_threshold_accuracy"), "generalization")
    rows = _curve_rows(table)
    cells = table[["slm", "method"]].drop_duplicates()
    slms = _ordered(cells["slm"])
    methods = _ordered(cells["method"], list(METHOD_LABELS))
    columns = [(s, m) for s in slms for m in methods if ((cells["slm"] == s) & (cells["method"] == m)).any()]
    fig, axes = _grid(len(rows), len(columns), sharey="row")
    fallback = sns.color_palette("husl", 12)
    drew_random = False
    for (llm, dataset), ax_row in zip(rows, axes):
        for (slm, method), ax in zip(columns, ax_row):
            cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)
                         & (table["method"] == method)]
            ax.set_title(f"{slm} → {llm} · {method_label(method)}\nheld out: {dataset_label(dataset)}",
                         fontsize=9)
            _percent_axes(ax, xlabel="Target routing ratio (%)",
                          ylabel="Overall accuracy (%)" if ax is ax_row[0] else None)
            if cell.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                continue
            truth = None
            if curves is not None and len(curves):
                truth = curves[(curves["llm"] == llm) & (curves["dataset"] == dataset) & (curves["slm"] == slm)
                               & (curves["method"] == method)].sort_values("ratio")
            if truth is not None and len(truth):
                ax.plot(truth["ratio"] * 100, truth["random_accuracy"] * 100, color="0.45", ls="--", lw=1.1)
                drew_random = True
                ax.plot(truth["ratio"] * 100, truth["accuracy"] * 100, color="black", lw=1.4)
            else:
                own = cell.groupby("target_ratio")["oracle_threshold_accuracy"].mean()
                ax.plot(own.index * 100, own.to_numpy() * 100, color="black", lw=1.4)
            stats = cell.groupby("target_ratio")["accuracy"].agg(["mean", "min", "max"])
            x = stats.index.to_numpy(dtype=float) * 100
            color = _color(method, METHOD_COLORS, fallback, methods.index(method))
            ax.fill_between(x, stats["min"] * 100, stats["max"] * 100, color=color, alpha=0.25, lw=0)
            ax.plot(x, stats["mean"] * 100, color=color, lw=1.6, marker="o", ms=2.5)
    n_runs = table["run"].nunique()
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    handles = [
        Line2D([], [], color="0.3", lw=1.6, marker="o", ms=3,
               label=f"Calibration thresholds, mean of {runs}\n(band: min–max over runs)"),
        Line2D([], [], color="black", lw=1.4, label="Ground truth\n(routing curve of the held-out dataset)"),
    ]
    if drew_random:
        handles.append(Line2D([], [], color="0.45", ls="--", lw=1.1, label="Random routing"))
    _legend(fig, handles)
    fig.suptitle("Routing an unseen dataset with thresholds from calibration data of the other datasets")
    return _save(fig, out_stem)


def plot_ratio_fidelity(gen: pd.DataFrame, out_stem) -> list[Path]:
    """Achieved vs target routing ratio under calibration thresholds, with the identity line.

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a panel per
    (SLM, method), a line per held-out dataset (mean over runs; the achieved ratio does not
    depend on the LLM, so LLMs are averaged too).
    """
    table = _require(gen, ("slm", "dataset", "method", "target_ratio", "achieved_ratio"), "ratio fidelity")
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_LABELS))
    datasets = _ordered(table["dataset"], list(DATASET_LABELS))
    fig, axes = _grid(len(slms), len(methods), panel=(3.2, 3.0))
    fallback = sns.color_palette("husl", 12)
    for slm, ax_row in zip(slms, axes):
        for method, ax in zip(methods, ax_row):
            cell = table[(table["slm"] == slm) & (table["method"] == method)]
            ax.set_title(f"{slm} · {method_label(method)}", fontsize=9)
            _percent_axes(ax, xlabel="Target routing ratio (%)", ylabel="Achieved routing ratio (%)")
            ax.set_ylim(0, 100)
            ax.set_aspect("equal")
            ax.plot([0, 100], [0, 100], color="black", ls=":", lw=1.2)
            for i, dataset in enumerate(datasets):
                line = cell[cell["dataset"] == dataset].groupby("target_ratio")["achieved_ratio"].mean()
                if len(line):
                    ax.plot(line.index * 100, line.to_numpy() * 100, lw=1.2,
                            color=_color(dataset, DATASET_COLORS, fallback, i))
    handles = [Line2D([], [], color="black", ls=":", lw=1.2, label="Achieved = target")] + _dataset_handles(datasets)
    _legend(fig, handles, title="Held-out dataset")
    fig.suptitle("Share of queries actually routed with calibration thresholds vs. the share targeted")
    return _save(fig, out_stem)
