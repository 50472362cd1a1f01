"""Layout shared by every figure family: fixed colours per method and dataset, panel grids, notes, saving."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..datasets import DATASET_NAMES, dataset_label
from ..io import atomic_path
from ..uq.registry import METHODS, method_label

# Fixed colours, so a method or dataset looks the same in every figure of a run: a method's is declared with it
# (MethodSpec.color); a method declared without one, or a dataset outside the registry, takes one of FALLBACK_COLORS.
FALLBACK_COLORS = sns.color_palette("husl", 12)
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


def ordered(values, known: Sequence[str] = ()) -> list:
    """Unique values, names of ``known`` first in its order, the rest sorted."""
    present = list(pd.unique(pd.Series(list(values), dtype=object)))
    first = [v for v in known if v in present]
    return first + sorted(v for v in present if v not in first)


def method_order(methods) -> list[str]:
    """The methods present in ``methods``, in the registry's order (the paper's eight first), unknown ones last."""
    return ordered(methods, list(METHODS))


def method_color(method: str, index: int):
    """A method's declared colour, or the fallback palette's ``index``-th."""
    spec = METHODS.get(method)
    return spec.color if spec is not None and spec.color else FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def dataset_color(dataset: str, index: int):
    return DATASET_COLORS.get(dataset, FALLBACK_COLORS[index % len(FALLBACK_COLORS)])


def require_columns(table: pd.DataFrame | None, columns: Sequence[str], figure: str) -> pd.DataFrame:
    if table is None or len(table) == 0:
        raise ValueError(f"{figure}: nothing to plot (empty table)")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{figure}: missing column(s) {missing}; has {list(table.columns)}")
    return table


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """Break ``text`` so each line fits ``width_in`` inches (about 0.55 em per character)."""
    chars = max(16, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def line_count(text: str) -> int:
    return text.count("\n") + 1


def legend_box(handles: list, title: str | None, ncols: int) -> tuple[float, float]:
    """Approximate (width, height) in inches of a legend of ``handles`` in ``ncols`` columns."""
    labels = [h.get_label() for h in handles]
    chars = max(len(part) for label in labels for part in label.split("\n"))
    entry_w = 0.9 + chars * 0.55 * LEGEND_SIZE / 72
    per_col = -(-len(labels) // ncols)
    tallest = max(line_count(label) for label in labels)
    height = per_col * tallest * 0.22 + 0.35 + (0.25 if title else 0.0)
    return entry_w * ncols + 0.2, height


class Facets:
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
            one_w, _ = legend_box(handles, legend_title, 1)
            ncols_legend = max(1, min(len(handles), int(panels_w // one_w)))
        legend_w, legend_h = legend_box(handles, legend_title, ncols_legend)
        width = panels_w + (legend_w if beside else 0.0)
        # The title spans the panels only: over a legend beside them it would run into it.
        title = wrap(title, panels_w - 0.2, TITLE_SIZE)
        height = panel[1] * n_rows + 0.3 * line_count(title) + 0.2
        if beside:
            height = max(height, legend_h + 0.3 * line_count(title) + 0.3)
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
        ax.set_title(wrap(text, self.panel_width - 0.3, PANEL_TITLE_SIZE), fontsize=PANEL_TITLE_SIZE)


def name_missing(ax, cell: pd.DataFrame, methods: Sequence[str], without_confidence: Sequence[str]) -> None:
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


def note(ax, text: str) -> None:
    """A visible message in an empty (or partly empty) panel, instead of a silent blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8.5, color="0.25",
            zorder=6, bbox=dict(boxstyle="round,pad=0.4", facecolor="white", edgecolor="0.6"))


def save_figure(fig: Figure, out_stem: str | os.PathLike) -> list[Path]:
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


def percent_axes(ax, *, xlabel: str, ylabel: str | None) -> None:
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3, linewidth=0.6)


def method_handles(methods: Sequence[str]) -> list:
    return [Line2D([], [], color=method_color(m, i), lw=2, label=method_label(m)) for i, m in enumerate(methods)]


def dataset_handles(datasets: Sequence[str]) -> list:
    return [Line2D([], [], color=dataset_color(d, i), lw=2, label=dataset_label(d)) for i, d in enumerate(datasets)]
