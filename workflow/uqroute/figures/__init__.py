"""The paper's figure families, drawn from the analysis tables: one module per family, layout helpers in
:mod:`.layout`.

Every function takes the (stacked) tables, draws one figure and writes ``{out_stem}.pdf`` and
``{out_stem}.png`` atomically, returning both paths. Figures are built on
:class:`matplotlib.figure.Figure` directly (Agg rendering, no pyplot), so importing this module
changes no global matplotlib state and leaks no open figures in long runs.
"""

from .alignment import plot_auroc_heatmaps
from .distributions import plot_confidence_distributions
from .generalization import plot_generalization, plot_ratio_fidelity, plot_share_control
from .layout import save_figure
from .routing import plot_relative_accuracy, plot_routing_curves

__all__ = ["plot_auroc_heatmaps", "plot_confidence_distributions", "plot_generalization",
           "plot_ratio_fidelity", "plot_relative_accuracy", "plot_routing_curves", "plot_share_control",
           "save_figure"]
