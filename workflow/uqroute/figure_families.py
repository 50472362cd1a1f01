"""The figure families, declared once: what one figure is drawn for and where the report files it.

Light on purpose (the workflow reads it while it builds the DAG). The rest of a family is found by its
name: its results path is derived here (``uqroute.paths``), its drawing is
``uqroute.jobs.figures.FIGURES[name]``, its inputs are ``FIGURE_INPUTS[name]`` in workflow/rules/common.smk,
and its report caption is ``workflow/report/<name>.rst``. The figures stage makes one rule per family from
this list, and ``snakemake figures`` draws every figure of every family.
"""

from __future__ import annotations

from dataclasses import dataclass

# How the Snakemake report labels a figure's wildcard.
_LABELS = {"llm": "LLM", "dataset": "dataset", "slm": "SLM"}


@dataclass(frozen=True)
class FigureFamily:
    """``scope``: the wildcards of one figure: ``()`` for one figure of the whole grid, ``("llm", "dataset")``
    for one per LLM and dataset, ``("slm",)`` for one per SLM. ``category``: the report's section.
    ``title``: the report's label of a figure drawn per cell (families with a scope)."""

    name: str
    scope: tuple[str, ...]
    category: str
    title: str | None = None

    @property
    def kind(self) -> str:
        """Its results path kind and its rule's name."""
        return f"figure_{self.name}"

    @property
    def stem(self) -> str:
        """Its figures' path below the results (and the logs) folder, without the format."""
        return "/".join(["figures", self.name, *(f"{{{field}}}" for field in self.scope)])

    def report_options(self) -> dict:
        """``report()``'s subcategory and labels for one of its figures (none for a grid-wide figure)."""
        if not self.scope:
            return {}
        options = {"labels": {**{_LABELS[field]: f"{{{field}}}" for field in self.scope}, "figure": self.title}}
        if "llm" in self.scope:
            options["subcategory"] = "{llm}"
        return options


FIGURE_FAMILIES: dict[str, FigureFamily] = {family.name: family for family in (
    FigureFamily("auroc_heatmaps", (), "2. Alignment"),
    FigureFamily("routing_curves", ("llm", "dataset"), "3. Routing", "accuracy vs routing ratio"),
    FigureFamily("relative_accuracy", ("llm", "dataset"), "4. Relative accuracy", "relative accuracy"),
    FigureFamily("confidence_distributions", ("slm",), "5. Confidence distributions", "confidence distributions"),
    FigureFamily("generalization", ("llm", "dataset"), "6. Generalization", "calibration data vs ground truth"),
    FigureFamily("ratio_fidelity", (), "6. Generalization"),
)}
