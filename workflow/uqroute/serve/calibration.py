"""The routing threshold from a released calibration set, by the generalization rule's own function.

A release file is ``results/release/<slm>/<method>.parquet`` (``run, source_dataset, id,
confidence, bin, seed``); its folder and stem say which SLM and method it calibrates, so a
router refuses one made for another model or method instead of routing by the wrong scale.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from uqroute.analysis.calibration import thresholds_for_ratios
from uqroute.io import read_parquet
from uqroute.paths import cell_of
from uqroute.uq.registry import METHODS


class CalibrationError(ValueError):
    """The calibration file is missing, unreadable or made for another SLM or method."""


def calibration_confidences(path: str | os.PathLike, run: int = 0) -> np.ndarray:
    """Run ``run``'s confidences of the calibration set at ``path`` (what every threshold of it is set on)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found (the workflow writes it as "
                               "results/release/<slm>/<method>.parquet)")
    table = read_parquet(path, ["run", "confidence"])
    runs = sorted(int(r) for r in table["run"].unique())
    if run not in runs:
        raise CalibrationError(f"{path}: no calibration run {run}; runs in the file: {runs}")
    return table.loc[table["run"] == run, "confidence"].to_numpy(dtype=float)


def threshold_for_ratio(confidences: np.ndarray, ratio: float, where: str = "calibration set") -> float:
    """Confidence threshold that routes ``ratio`` of ``confidences``.

    Routing sends ``confidence < threshold`` (and answers without a confidence) to the LLM:
    :func:`uqroute.analysis.calibration.thresholds_for_ratios`, exactly as the generalization rule.
    """
    try:
        return float(thresholds_for_ratios(confidences, np.array([ratio]))[0])
    except ValueError as err:
        raise CalibrationError(f"{where}: {err}") from err


def calibration_threshold(path: str | os.PathLike, ratio: float, run: int = 0) -> float:
    """Confidence threshold that routes ``ratio`` of run ``run`` of the calibration set at ``path``."""
    return threshold_for_ratio(calibration_confidences(path, run), ratio, f"{path}: run {run}")


def check_calibration_file(path: str | os.PathLike, slm: str, method: str) -> None:
    """Refuse a calibration file that is absent or made for another SLM or method, naming both."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} not found; for SLM {slm} and method {method} the "
                               f"workflow writes results/release/{slm}/{method}.parquet")
    try:
        cell = cell_of(str(path), "release")
    except ValueError:
        cell = {"slm": path.parent.name, "method": path.stem}
    file_slm, file_method = cell["slm"], cell["method"]
    if file_method not in METHODS:
        raise CalibrationError(f"{path}: cannot tell which method it calibrates; a release file is named "
                               f"release/<slm>/<method>.parquet (here: {slm}/{method}.parquet)")
    if (file_slm, file_method) != (slm, method):
        raise CalibrationError(f"{path} calibrates SLM {file_slm} with method {file_method}, but the router "
                               f"serves SLM {slm} with method {method}")
