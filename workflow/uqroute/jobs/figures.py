"""Jobs of the figures stage: one drawing function per figure family, looked up in :data:`FIGURES`.

A family's function takes the rule's named inputs (each a list of paths) and the PNG output path; the
PDF is written beside it. What a figure is about (its LLM, dataset or SLM) is read from its output path,
or for a paper figure (``results/paper/fig<N>``) from :data:`uqroute.paper_figures.PAPER_FIGURES`: its
inputs are the selected cells' tables, and the two families that read grid-wide tables (the heatmaps and
relative accuracy) filter them to the selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import pandas as pd

from ..io import read_parquet, read_tagged
from ..paper_figures import PaperFigure
from ..paper_figures import paper_figure as paper_figure_spec
from ..paths import cell_of, cells_of

Inputs = Mapping[str, Sequence[str]]
Selection = Optional[PaperFigure]


def _stem(output_png: str) -> str:
    return str(Path(output_png).with_suffix(""))


def _methods(paths: Sequence[str], kind: str) -> list[str]:
    """Every method of a figure's cells, also those whose tables are empty (shown with a note)."""
    return list(dict.fromkeys(cell_of(path, kind)["method"] for path in paths))


def auroc_heatmaps(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures

    table = read_parquet(inputs["alignment"][0])
    if selection is not None:
        table = table[table["dataset"].isin(selection.datasets)]
    figures.plot_auroc_heatmaps(table, _stem(output_png))


def routing_curves(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures

    no_confidence = {cell for path, cell in zip(inputs["uq"], cells_of(inputs["uq"], "uq"))
                     if not read_parquet(path, ["valid"])["valid"].any()}
    figures.plot_routing_curves(read_tagged(inputs["curves"], "routing"), _stem(output_png),
                                no_confidence=no_confidence)


def relative_accuracy(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures
    from ..analysis.alignment import cells_without_confidence

    if selection is None:
        cell = cell_of(output_png, "figure_relative_accuracy")
        pairs = [(cell["llm"], cell["dataset"])]
    else:
        pairs = list(selection.pairs)
    table = read_parquet(inputs["relative"][0])
    chosen = pd.MultiIndex.from_frame(table[["llm", "dataset"]]).isin(pairs)
    figures.plot_relative_accuracy(table[chosen], _stem(output_png),
                                   no_confidence=cells_without_confidence(read_parquet(inputs["alignment"][0])))


def confidence_distributions(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures

    # A paper figure names its (SLM, method) panels; the workflow's own figure draws them all.
    figures.plot_confidence_distributions(read_tagged(inputs["uq"], "uq"), _stem(output_png),
                                          panels=selection.pairs if selection is not None else None)


def generalization(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures

    figures.plot_generalization(read_tagged(inputs["generalization"], "generalization"),
                                read_tagged(inputs["routing"], "routing"), _stem(output_png),
                                methods=_methods(inputs["generalization"], "generalization"))


def ratio_fidelity(inputs: Inputs, output_png: str, selection: Selection = None) -> None:
    from .. import figures

    figures.plot_ratio_fidelity(read_tagged(inputs["generalization"], "generalization"), _stem(output_png),
                                methods=_methods(inputs["generalization"], "generalization"))


FIGURES: dict[str, Callable[[Inputs, str, Selection], None]] = {
    "auroc_heatmaps": auroc_heatmaps,
    "routing_curves": routing_curves,
    "relative_accuracy": relative_accuracy,
    "confidence_distributions": confidence_distributions,
    "generalization": generalization,
    "ratio_fidelity": ratio_fidelity,
}


def _checked_pair(png: str, pdf: str | None) -> str:
    """The PNG path; the drawing writes the PDF beside it, so a PDF output elsewhere is refused."""
    if pdf is not None and pdf != _stem(png) + ".pdf":
        raise ValueError(f"figure outputs {png} and {pdf}: the PDF is written beside the PNG, as {_stem(png)}.pdf")
    return png


def figure(*, family: str, inputs: Inputs, png: str, pdf: str | None = None) -> None:
    """Draw one figure of ``family`` to ``png`` and the PDF beside it."""
    try:
        draw = FIGURES[family]
    except KeyError:
        raise ValueError(f"unknown figure family {family!r}; known: {', '.join(FIGURES)}") from None
    draw(inputs, _checked_pair(png, pdf))


def paper_figure(*, number: int | str, inputs: Inputs, png: str, pdf: str | None = None) -> None:
    """Draw the paper's Figure ``number`` from its selected cells (its inputs) to ``png`` and the PDF."""
    selection = paper_figure_spec(number)
    FIGURES[selection.family](inputs, _checked_pair(png, pdf), selection)
