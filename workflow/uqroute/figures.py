"""The paper's figure families, drawn from the analysis tables.

Every function takes the (stacked) tables, draws one figure and writes ``{out_stem}.pdf`` and
``{out_stem}.png`` atomically, returning both paths. Figures are built on
:class:`matplotlib.figure.Figure` directly (Agg rendering, no pyplot), so importing this module
changes no global matplotlib state and leaks no open figures in long runs.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.stats import gaussian_kde

from .datasets import DATASET_NAMES, dataset_label
from .io import atomic_path
from .uq.registry import METHOD_NAMES, method_label

# Fixed colours, so a method or dataset looks the same in every figure of a run.
# tab10 without its grey, which is kept for the random-routing baseline.
METHOD_COLORS = dict(zip(METHOD_NAMES, [sns.color_palette("tab10")[i] for i in (0, 1, 2, 4, 8, 5, 3, 9)]))
DATASET_COLORS = dict(zip(DATASET_NAMES, sns.color_palette("tab20", len(DATASET_NAMES))))
PANEL_SIZE = (3.6, 2.8)  # inches per panel, axis labels and panel title included
MAX_WRAP_COLUMNS = 4  # a single row of panels wraps after this many, so a 1-SLM run is not a strip
PNG_DPI = 150
TITLE_SIZE = 12
PANEL_TITLE_SIZE = 9.5
LEGEND_SIZE = 9
# Random routing is drawn above the method lines with a white halo, so it stays visible where they cross.
RANDOM_STYLE = dict(color="0.25", ls=(0, (5, 3)), lw=1.6, zorder=4,
                    path_effects=[patheffects.withStroke(linewidth=3.2, foreground="white")])
ORACLE_STYLE = dict(color="black", ls=":", lw=1.6, zorder=3)


def _ordered(values, known: Sequence[str] = ()) -> list:
    """Unique values, names of ``known`` first in its order, the rest sorted."""
    present = list(pd.unique(pd.Series(list(values), dtype=object)))
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


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Break ``text`` so each line fits ``width_in`` inches (about 0.55 em per character)."""
    chars = max(16, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _lines(text: str) -> int:
    return text.count("\n") + 1


def _legend_box(handles: list, title: str | None, ncols: int) -> tuple[float, float]:
    """Approximate (width, height) in inches of a legend of ``handles`` in ``ncols`` columns."""
    labels = [h.get_label() for h in handles]
    chars = max(len(part) for label in labels for part in label.split("\n"))
    entry_w = 0.9 + chars * 0.55 * LEGEND_SIZE / 72
    per_col = -(-len(labels) // ncols)
    tallest = max(_lines(label) for label in labels)
    height = per_col * tallest * 0.22 + 0.35 + (0.25 if title else 0.0)
    return entry_w * ncols + 0.2, height


class _Facets:
    """A grid of panels with room reserved for a wrapped title and the legend.

    ``rows`` x ``cols`` panel keys; a single row wraps after :data:`MAX_WRAP_COLUMNS` panels.
    The figure is sized from the panel size plus the title and legend, so panels never shrink
    to make room for them; the legend goes beside narrow grids (one or two columns), under
    wider ones.
    """

    def __init__(self, rows: Sequence, cols: Sequence, *, title: str, handles: list, legend_title: str | None = None,
                 panel=PANEL_SIZE, sharey: bool = False, max_cols: int = MAX_WRAP_COLUMNS):
        if len(rows) == 1 and len(cols) > max_cols:
            self.keys = [(rows[0], c) for c in cols]
            n_cols = max_cols
            n_rows = -(-len(cols) // max_cols)
        else:
            self.keys = [(r, c) for r in rows for c in cols]
            n_rows, n_cols = len(rows), len(cols)
        self.n_cols = n_cols
        panels_w = panel[0] * n_cols
        beside = n_cols <= 2
        if beside:
            ncols_legend = 1
        else:
            one_w, _ = _legend_box(handles, legend_title, 1)
            ncols_legend = max(1, min(len(handles), int(panels_w // one_w)))
        legend_w, legend_h = _legend_box(handles, legend_title, ncols_legend)
        width = panels_w + (legend_w if beside else 0.0)
        # The title spans the panels only: over a legend beside them it would run into it.
        title = _wrap(title, panels_w - 0.2, TITLE_SIZE)
        height = panel[1] * n_rows + 0.3 * _lines(title) + 0.2
        if beside:
            height = max(height, legend_h + 0.3 * _lines(title) + 0.3)
        else:
            height += legend_h
        self.fig = Figure(figsize=(width, height), layout="constrained")
        grid = self.fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey)
        flat = list(grid.flat)
        self.axes = flat[: len(self.keys)]
        for ax in flat[len(self.keys):]:
            ax.set_visible(False)
        self.fig.suptitle(title, fontsize=TITLE_SIZE, x=0.5 * panels_w / width)
        self.fig.legend(handles=handles, loc="outside right center" if beside else "outside lower center",
                        ncols=ncols_legend, title=legend_title, fontsize=LEGEND_SIZE, title_fontsize=LEGEND_SIZE)
        self.panel_width = panel[0]

    def __iter__(self):
        return iter(zip(self.keys, self.axes))

    def first_in_row(self, ax) -> bool:
        return self.axes.index(ax) % self.n_cols == 0

    def title(self, ax, text: str) -> None:
        ax.set_title(_wrap(text, self.panel_width - 0.3, PANEL_TITLE_SIZE), fontsize=PANEL_TITLE_SIZE)


def _name_missing(ax, cell: pd.DataFrame, methods: Sequence[str], without_confidence: Sequence[str]) -> None:
    """Name, in the panel's corner, the methods that have no line there and why."""
    lines = []
    absent = [method_label(m) for m in methods if not (cell["method"] == m).any()]
    if absent:
        lines.append("no curve: " + ", ".join(absent))
    if without_confidence:
        lines.append("no valid confidence: " + ", ".join(method_label(m) for m in without_confidence))
    if lines:
        ax.text(0.02, 0.98, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=7, color="0.3",
                zorder=6, bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.8))


def _note(ax, text: str) -> None:
    """A visible message in an empty (or partly empty) panel, instead of a silent blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8.5, color="0.25",
            zorder=6, bbox=dict(boxstyle="round,pad=0.4", facecolor="white", edgecolor="0.6"))


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
            # "tight" still guards against a label the size estimates missed.
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=metadata, bbox_inches="tight", pad_inches=0.15)
        paths.append(path)
    return paths


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
    table = _require(alignment, ("slm", "dataset", "method", "auroc"), "AUROC heatmaps")
    datasets = _ordered(table["dataset"], list(DATASET_NAMES))
    methods = _ordered(table["method"], list(METHOD_NAMES))
    slms = _ordered(table["slm"])
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
    title = _wrap(title, width - 0.2, TITLE_SIZE)
    fig = Figure(figsize=(width, panel[1] * n_rows + 0.3 * _lines(title) + 0.2), layout="constrained")
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
    return _save(fig, out_stem)


def _curve_rows(table: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = table[["llm", "dataset"]].drop_duplicates()
    datasets = _ordered(pairs["dataset"], list(DATASET_NAMES))
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (str(p[0]), datasets.index(p[1])))


def _pair_text(rows: list[tuple[str, str]], arrow: str) -> tuple[str, Callable[[str, str, str], str]]:
    """Title suffix shared by all panels, and the per-panel title for (llm, dataset, slm)."""
    if len(rows) == 1:
        llm, dataset = rows[0]
        return f" — {dataset_label(dataset)}, LLM: {llm}", lambda llm, dataset, slm: f"SLM: {slm}"
    return "", lambda llm, dataset, slm: f"{slm} {arrow} {llm} · {dataset_label(dataset)}"


def plot_routing_curves(curves: pd.DataFrame, out_stem, *, no_confidence=frozenset()) -> list[Path]:
    """Overall accuracy vs routing ratio: a row per (LLM, dataset), a panel per SLM (Fig. 2, 10-13).

    ``curves``: routing curves stacked with ``slm, llm, dataset, method`` columns. One line per
    UQ method, plus random routing (dashed, drawn on top) and the oracle (dotted), both
    method-independent. A single (LLM, dataset) wraps its SLM panels into rows of four.
    ``no_confidence``: (slm, dataset, method) cells without a single valid confidence; their
    curve only replays the input order, so it is left out and named in the panel.
    """
    table = _require(curves, ("slm", "llm", "dataset", "method", "ratio", "accuracy", "random_accuracy",
                              "oracle_accuracy"), "routing curves")
    rows = _curve_rows(table)
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_NAMES))
    suffix, panel_title = _pair_text(rows, "→")
    handles = _method_handles(methods) + [
        Line2D([], [], label="Random routing", **{k: v for k, v in RANDOM_STYLE.items() if k != "zorder"}),
        Line2D([], [], label="Oracle routing", **ORACLE_STYLE),
    ]
    facets = _Facets(rows, slms, sharey=True, handles=handles, legend_title="Routing by",
                     title=f"Overall accuracy vs. share of queries routed to the LLM (lowest SLM confidence "
                           f"first){suffix}")
    for ((llm, dataset), slm), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
        facets.title(ax, panel_title(llm, dataset, slm))
        _percent_axes(ax, xlabel="Queries routed to the LLM (%)",
                      ylabel="Overall accuracy (%)" if facets.first_in_row(ax) else None)
        if cell.empty:
            _note(ax, "No routing curve for this SLM")
            continue
        for i, method in enumerate(methods):
            line = cell[cell["method"] == method].sort_values("ratio")
            if len(line) and (slm, dataset, method) not in no_confidence:
                ax.plot(line["ratio"] * 100, line["accuracy"] * 100, lw=1.3, zorder=2,
                        color=_color(method, METHOD_COLORS, sns.color_palette("husl", 12), i))
        base = cell[cell["method"] == cell["method"].iloc[0]].sort_values("ratio")
        ax.plot(base["ratio"] * 100, base["oracle_accuracy"] * 100, **ORACLE_STYLE)
        ax.plot(base["ratio"] * 100, base["random_accuracy"] * 100, **RANDOM_STYLE)
        _name_missing(ax, cell, methods, [m for m in methods if (slm, dataset, m) in no_confidence])
    return _save(facets.fig, out_stem)


def plot_relative_accuracy(rel: pd.DataFrame, out_stem, *, no_confidence=frozenset()) -> list[Path]:
    """SLM/LLM accuracy on the most confident queries vs % least confident excluded (Fig. 3).

    ``rel``: relative-accuracy rows stacked with ``slm, llm, dataset, method`` columns; a row
    per (LLM, dataset), a panel per SLM, a line per UQ method. A point is missing where the
    LLM gets none of the kept queries right (ratio undefined). ``no_confidence`` as for
    :func:`plot_routing_curves`.
    """
    table = _require(rel, ("slm", "llm", "dataset", "method", "excluded_pct", "relative_accuracy"),
                     "relative accuracy")
    rows = _curve_rows(table)
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_NAMES))
    suffix, panel_title = _pair_text(rows, "vs")
    handles = _method_handles(methods) + [Line2D([], [], label="SLM = LLM", **ORACLE_STYLE)]
    facets = _Facets(rows, slms, sharey=True, handles=handles, legend_title="Confidence from",
                     title=f"SLM accuracy relative to the LLM on the SLM's most confident queries{suffix}")
    for ((llm, dataset), slm), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
        facets.title(ax, panel_title(llm, dataset, slm))
        _percent_axes(ax, xlabel="Lowest-confidence queries excluded (%)",
                      ylabel="Relative accuracy\n(SLM acc. / LLM acc., ×)" if facets.first_in_row(ax) else None)
        ax.axhline(1.0, **ORACLE_STYLE)
        values = cell["relative_accuracy"].to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(values).any():
            _note(ax, "No defined relative accuracy\n(no rows, or the LLM is never right)")
            continue
        for i, method in enumerate(methods):
            line = cell[cell["method"] == method].sort_values("excluded_pct")
            if len(line) and (slm, dataset, method) not in no_confidence:
                ax.plot(line["excluded_pct"], line["relative_accuracy"], marker="o", ms=3, lw=1.3, zorder=2,
                        color=_color(method, METHOD_COLORS, sns.color_palette("husl", 12), i))
        _name_missing(ax, cell, methods, [m for m in methods if (slm, dataset, m) in no_confidence])
    return _save(facets.fig, out_stem)


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


def plot_confidence_distributions(uq_pooled: pd.DataFrame, out_stem) -> list[Path]:
    """Confidence distributions, a panel per (SLM, method) (Fig. 4).

    ``uq_pooled``: ``slm, dataset, method, confidence`` (+ ``valid``) rows. Grey histogram =
    all datasets pooled; one kernel-density curve per dataset (:func:`_density`; skipped for a
    dataset with fewer than two distinct confidences, which has no density). Invalid or
    non-finite confidences are left out; a method without any valid one gets a panel saying so.
    The y axis is capped at three times the tallest histogram bar, so one narrow density peak
    cannot flatten the others (a capped peak runs off the top).
    """
    table = _require(uq_pooled, ("slm", "dataset", "method", "confidence"), "confidence distributions")
    conf = table["confidence"].to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(conf)
    if "valid" in table.columns:
        keep &= table["valid"].to_numpy(dtype=bool, na_value=False)
    slms = _ordered(table["slm"])
    methods = _ordered(table["method"], list(METHOD_NAMES))
    datasets = _ordered(table["dataset"], list(DATASET_NAMES))
    totals = table.groupby(["slm", "method"]).size()
    table = table.loc[keep]
    fallback = sns.color_palette("husl", 12)
    handles = [Patch(color="0.75", label="All datasets pooled")] + _dataset_handles(datasets)
    single = len(slms) == 1
    facets = _Facets(slms, methods, handles=handles, legend_title="Dataset",
                     title="Distribution of SLM confidence per UQ method: pooled histogram and one density per "
                           "dataset" + (f" — SLM: {slms[0]}" if single else ""))
    for (slm, method), ax in facets:
        cell = table[(table["slm"] == slm) & (table["method"] == method)]
        facets.title(ax, method_label(method) if single else f"{slm} · {method_label(method)}")
        ax.set_xlabel("Confidence score")
        ax.set_ylabel("Density (per unit confidence)" if facets.first_in_row(ax) else "Density")
        ax.grid(True, alpha=0.3, linewidth=0.6)
        total = int(totals.get((slm, method), 0))
        if cell.empty:
            ax.set_yticks([])
            _note(ax, f"No valid confidence\n(0 of {total} answers)")
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
            ax.plot(grid, density, lw=1.2, color=_color(dataset, DATASET_COLORS, fallback, i))
        ax.set_ylim(0, 1.08 * top)
        ax.set_xlim(min(lo - pad, edges[0]), max(hi + pad, edges[-1]))
        ax.text(0.98, 0.97, f"n = {len(values)}" + (f" of {total}" if len(values) < total else ""),
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color="0.3")
    return _save(facets.fig, out_stem)


def plot_generalization(gen: pd.DataFrame, curves: pd.DataFrame | None, out_stem, *,
                        methods: Sequence[str] | None = None) -> list[Path]:
    """Routing with leave-one-out calibration thresholds vs the ground truth (Fig. 5, 14-17).

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a row per
    (LLM, held-out dataset, SLM), a panel per method (a single row wraps into rows of four).
    Coloured line: accuracy at each target ratio with calibration thresholds, mean over runs,
    band = min-max over runs. Black line: the ground truth, the target's own routing curve (from
    ``curves``, stacked routing curves of the same cells; the ``oracle_threshold_accuracy``
    column when ``curves`` is None or lacks the cell). A method with routing curves (or listed in
    ``methods``) but no generalization rows, such as one whose calibration set is empty, gets a
    panel with the ground truth and a note. Empty ``gen`` is fine when ``curves`` has rows.
    """
    columns = ("slm", "llm", "dataset", "method", "run", "target_ratio", "accuracy", "oracle_threshold_accuracy")
    has_curves = curves is not None and len(curves) > 0
    if gen is not None and len(gen) == 0 and has_curves and all(c in gen.columns for c in columns[4:]):
        table = gen.reindex(columns=list(dict.fromkeys([*columns, *gen.columns])))
        frame = curves
    else:
        table = _require(gen, columns, "generalization")
        frame = table
    rows = [(llm, dataset, slm) for llm, dataset in _curve_rows(frame)
            for slm in _ordered(frame.loc[(frame["llm"] == llm) & (frame["dataset"] == dataset), "slm"])]
    names = list(table["method"]) + list(methods or [])
    if has_curves:
        in_rows = pd.Series(list(zip(curves["llm"], curves["dataset"], curves["slm"]))).isin(rows).to_numpy()
        names += list(curves.loc[in_rows, "method"])
    all_methods = _ordered(names, list(METHOD_NAMES))
    n_runs = table["run"].nunique()
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    handles = [
        Line2D([], [], color="0.3", lw=1.6, marker="o", ms=3,
               label=f"Calibration thresholds, mean of {runs}\n(band: min–max over runs)"),
        Line2D([], [], color="black", lw=1.4, label="Ground truth\n(routing curve of the held-out dataset)"),
    ]
    if has_curves:
        handles.append(Line2D([], [], label="Random routing",
                              **{k: v for k, v in RANDOM_STYLE.items() if k != "zorder"}))
    pairs = {(llm, dataset) for llm, dataset, _ in rows}
    if len(pairs) == 1:
        llm, dataset = next(iter(pairs))
        suffix = f" — held out: {dataset_label(dataset)}, LLM: {llm}"
    else:
        suffix = ""
    facets = _Facets(rows, all_methods, sharey=True, handles=handles,
                     title=f"Routing an unseen dataset with thresholds from calibration data of the other "
                           f"datasets{suffix}")
    fallback = sns.color_palette("husl", 12)
    for ((llm, dataset, slm), method), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)
                     & (table["method"] == method)]
        head = f"{slm} · {method_label(method)}"
        facets.title(ax, head if suffix else f"{slm} → {llm} · {method_label(method)}\n"
                                             f"held out: {dataset_label(dataset)}")
        _percent_axes(ax, xlabel="Target routing ratio (%)",
                      ylabel="Overall accuracy (%)" if facets.first_in_row(ax) else None)
        truth = None
        if has_curves:
            truth = curves[(curves["llm"] == llm) & (curves["dataset"] == dataset) & (curves["slm"] == slm)
                           & (curves["method"] == method)].sort_values("ratio")
        if truth is not None and len(truth):
            ax.plot(truth["ratio"] * 100, truth["accuracy"] * 100, color="black", lw=1.4, zorder=3)
            ax.plot(truth["ratio"] * 100, truth["random_accuracy"] * 100, **RANDOM_STYLE)
        elif len(cell):
            own = cell.groupby("target_ratio")["oracle_threshold_accuracy"].mean()
            ax.plot(own.index * 100, own.to_numpy() * 100, color="black", lw=1.4, zorder=3)
        if cell.empty:
            _note(ax, "No calibration thresholds\n(empty calibration set,\ne.g. no valid confidence)")
            continue
        stats = cell.groupby("target_ratio")["accuracy"].agg(["mean", "min", "max"])
        x = stats.index.to_numpy(dtype=float) * 100
        color = _color(method, METHOD_COLORS, fallback, all_methods.index(method))
        ax.fill_between(x, stats["min"] * 100, stats["max"] * 100, color=color, alpha=0.25, lw=0, zorder=1)
        ax.plot(x, stats["mean"] * 100, color=color, lw=1.6, marker="o", ms=2.5, zorder=2)
    return _save(facets.fig, out_stem)


def plot_ratio_fidelity(gen: pd.DataFrame, out_stem, *, methods: Sequence[str] | None = None) -> list[Path]:
    """Achieved vs target routing ratio under calibration thresholds, with the identity line.

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a panel per
    (SLM, method), a line per held-out dataset (mean over runs; the achieved ratio does not
    depend on the LLM, so LLMs are averaged too). ``methods`` adds panels (with a note) for
    methods that have no rows at all, e.g. an empty calibration set.
    """
    table = _require(gen, ("slm", "dataset", "method", "target_ratio", "achieved_ratio"), "ratio fidelity")
    slms = _ordered(table["slm"])
    all_methods = _ordered(list(table["method"]) + list(methods or []), list(METHOD_NAMES))
    datasets = _ordered(table["dataset"], list(DATASET_NAMES))
    single = len(slms) == 1
    handles = [Line2D([], [], color="black", ls=":", lw=1.2, label="Achieved = target")] + _dataset_handles(datasets)
    facets = _Facets(slms, all_methods, panel=(3.3, 3.3), handles=handles, legend_title="Held-out dataset",
                     title="Share of queries actually routed with calibration thresholds vs. the share targeted"
                           + (f" — SLM: {slms[0]}" if single else ""))
    fallback = sns.color_palette("husl", 12)
    for (slm, method), ax in facets:
        cell = table[(table["slm"] == slm) & (table["method"] == method)]
        facets.title(ax, method_label(method) if single else f"{slm} · {method_label(method)}")
        _percent_axes(ax, xlabel="Target routing ratio (%)",
                      ylabel="Achieved routing ratio (%)" if facets.first_in_row(ax) else None)
        ax.set_ylim(0, 100)
        ax.set_aspect("equal")
        ax.plot([0, 100], [0, 100], color="black", ls=":", lw=1.2, zorder=3)
        if cell.empty:
            _note(ax, "No calibration thresholds\n(empty calibration set)")
            continue
        for i, dataset in enumerate(datasets):
            line = cell[cell["dataset"] == dataset].groupby("target_ratio")["achieved_ratio"].mean()
            if len(line):
                ax.plot(line.index * 100, line.to_numpy() * 100, lw=1.2,
                        color=_color(dataset, DATASET_COLORS, fallback, i))
    return _save(facets.fig, out_stem)
