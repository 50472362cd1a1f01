"""The router card: what a released calibration set routes, and what to expect from it on unseen data.

A card (``release/{slm}/{method}.card.json``) sits beside its release file (``release/{slm}/{method}.parquet``)
and says, per target ratio of the generalization grid, the threshold the release file gives (every calibration
run's) and the routed share and accuracy that thresholds from such a calibration set reached on datasets they
never saw: the leave-one-dataset-out generalization tables, summarized over the held-out datasets with an
interval and a spread. It names the release file's SHA-256, so a router can refuse a card that describes
another file (:func:`load_card`).

Every number is finite or null (JSON has no infinity): a threshold of -inf (ratio 0: route nothing) or +inf
(ratio 1: route everything) is null, as is anything measured on nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from uqroute.analysis.calibration import thresholds_for_ratios

CARD_FORMAT = "uqroute.router_card/1"
CARD_SUFFIX = ".card.json"
UNSEEN_SOURCE = "generalization tables: each dataset held out of its calibration set"
# What the generalization tables give per (run, target ratio) and the card summarizes over datasets.
UNSEEN_COLUMNS = {"routed_share": "achieved_ratio", "accuracy": "accuracy"}


class CardError(ValueError):
    """A router card that is missing, unreadable, or made for another calibration file, SLM or method."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path_for(calibration_path: str | os.PathLike) -> Path:
    """The card beside a release file: ``<...>/<method>.card.json`` for ``<...>/<method>.parquet``."""
    path = Path(calibration_path)
    if path.suffix != ".parquet":
        raise CardError(f"{path}: not a calibration file (<slm>/<method>.parquet), so no card beside it")
    return path.with_suffix(CARD_SUFFIX)


