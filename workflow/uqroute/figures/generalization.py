"""Routing with calibration-data thresholds on an unseen dataset against the ground truth (paper Figures 5, 14-17),
how close the achieved ratio comes to the target, and how close the share controller keeps it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from ..datasets import DATASET_NAMES, dataset_label
from ..uq.registry import method_label

from .layout import (
    RANDOM_STYLE,
    Facets,
    dataset_color,
    dataset_handles,
    method_color,
    method_order,
    note,
    ordered,
    percent_axes,
    require_columns,
    save_figure,
)
from .routing import curve_rows


def plot_generalization(gen: pd.DataFrame, curves: pd.DataFrame | None, out_stem, *,
                        methods: Sequence[str] | None = None) -> list[Path]:
    """Routing with leave-one-out calibration thresholds vs the ground truth (Fig. 5, 14-17).

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a row per
    (LLM, held-out dataset, SLM), a panel per method (a single row wraps into rows of four).
    Coloured line: accuracy at each target ratio with calibration thresholds, mean over runs; dark band:
    min-max over runs (the calibration sampling seeds), light band: the 95 % bootstrap band over the held-out
    questions (``accuracy_low/_high``, mean over runs), where the table has it. Black line: the ground truth,
    the target's own routing curve (from
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
        table = require_columns(gen, columns, "generalization")
        frame = table
    rows = [(llm, dataset, slm) for llm, dataset in curve_rows(frame)
            for slm in ordered(frame.loc[(frame["llm"] == llm) & (frame["dataset"] == dataset), "slm"])]
    names = list(table["method"]) + list(methods or [])
    if has_curves:
        in_rows = pd.Series(list(zip(curves["llm"], curves["dataset"], curves["slm"]))).isin(rows).to_numpy()
        names += list(curves.loc[in_rows, "method"])
    all_methods = method_order(names)
    n_runs = table["run"].nunique()
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    handles = [
        Line2D([], [], color="0.3", lw=1.6, marker="o", ms=3,
               label=f"Calibration thresholds, mean of {runs}\n(dark band: min–max over runs;\nlight band: 95 % "
                     "over the held-out questions)"),
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
    facets = Facets(rows, all_methods, sharey=True, handles=handles,
                     title=f"Routing an unseen dataset with thresholds from calibration data of the other "
                           f"datasets{suffix}")
    for ((llm, dataset, slm), method), ax in facets:
        cell = table[(table["llm"] == llm) & (table["dataset"] == dataset) & (table["slm"] == slm)
                     & (table["method"] == method)]
        head = f"{slm} · {method_label(method)}"
        facets.title(ax, head if suffix else f"{slm} → {llm} · {method_label(method)}\n"
                                             f"held out: {dataset_label(dataset)}")
        percent_axes(ax, xlabel="Target routing ratio (%)",
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
            note(ax, "No calibration thresholds\n(empty calibration set,\ne.g. no valid confidence)")
            continue
        stats = cell.groupby("target_ratio")["accuracy"].agg(["mean", "min", "max"])
        x = stats.index.to_numpy(dtype=float) * 100
        color = method_color(method, all_methods.index(method))
        if "accuracy_low" in cell.columns and cell["accuracy_low"].notna().any():
            band = cell.groupby("target_ratio")[["accuracy_low", "accuracy_high"]].mean()
            ax.fill_between(x, band["accuracy_low"] * 100, band["accuracy_high"] * 100, color=color, alpha=0.12,
                            lw=0, zorder=1)
        ax.fill_between(x, stats["min"] * 100, stats["max"] * 100, color=color, alpha=0.3, lw=0, zorder=1)
        ax.plot(x, stats["mean"] * 100, color=color, lw=1.6, marker="o", ms=2.5, zorder=2)
    return save_figure(facets.fig, out_stem)


def plot_ratio_fidelity(gen: pd.DataFrame, out_stem, *, methods: Sequence[str] | None = None) -> list[Path]:
    """Achieved vs target routing ratio under calibration thresholds, with the identity line.

    ``gen``: generalization tables stacked with ``slm, llm, dataset, method`` columns; a panel per
    (SLM, method), a line per held-out dataset (mean over runs; the achieved ratio does not
    depend on the LLM, so LLMs are averaged too), with its 95 % bootstrap band over the held-out questions
    (``achieved_ratio_low/_high``, mean over runs) where the table has it. ``methods`` adds panels (with a note)
    for methods that have no rows at all, e.g. an empty calibration set.
    """
    table = require_columns(gen, ("slm", "dataset", "method", "target_ratio", "achieved_ratio"), "ratio fidelity")
    slms = ordered(table["slm"])
    all_methods = method_order(list(table["method"]) + list(methods or []))
    datasets = ordered(table["dataset"], list(DATASET_NAMES))
    single = len(slms) == 1
    handles = [Line2D([], [], color="black", ls=":", lw=1.2, label="Achieved = target")] + dataset_handles(datasets)
    facets = Facets(slms, all_methods, panel=(3.3, 3.3), handles=handles, legend_title="Held-out dataset",
                     title="Share of queries actually routed with calibration thresholds vs. the share targeted "
                           "(bands: 95 % bootstrap over the held-out questions)"
                           + (f" — SLM: {slms[0]}" if single else ""))
    for (slm, method), ax in facets:
        cell = table[(table["slm"] == slm) & (table["method"] == method)]
        facets.title(ax, method_label(method) if single else f"{slm} · {method_label(method)}")
        percent_axes(ax, xlabel="Target routing ratio (%)",
                      ylabel="Achieved routing ratio (%)" if facets.first_in_row(ax) else None)
        ax.set_ylim(0, 100)
        ax.set_aspect("equal")
        ax.plot([0, 100], [0, 100], color="black", ls=":", lw=1.2, zorder=3)
        if cell.empty:
            note(ax, "No calibration thresholds\n(empty calibration set)")
            continue
        banded = "achieved_ratio_low" in cell.columns
        for i, dataset in enumerate(datasets):
            rows = cell[cell["dataset"] == dataset]
            line = rows.groupby("target_ratio")["achieved_ratio"].mean()
            if len(line):
                color = dataset_color(dataset, i)
                ax.plot(line.index * 100, line.to_numpy() * 100, lw=1.2, color=color)
                if banded and rows["achieved_ratio_low"].notna().any():
                    band = rows.groupby("target_ratio")[["achieved_ratio_low", "achieved_ratio_high"]].mean()
                    ax.fill_between(band.index * 100, band["achieved_ratio_low"] * 100,
                                    band["achieved_ratio_high"] * 100, color=color, alpha=0.12, lw=0)
    return save_figure(facets.fig, out_stem)


# How the share-control figure draws each router: the static threshold in grey, the controller in the method's
# colour.
STATIC_COLOR = "0.45"


def _checkpoint_order(checkpoints) -> list[str]:
    """Request counts in ascending order, then ``end``."""
    present = set(checkpoints)
    counts = sorted((c for c in present if c != "end"), key=int)
    return counts + (["end"] if "end" in present else [])


def plot_share_control(table: pd.DataFrame, out_stem, *, methods: Sequence[str] | None = None) -> list[Path]:
    """Routed share held by the static calibration threshold vs the label-free share controller, and accuracy.

    ``table``: share-control tables of one SLM stacked with ``slm, llm, dataset, method`` columns. A column of
    panels per method. Top row: |achieved - target| after each checkpoint's requests (x) for both routers, mean
    over the held-out datasets, calibration runs and target ratios strictly between 0 and 1 (at 0 and 1 both
    routers are exact), with the mean of the 95 % intervals over the replayed streams as bars. A row per LLM
    below: accuracy at the end of the stream against the target ratio, mean over datasets and runs, with the
    mean interval as a band. ``methods`` adds columns (with a note) for methods without rows.
    """
    table = require_columns(table, ("slm", "llm", "dataset", "method", "run", "target_ratio", "router",
                                    "checkpoint", "abs_error", "accuracy"), "share control")
    slms = ordered(table["slm"])
    all_methods = method_order(list(table["method"]) + list(methods or []))
    llms = ordered(table["llm"])
    checkpoints = _checkpoint_order(table["checkpoint"])
    datasets = ordered(table["dataset"], list(DATASET_NAMES))
    handles = [Line2D([], [], color=STATIC_COLOR, lw=1.6, ls="--", marker="s", ms=4,
                      label="Static calibration threshold"),
               Line2D([], [], color="0.1", lw=1.6, marker="o", ms=4,
                      label="Share controller (method colour)\nbars, bands: 95 % over replayed streams")]
    rows = ["error", *llms]
    facets = Facets(rows, all_methods, handles=handles,
                     title=f"Keeping the routed share on target without labels, on {len(datasets)} held-out "
                           f"dataset{'s' if len(datasets) != 1 else ''} — SLM: {', '.join(slms)}")
    for (row, method), ax in facets:
        cell = table[table["method"] == method]
        color = method_color(method, all_methods.index(method))
        if row == "error":
            facets.title(ax, f"{method_label(method)}: routed share off target")
            ax.set_xlabel("Requests replayed")
            if facets.first_in_row(ax):
                ax.set_ylabel("|achieved − target| (% points)")
            ax.grid(True, alpha=0.3, linewidth=0.6)
            inner = cell[(cell["target_ratio"] > 0) & (cell["target_ratio"] < 1)]
            if inner.empty:
                note(ax, "No calibration thresholds\n(empty calibration set)")
                continue
            x = range(len(checkpoints))
            for offset, router, style in ((-0.08, "static", dict(color=STATIC_COLOR, ls="--", marker="s")),
                                          (0.08, "controller", dict(color=color, ls="-", marker="o"))):
                stats = (inner[inner["router"] == router].groupby("checkpoint")[["abs_error", "abs_error_low",
                                                                                 "abs_error_high"]].mean()
                         .reindex(checkpoints) * 100)
                positions = [i + offset for i in x]
                ax.errorbar(positions, stats["abs_error"], yerr=[stats["abs_error"] - stats["abs_error_low"],
                                                                 stats["abs_error_high"] - stats["abs_error"]],
                            lw=1.6, ms=4, capsize=3, **style)
            ax.set_xticks(list(x), checkpoints)
            ax.set_ylim(bottom=0)
            continue
        rows_of = cell[(cell["llm"] == row) & (cell["checkpoint"] == "end")]
        facets.title(ax, f"{method_label(method)}: accuracy, LLM {row}")
        percent_axes(ax, xlabel="Target routing ratio (%)",
                     ylabel="Accuracy at the stream's end (%)" if facets.first_in_row(ax) else None)
        if rows_of.empty:
            note(ax, "No calibration thresholds\n(empty calibration set)")
            continue
        for router, style in (("static", dict(color=STATIC_COLOR, ls="--")), ("controller", dict(color=color))):
            stats = rows_of[rows_of["router"] == router].groupby("target_ratio")[
                ["accuracy", "accuracy_low", "accuracy_high"]].mean() * 100
            ratios = stats.index.to_numpy(dtype=float) * 100
            ax.fill_between(ratios, stats["accuracy_low"], stats["accuracy_high"], color=style["color"], alpha=0.12,
                            lw=0)
            ax.plot(ratios, stats["accuracy"], lw=1.6, **style)
    return save_figure(facets.fig, out_stem)
