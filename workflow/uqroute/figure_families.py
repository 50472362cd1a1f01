"""The figure families, each declared once: what one figure is drawn for, which tables it reads, how it is
drawn and where the report files it.

A family's results path is derived from its declaration (``uqroute.paths``); the figures stage makes one rule
per family from :data:`FIGURE_FAMILIES`, whose inputs are :meth:`FigureFamily.inputs`; the figure job
(``uqroute.jobs.figures``) calls its ``draw``; its report caption is ``workflow/report/<name>.rst``. The paper's
numbered figures (``uqroute.paper_figures``) name a family and the cells it shows, and go through the same
``inputs`` and ``draw``. ``snakemake figures`` draws every figure of every family.

The workflow reads this module while it builds the DAG, so the plotting libraries and the analysis load only
when a figure is drawn (pandas and the Parquet readers are loaded there already, by the registries).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import pandas as pd

from .io import read_parquet, read_tagged
from .paper_figures import PaperFigure
from .paths import cell_of, cells_of, fields_of, results_path

if TYPE_CHECKING:
    from .plan import Grid

Inputs = Mapping[str, Sequence[str]]
Selection = Optional[PaperFigure]
# The cells one figure shows: (LLM, dataset) pairs, or (SLM, method) pairs for the confidence distributions.
Pairs = Sequence[tuple[str, str]]
# Where an input table lives: its results path kind and the fields that fill it (uqroute.paths).
TableRef = tuple[str, dict[str, str]]

# How the Snakemake report labels a figure's wildcard.
_LABELS = {"llm": "LLM", "dataset": "dataset", "slm": "SLM"}


@dataclass(frozen=True)
class FigureFamily:
    """``scope``: the wildcards of one figure: ``()`` for one figure of the whole grid, ``("llm", "dataset")``
    for one per LLM and dataset, ``("slm",)`` for one per SLM. ``category``: the report's section.
    ``title``: the report's label of a figure drawn per cell (families with a scope). ``tables``: the named
    input tables of a figure showing ``pairs`` of a grid. ``draw``: draws one figure from those tables (named
    inputs, each a list of paths) to a PNG and the PDF beside it; a paper figure also passes its selection."""

    name: str
    scope: tuple[str, ...]
    category: str
    title: str | None
    tables: Callable[[Grid, Pairs], dict[str, list[TableRef]]]
    draw: Callable[[Inputs, str, Selection], None]

    @property
    def kind(self) -> str:
        """Its results path kind and its rule's name."""
        return f"figure_{self.name}"

    @property
    def stem(self) -> str:
        """Its figures' path below the results (and the logs) folder, without the format."""
        return "/".join(["figures", self.name, *(f"{{{field}}}" for field in self.scope)])

    def output(self, results: str, ext: str) -> str:
        """Its figures' path pattern in one format (``pdf``, ``png``), its scope's fields left as wildcards."""
        return f"{results}/{self.stem}.{ext}"

    def path(self, results: str, ext: str, **cell: str) -> str:
        """The path of its figure of one cell (its scope's wildcards) in one format."""
        return self.output(results, ext).format(**cell)

    def cell_of(self, path: str) -> dict[str, str]:
        """The scope's fields of one of its figures' paths (any results folder, either format)."""
        return fields_of(str(Path(path).with_suffix("")), self.stem, self.kind)

    def report_options(self) -> dict:
        """``report()``'s subcategory and labels for one of its figures (none for a grid-wide figure)."""
        if not self.scope:
            return {}
        options = {"labels": {**{_LABELS[field]: f"{{{field}}}" for field in self.scope}, "figure": self.title}}
        if "llm" in self.scope:
            options["subcategory"] = "{llm}"
        return options

    def cells(self, grid: Grid) -> list[dict[str, str]]:
        """The wildcards of each of the family's own figures: one per value of its scope in the grid."""
        values = {"llm": grid.llms, "dataset": grid.datasets, "slm": grid.slms}
        return [dict(zip(self.scope, cell)) for cell in product(*(values[field] for field in self.scope))]

    def cell_pairs(self, grid: Grid, **cell: str) -> list[tuple[str, str]]:
        """The pairs the family's own figure of one cell (its scope's wildcards) shows."""
        if "slm" in self.scope:
            return [(cell["slm"], method) for method in grid.methods]
        return [(cell["llm"], cell["dataset"])] if self.scope else []

    def inputs(self, grid: Grid, pairs: Pairs, results: str) -> dict[str, list[str]]:
        """The results paths of the tables a figure showing ``pairs`` reads."""
        return {name: [results_path(results, kind, **fields) for kind, fields in tables]
                for name, tables in self.tables(grid, pairs).items()}


# ---- the tables each family reads ------------------------------------------------------------------------


def _routing(slm: str, llm: str, dataset: str, method: str) -> TableRef:
    return "routing", dict(slm=slm, llm=llm, dataset=dataset, method=method)


def _uq(slm: str, dataset: str, method: str) -> TableRef:
    return "uq", dict(slm=slm, dataset=dataset, method=method)


def _generalization(slm: str, llm: str, dataset: str, method: str) -> TableRef:
    return "generalization", dict(slm=slm, llm=llm, method=method, dataset=dataset)


def _share_control(slm: str, llm: str, dataset: str, method: str) -> TableRef:
    return "share_control", dict(slm=slm, llm=llm, method=method, dataset=dataset)


def _alignment_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    return {"alignment": [("alignment", {})]}


def _routing_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    return {
        "curves": [_routing(slm, llm, dataset, method)
                   for llm, dataset in pairs for slm in grid.slms for method in grid.methods],
        "uq": [_uq(slm, dataset, method) for _, dataset in pairs for slm in grid.slms for method in grid.methods],
    }