def _number(value) -> float | None:
    """A finite float, or None (JSON null) for NaN, infinity or None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def over_datasets(values, level: float) -> dict:
    """Summary of one value per held-out dataset: ``mean``, its ``level`` Student-t interval over the datasets
    (``low``, ``high``; n - 1 degrees of freedom, clipped to [0, 1], the range of a share or an accuracy; null
    below two datasets) and ``spread`` (``min``, ``max``). Values that are not finite are left out; all null
    without any.

    The interval is for the mean over datasets like these, not a range for one new dataset: ``spread`` shows
    how far single datasets fell from it. Student's t rather than a bootstrap because the datasets are few (4 in
    the embedded default, 14 in the paper), where a percentile bootstrap over them is too narrow.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "spread": {"min": None, "max": None}}
    mean = float(values.mean())
    low = high = None
    if n >= 2:
        half = float(student_t.ppf((1 + level) / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
        low, high = max(mean - half, 0.0), min(mean + half, 1.0)
    return {"mean": _number(mean), "low": _number(low), "high": _number(high),
            "spread": {"min": _number(values.min()), "max": _number(values.max())}}


def calibration_runs(release: pd.DataFrame, label: str) -> tuple[list[int], list[int], int]:
    """The release table's runs (ascending), the seed of each, and the rows of one run (every run has as many:
    Algorithm 1 draws each bin's quota in every run). ``label`` names the table in errors."""
    missing = [c for c in ("run", "confidence", "seed") if c not in release.columns]
    if missing:
        raise ValueError(f"{label}: missing column(s) {missing}; has {list(release.columns)}")
    runs = sorted(int(run) for run in release["run"].unique())
    sizes = release.groupby("run").size()
    if sizes.nunique() > 1:
        raise ValueError(f"{label}: runs of unequal size {dict(sizes)}; a calibration set draws as many rows per run")
    seeds = []
    for run in runs:
        found = release.loc[release["run"] == run, "seed"].unique()
        if len(found) != 1:
            raise ValueError(f"{label}: run {run} has seeds {sorted(found)}, one expected")
        seeds.append(int(found[0]))
    return runs, seeds, int(sizes.iloc[0]) if len(sizes) else 0


def check_target_ratios(table: pd.DataFrame, target_ratios, label: str) -> None:
    """A generalization table's target ratios must be the card's grid (calibration.target_ratio_step); an empty
    table (nothing to calibrate on) has none."""
    found = np.unique(table["target_ratio"].to_numpy(dtype=float))
    grid = np.asarray(target_ratios, dtype=float)
    if len(found) and (len(found) != len(grid) or not np.allclose(found, grid, rtol=0, atol=1e-9)):
        raise ValueError(f"{label}: target ratios {found.tolist()} are not the grid {grid.tolist()} "
                         "(calibration.target_ratio_step); rebuild the generalization tables")


def _unseen_blocks(generalization: pd.DataFrame, llms: Sequence[str], datasets: Sequence[str], ratio: float,
                   level: float, how: str) -> list[dict]:
    """One ``expected_on_unseen`` block per LLM at one target ratio: each held-out dataset's values averaged
    over the calibration runs, then summarized over the datasets (:func:`over_datasets`), listed in ``datasets``
    order."""
    rows = generalization[np.isclose(generalization["target_ratio"].to_numpy(dtype=float), ratio, rtol=0, atol=1e-9)]
    blocks = []
    for llm in llms:
        per_dataset = rows[rows["llm"] == llm].groupby("dataset")[list(UNSEEN_COLUMNS.values())].mean()
        per_dataset = per_dataset.reindex([dataset for dataset in datasets if dataset in per_dataset.index])
        per_dataset = per_dataset[np.isfinite(per_dataset.to_numpy(dtype=float)).all(axis=1)]
        block = {"llm": llm, "n_datasets": len(per_dataset), "held_out": list(per_dataset.index)}
        block |= {key: over_datasets(per_dataset[column], level) for key, column in UNSEEN_COLUMNS.items()}
        blocks.append(block | {"level": level, "how": how, "source": UNSEEN_SOURCE})
    return blocks


def router_card(release: pd.DataFrame, generalization: pd.DataFrame, *, slm: str, method: str,
                calibration_file: str, sha256: str, dtype: str | None, llms: Sequence[str],
                datasets: Sequence[str], target_ratios, level: float = 0.95) -> dict:
    """The card of one release file (a JSON-ready dict, keys in a fixed order).

    ``release``: the release table (``run, confidence, seed``); ``calibration_file``: its path relative to the
    results folder; ``sha256``: :func:`file_sha256` of its bytes; ``dtype``: the SLM's dtype as its pass tables
    record it (None where none does). ``generalization``: the (SLM, method)'s generalization tables stacked, with
    ``llm`` and ``dataset`` columns (each table's hold-out); ``llms`` and ``datasets`` (those the release pools)
    in the order the card lists them. ``target_ratios``: the generalization grid; one card entry each, with the
    threshold of run 0 and of every run (:func:`thresholds_for_ratios`, the router's own) and one
    ``expected_on_unseen`` block per LLM.
    """
    runs, seeds, rows_per_run = calibration_runs(release, calibration_file)
    ratios = np.asarray(target_ratios, dtype=float)
    by_run = {run: thresholds_for_ratios(release.loc[release["run"] == run, "confidence"], ratios) for run in runs}
    how = (f"each held-out dataset's value is the mean over the calibration runs; mean over the datasets with a "
           f"{level:.0%} Student-t interval over them (n_datasets - 1 degrees of freedom, clipped to [0, 1], null "
           "below 2 datasets); spread: the lowest and highest dataset")
    entries = []
    for i, ratio in enumerate(ratios):
        entries.append({
            "target_ratio": _number(ratio),
            "threshold": _number(by_run[0][i]) if 0 in by_run else None,
            "thresholds_by_run": [_number(by_run[run][i]) for run in runs],
            "expected_on_unseen": _unseen_blocks(generalization, llms, datasets, ratio, level, how),
        })
    return {
        "format": CARD_FORMAT,
        "slm": slm,
        "method": method,
        "calibration": {"file": calibration_file, "sha256": sha256, "runs": runs, "seeds": seeds,
                        "rows_per_run": rows_per_run},
        "dtype": dtype,
        "llms": list(llms),
        "datasets": list(datasets),
        "ratios": entries,
    }


def card_json(card: Mapping) -> str:
    """The card as JSON text: its own key order, two-space indent, a final newline; refuses NaN and infinity."""
    return json.dumps(card, indent=2, allow_nan=False) + "\n"


def recorded_dtype(dtypes: Sequence[str | None]) -> str | None:
    """The one dtype the SLM's pass tables record (None where none records one, as behind an API); tables that
    differ give their dtypes sorted and comma-separated, which a reader should not overlook."""
    found = sorted({dtype for dtype in dtypes if dtype})
    return ", ".join(found) if found else None


def load_card(card_path: str | os.PathLike, calibration_path: str | os.PathLike, slm: str, method: str) -> dict:
    """The card at ``card_path``, checked against what a router serves: its format, its SLM and method, and the
    SHA-256 of ``calibration_path``'s bytes. :class:`CardError` names both files and what differs."""
    card_path, calibration_path = Path(card_path), Path(calibration_path)
    if not card_path.is_file():
        raise CardError(f"router card {card_path} not found; the workflow writes it beside the calibration file "
                        f"{calibration_path} (release/{slm}/{method}{CARD_SUFFIX})")
    if not calibration_path.is_file():
        raise CardError(f"calibration file {calibration_path} not found, so the router card {card_path} "
                        "cannot be checked against it")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CardError(f"router card {card_path}: not valid JSON ({err})") from err
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise CardError(f"router card {card_path}: format {found!r}, expected {CARD_FORMAT!r}")
    for key in ("slm", "method", "calibration", "ratios"):
        if key not in card:
            raise CardError(f"router card {card_path}: no key {key!r}")
    if (card["slm"], card["method"]) != (slm, method):
        raise CardError(f"router card {card_path} describes SLM {card['slm']} with method {card['method']}, but "
                        f"the calibration file {calibration_path} is served for SLM {slm} with method {method}")
    recorded = card["calibration"].get("sha256") if isinstance(card["calibration"], dict) else None
    actual = file_sha256(calibration_path)
    if recorded != actual:
        raise CardError(f"router card {card_path} describes a calibration file with sha256 {recorded}, but "
                        f"{calibration_path} has sha256 {actual}: the calibration file changed after its card was "
                        "written (or the card is another file's); rebuild the card with the workflow")
    return card


def card_for_ratio(card: Mapping, ratio: float) -> dict:
    """The card's entry whose ``target_ratio`` is nearest to ``ratio`` (the lower one on a tie), with
    ``requested_ratio`` and ``distance`` (|target_ratio - ratio|) added after its keys."""
    if not math.isfinite(ratio) or not 0 <= ratio <= 1:
        raise CardError(f"routing ratio {ratio} is not in [0, 1]")
    entries = card.get("ratios") or []
    if not entries:
        raise CardError(f"router card of SLM {card.get('slm')} with method {card.get('method')} has no ratios")
    nearest = min(entries, key=lambda entry: abs(entry["target_ratio"] - ratio))
    # Rounded: the grid's ratios are decimals, and the float noise of the difference says nothing.
    return {**nearest, "requested_ratio": ratio, "distance": round(abs(nearest["target_ratio"] - ratio), 12)}
