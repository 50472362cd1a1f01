"""Accuracy vs routing ratio (paper Figures 2, 10-13) and relative accuracy on the most confident queries (Figure 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..datasets import DATASET_NAMES, dataset_label

from .layout import (
    ORACLE_STYLE,
    RANDOM_STYLE,
    Facets,
    method_color,
    method_handles,
    method_order,
    name_missing,
    note,
    ordered,
    percent_axes,
    require_columns,
    save_figure,
)


def curve_rows(table: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = table[["llm", "dataset"]].drop_duplicates()
    datasets = ordered(pairs["dataset"], list(DATASET_NAMES))
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (str(p[0]), datasets.index(p[1])))


def _pair_text(rows: list[tuple[str, str]], arrow: str) -> tuple[str, Callable[[str, str, str], str]]:
    """Title suffix shared by all panels, and the per-panel title for (llm, dataset, slm)."""
    if len(rows) == 1:
        llm, dataset = rows[0]
        return f" — {dataset_label(dataset)}, LLM: {llm}", lambda llm, dataset, slm: f"SLM: {slm}"
    return "", lambda llm, dataset, slm: f"{slm} {arrow} {llm} · {dataset_label(dataset)}"


def _band(ax, x, line: pd.DataFrame, low: str, high: str, color, *, scale: float = 1.0) -> None:
    """A curve's bootstrap band (95 % over the questions), where the table has one."""
    if low in line.columns and line[low].notna().any():
        ax.fill_between(x, line[low].to_numpy(dtype=float) * scale, line[high].to_numpy(dtype=float) * scale,
                        color=color, alpha=0.15, lw=0, zorder=1)


def plot_routing_curves(curves: pd.DataFrame, out_stem, *, no_confidence=frozenset()) -> list[Path]:
    """Overall accuracy vs routing ratio: a row per (LLM, dataset), a panel per SLM (Fig. 2, 10-13).

    ``curves``: routing curves stacked with ``slm, llm, dataset, method`` columns. One line per
    UQ method, plus random routing (dashed, drawn on top) and the oracle (dotted), both
    method-independent. A single (LLM, dataset) wraps its SLM panels into rows of four.
    ``no_confidence``: (slm, dataset, method) cells without a single valid confidence; their
    curve only replays the input order, so it is left out and named in the panel.
    """
    table = require_columns(curves, ("slm", "llm", "dataset", "method", "ratio", "accuracy", "random_accuracy",
                              "oracle_accuracy"), "routing curves")
    rows = curve_rows(table)
    slms = ordered(table["slm"])
    methods = method_order(table["method"])
    suffix, panel_title = _pair_text(rows, "→")
    handles = method_handles(methods) + [
        Line2D([], [], label="Random routing", **{k: v for k, v in RANDOM_STYLE.items() if k != "zorder"}),
        Line2D([], [], label="Oracle routing", **ORACLE_STYLE),
    ]
    facets = Facets(rows, slms, sharey=True, handles=handles, legend_title="Routing by",
                     title=f"Overall accuracy vs. share of queries routed to the LLM (lowest SLM confidence "
                           f"first; bands: 95 % bootstrap over the questions){suffix}")
    for ((llm, dataset), slm), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
        facets.title(ax, panel_title(llm, dataset, slm))
        percent_axes(ax, xlabel="Queries routed to the LLM (%)",
                      ylabel="Overall accuracy (%)" if facets.first_in_row(ax) else None)
        if cell.empty:
            note(ax, "No routing curve for this SLM")
            continue
        for i, method in enumerate(methods):
            line = cell[cell["method"] == method].sort_values("ratio")
            if len(line) and (slm, dataset, method) not in no_confidence:
                color = method_color(method, i)
                ax.plot(line["ratio"] * 100, line["accuracy"] * 100, lw=1.3, zorder=2, color=color)
                _band(ax, line["ratio"] * 100, line, "accuracy_low", "accuracy_high", color, scale=100)
        base = cell[cell["method"] == cell["method"].iloc[0]].sort_values("ratio")
        ax.plot(base["ratio"] * 100, base["oracle_accuracy"] * 100, **ORACLE_STYLE)
        ax.plot(base["ratio"] * 100, base["random_accuracy"] * 100, **RANDOM_STYLE)
        name_missing(ax, cell, methods, [m for m in methods if (slm, dataset, m) in no_confidence])
    return save_figure(facets.fig, out_stem)


def plot_relative_accuracy(rel: pd.DataFrame, out_stem, *, no_confidence=frozenset()) -> list[Path]:
    """SLM/LLM accuracy on the most confident queries vs % least confident excluded (Fig. 3).

    ``rel``: relative-accuracy rows stacked with ``slm, llm, dataset, method`` columns; a row
    per (LLM, dataset), a panel per SLM, a line per UQ method. A point is missing where the
    LLM gets none of the kept queries right (ratio undefined). ``no_confidence`` as for
    :func:`plot_routing_curves`.
    """
    table = require_columns(rel, ("slm", "llm", "dataset", "method", "excluded_pct", "relative_accuracy"),
                     "relative accuracy")
    rows = curve_rows(table)
    slms = ordered(table["slm"])
    methods = method_order(table["method"])
    suffix, panel_title = _pair_text(rows, "vs")
    handles = method_handles(methods) + [Line2D([], [], label="SLM = LLM", **ORACLE_STYLE)]
    facets = Facets(rows, slms, sharey=True, handles=handles, legend_title="Confidence from",
                     title=f"SLM accuracy relative to the LLM on the SLM's most confident queries (bands: 95 % "
                           f"bootstrap over the questions){suffix}")
    for ((llm, dataset), slm), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)]
        facets.title(ax, panel_title(llm, dataset, slm))
        percent_axes(ax, xlabel="Lowest-confidence queries excluded (%)",
                      ylabel="Relative accuracy\n(SLM acc. / LLM acc., ×)" if facets.first_in_row(ax) else None)
        ax.axhline(1.0, **ORACLE_STYLE)
        values = cell["relative_accuracy"].to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(values).any():
            note(ax, "No defined relative accuracy\n(no rows, or the LLM is never right)")
            continue
        for i, method in enumerate(methods):
            line = cell[cell["method"] == method].sort_values("excluded_pct")
            if len(line) and (slm, dataset, method) not in no_confidence:
                color = method_color(method, i)
                ax.plot(line["excluded_pct"], line["relative_accuracy"], marker="o", ms=3, lw=1.3, zorder=2,
                        color=color)
                _band(ax, line["excluded_pct"], line, "relative_low", "relative_high", color)
        name_missing(ax, cell, methods, [m for m in methods if (slm, dataset, m) in no_confidence])
    return save_figure(facets.fig, out_stem)
