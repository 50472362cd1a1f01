"""Jobs of the figures stage: draw one figure with its family's drawing (``uqroute.figure_families``), from the
rule's named inputs to the PNG output and the PDF beside it. A paper figure (``results/paper/fig<N>``) also hands
the drawing its selection from :data:`uqroute.paper_figures.PAPER_FIGURES`.
"""

from __future__ import annotations

from ..figure_families import Inputs, figure_family, figure_stem
from ..paper_figures import paper_figure as paper_figure_spec


def _checked_pair(png: str, pdf: str | None) -> str:
    """The PNG path; the drawing writes the PDF beside it, so a PDF output elsewhere is refused."""
    stem = figure_stem(png)
    if pdf is not None and pdf != stem + ".pdf":
        raise ValueError(f"figure outputs {png} and {pdf}: the PDF is written beside the PNG, as {stem}.pdf")
    return png


def figure(*, family: str, inputs: Inputs, png: str, pdf: str | None = None) -> None:
    """Draw one figure of ``family`` to ``png`` and the PDF beside it."""
    figure_family(family).draw(inputs, _checked_pair(png, pdf), None)


def paper_figure(*, number: int | str, inputs: Inputs, png: str, pdf: str | None = None) -> None:
    """Draw the paper's Figure ``number`` from its selected cells (its inputs) to ``png`` and the PDF."""
    selection = paper_figure_spec(number)
    figure_family(selection.family).draw(inputs, _checked_pair(png, pdf), selection)