def _relative_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    return {"relative": [("relative_accuracy", {})], "alignment": [("alignment", {})]}


def _distribution_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    return {"uq": [_uq(slm, dataset, method) for dataset in grid.datasets for slm, method in pairs]}


def _generalization_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    cells = [(slm, llm, dataset, method)
             for llm, dataset in pairs for slm in grid.slms for method in grid.calibration_methods]
    return {"generalization": [_generalization(*cell) for cell in cells],
            "routing": [_routing(*cell) for cell in cells]}


def _fidelity_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    return {"generalization": [_generalization(*cell) for cell in grid.generalization_cells]}


def _share_control_tables(grid: Grid, pairs: Pairs) -> dict[str, list[TableRef]]:
    """The replays of an SLM's calibrated methods (its (SLM, method) pairs) on every held-out dataset."""
    return {"share_control": [_share_control(slm, llm, dataset, method) for slm, method in pairs
                              if method in grid.calibration_methods for llm in grid.llms for dataset in grid.datasets]}


# ---- drawing: read the tables, call uqroute.figures ---------------------------------------------------------


def figure_stem(output_png: str) -> str:
    """A figure's path without its format: the drawing writes the PDF beside the PNG."""
    return str(Path(output_png).with_suffix(""))


def _methods(paths: Sequence[str], kind: str) -> list[str]:
    """Every method of a figure's cells, also those whose tables are empty (shown with a note)."""
    return list(dict.fromkeys(cell_of(path, kind)["method"] for path in paths))


def draw_auroc_heatmaps(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries (matplotlib, seaborn, ~3 s); the Snakefile reads this module
    from . import figures

    table = read_parquet(inputs["alignment"][0])
    if selection is not None:
        table = table[table["dataset"].isin(selection.datasets)]
    figures.plot_auroc_heatmaps(table, figure_stem(output_png))


def draw_routing_curves(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, as in draw_auroc_heatmaps
    from . import figures

    no_confidence = {cell for path, cell in zip(inputs["uq"], cells_of(inputs["uq"], "uq"))
                     if not read_parquet(path, ["valid"])["valid"].any()}
    figures.plot_routing_curves(read_tagged(inputs["curves"], "routing"), figure_stem(output_png),
                                no_confidence=no_confidence)


def draw_relative_accuracy(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, and the analysis with scikit-learn (~2 s more)
    from . import figures
    from .analysis.alignment import cells_without_confidence

    if selection is None:
        cell = FIGURE_FAMILIES["relative_accuracy"].cell_of(output_png)
        pairs = [(cell["llm"], cell["dataset"])]
    else:
        pairs = list(selection.pairs)
    table = read_parquet(inputs["relative"][0])
    chosen = pd.MultiIndex.from_frame(table[["llm", "dataset"]]).isin(pairs)
    figures.plot_relative_accuracy(table[chosen], figure_stem(output_png),
                                   no_confidence=cells_without_confidence(read_parquet(inputs["alignment"][0])))


def draw_confidence_distributions(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, as in draw_auroc_heatmaps
    from . import figures

    # A paper figure names its (SLM, method) panels; the workflow's own figure draws them all.
    figures.plot_confidence_distributions(read_tagged(inputs["uq"], "uq"), figure_stem(output_png),
                                          panels=selection.pairs if selection is not None else None)


def draw_generalization(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, as in draw_auroc_heatmaps
    from . import figures

    figures.plot_generalization(read_tagged(inputs["generalization"], "generalization"),
                                read_tagged(inputs["routing"], "routing"), figure_stem(output_png),
                                methods=_methods(inputs["generalization"], "generalization"))


def draw_ratio_fidelity(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, as in draw_auroc_heatmaps
    from . import figures

    figures.plot_ratio_fidelity(read_tagged(inputs["generalization"], "generalization"), figure_stem(output_png),
                                methods=_methods(inputs["generalization"], "generalization"))


def draw_share_control(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    # deferred: the plotting libraries, as in draw_auroc_heatmaps
    from . import figures

    figures.plot_share_control(read_tagged(inputs["share_control"], "share_control"), figure_stem(output_png),
                               methods=_methods(inputs["share_control"], "share_control"))


FIGURE_FAMILIES: dict[str, FigureFamily] = {family.name: family for family in (
    FigureFamily("auroc_heatmaps", (), "2. Alignment", None, _alignment_tables, draw_auroc_heatmaps),
    FigureFamily("routing_curves", ("llm", "dataset"), "3. Routing", "accuracy vs routing ratio",
                 _routing_tables, draw_routing_curves),
    FigureFamily("relative_accuracy", ("llm", "dataset"), "4. Relative accuracy", "relative accuracy",
                 _relative_tables, draw_relative_accuracy),
    FigureFamily("confidence_distributions", ("slm",), "5. Confidence distributions", "confidence distributions",
                 _distribution_tables, draw_confidence_distributions),
    FigureFamily("generalization", ("llm", "dataset"), "6. Generalization", "calibration data vs ground truth",
                 _generalization_tables, draw_generalization),
    FigureFamily("ratio_fidelity", (), "6. Generalization", None, _fidelity_tables, draw_ratio_fidelity),
    FigureFamily("share_control", ("slm",), "6. Generalization", "routed share: static vs controller",
                 _share_control_tables, draw_share_control),
)}


def figure_family(name: str) -> FigureFamily:
    try:
        return FIGURE_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown figure family {name!r}; known: {', '.join(FIGURE_FAMILIES)}") from None
