"""Analysis of UQ tables: alignment metrics, routing curves, calibration data, findings.

Everything here is vectorized NumPy/pandas over one (slm, dataset, method) cell at a time.
"""

from uqroute.analysis.alignment import alignment_metrics, alignment_table
from uqroute.analysis.calibration import (
    build_calibration_set,
    generalization,
    pool_confidences,
    thresholds_for_ratios,
)
from uqroute.analysis.findings import distribution_distances, findings_table
from uqroute.analysis.routing import align_llm_correct, relative_accuracy, routing_curve, routing_summary

__all__ = [
    "align_llm_correct",
    "alignment_metrics",
    "alignment_table",
    "build_calibration_set",
    "distribution_distances",
    "findings_table",
    "generalization",
    "pool_confidences",
    "relative_accuracy",
    "routing_curve",
    "routing_summary",
    "thresholds_for_ratios",
]
