"""Loading a split: read (local files or the hub), lay out, check against the registry; subsets."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..io import read_parquet
from .layouts import LAYOUTS, LETTERS, Context, normalize_number
from .readers import READERS, Row, read_json_array, read_labels
from .registry import (
    ITEM_COLUMNS,
    NULLABLE_COLUMNS,
    REGISTRY_PATH,
    check_split,
    dataset_info,
    local_spec,
    resolve_files,
)

def _read_local(dataset: str, split: str, spec: Mapping[str, Any], data_dir: Path) -> tuple[list[Row], dict]:
    files = resolve_files(spec, data_dir)
    for paths in files.values():
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing data file (dataset {dataset}, split {split})")
    reader = READERS[spec["format"]]
    rows = [row for path in files["records"] for row in reader(path)]
    if "labels" in files:
        (records_path,), (labels_path,) = files["records"], files["labels"]
        labels = read_labels(labels_path)
        if len(labels) != len(rows):
            raise ValueError(f"{records_path} has {len(rows)} rows but {labels_path} has {len(labels)} labels")
        rows = [Row(row.where, row.index, {**row.record, "label": label}) for row, label in zip(rows, labels)]
    extras = {}
    if "id_lookup" in files:
        (lookup_path,) = files["id_lookup"]
        extras["id_lookup"] = read_json_array(lookup_path)
    return rows, extras


def _read_hub(dataset: str, split: str, spec: Mapping[str, Any]) -> list[Row]:
    try:
        # deferred: Hugging Face datasets (~0.9 s, the workflow extra only), only a dataset read from the hub needs it
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError(f"{dataset}/{split}: loading from the Hugging Face hub needs the `datasets` package") from err
    source = f"hub {spec['path']}" + (f" ({spec['name']})" if spec.get("name") else "") + f" split {spec['split']}"
    options = {key: spec[key] for key in ("revision", "data_files") if key in spec}
    try:
        table = load_dataset(spec["path"], spec.get("name"), split=spec["split"], **options)
    except Exception as err:  # network, auth or schema trouble: say which dataset it was about, and the ways out
        raise RuntimeError(f"{dataset}/{split}: could not load {source}: {err}. Either give the hub access (network, "
                           "and HF_TOKEN for a gated dataset), or put the dataset's files in the folder the config's "
                           f"data_dir names, laid out as {REGISTRY_PATH.name} says") from err
    rows = [Row(f"{source}: row {index}", index, dict(record)) for index, record in enumerate(table)]
    if not rows:
        raise ValueError(f"{source}: empty split, no rows")
    return rows


# ---- derived splits and checks --------------------------------------------------------------------


def derived_split_rank(question: str, seed: int) -> str:
    """Sort key of the TruthfulQA split: depends on seed and question text only (not row order)."""
    return hashlib.sha256(f"{seed}:{question}".encode("utf-8")).hexdigest()


def _apply_derived_split(items: list[dict], split: str, rule: Mapping[str, Any], source: str) -> list[dict]:
    test_size = int(rule["test_size"])
    if test_size >= len(items):
        raise ValueError(f"{source}: {len(items)} rows cannot give a test split of {test_size} and a train split")
    order = sorted(range(len(items)), key=lambda i: derived_split_rank(items[i]["question"], rule["seed"]))
    test = set(order[:test_size])
    return [item for i, item in enumerate(items) if (i in test) == (split == "test")]


def _is_normalized_number(text: str) -> bool:
    try:
        return normalize_number(text) == text
    except ValueError:
        return False


def _check_items(items: list[dict], info: Mapping[str, Any], source: str) -> None:
    duplicates = sorted(id for id, count in Counter(item["id"] for item in items).items() if count > 1)
    if duplicates:
        raise ValueError(f"{source}: duplicate ids {duplicates[:5]}")
    task_type, n_choices = info["task_type"], info.get("n_choices")
    for item in items:
        answer, choices = item["answer"], item["choices"]
        if task_type == "mcq":
            ok = choices is not None and len(choices) == n_choices and answer in LETTERS[:n_choices]
        elif task_type == "tf":
            ok = choices is None and answer in ("true", "false")
        elif task_type == "ff_num":
            ok = choices is None and _is_normalized_number(answer)
        else:
            ok = choices is None and bool(answer)
        if not ok:
            raise ValueError(
                f"{source}: item {item['id']} does not fit task type {task_type}: "
                f"answer {answer!r}, choices {choices!r}"
            )


def load_split(dataset: str, split: str, data_dir: Path | None = None) -> pd.DataFrame:
    """One whole split of one dataset in the common table format.

    Args:
        dataset: one of DATASET_NAMES.
        split: "test" or "train" (which source split each maps to is in the registry).
        data_dir: folder of the local files (the config's data_dir); None loads from the Hugging Face hub.

    Returns:
        DataFrame with columns ITEM_COLUMNS, one row per question, in source order.

    Raises:
        KeyError: unknown dataset.  FileNotFoundError: a missing file, or no local copy (CoQA).
        ValueError: a malformed or empty file, a row with a missing field (naming file and row),
        or a row count that differs from the registry.
    """
    check_split(dataset, split)
    info = dataset_info(dataset)
    if data_dir is None:
        spec = info["hub"][split]
        rows, extras = _read_hub(dataset, split, spec), {}
        source_split = spec["split"]
        source = f"hub {spec['path']} split {spec['split']}"
    else:
        spec = local_spec(dataset, split, info)
        rows, extras = _read_local(dataset, split, spec, Path(data_dir))
        source_split = spec["source_split"]
        records = spec["files"]["records"]
        source = ", ".join(str(Path(data_dir) / p) for p in ([records] if isinstance(records, str) else records))
    ctx = Context(dataset, source_split, info, extras)
    layout = LAYOUTS[spec["layout"]]
    items = [layout(row, ctx) for row in rows]
    if len(items) != spec["rows"]:
        raise ValueError(
            f"{source}: {len(items)} rows, expected {spec['rows']} per {REGISTRY_PATH.name} "
            f"({dataset}.{'hub' if data_dir is None else 'local'}.{split}.rows)"
        )
    if "derived_split" in info:
        items = _apply_derived_split(items, split, info["derived_split"], source)
    _check_items(items, info, source)
    for item in items:
        item.update(dataset=dataset, split=split, task_type=info["task_type"])
    frame = pd.DataFrame({column: [item[column] for item in items] for column in ITEM_COLUMNS if column not in NULLABLE_COLUMNS})
    for column in NULLABLE_COLUMNS:
        frame[column] = pd.Series([item[column] for item in items], dtype=object)
    return frame[list(ITEM_COLUMNS)]


def take_subset(df: pd.DataFrame, max_n: int | None, seed: int) -> pd.DataFrame:
    """A deterministic subset of at most ``max_n`` rows, kept in their original order.

    The same (frame, max_n, seed) always gives the same rows: a numpy Generator seeded with
    ``seed`` picks row positions without replacement. The whole frame when max_n is None or >= len.
    """
    if max_n is None or max_n >= len(df):
        return df.reset_index(drop=True)
    if max_n < 0:
        raise ValueError(f"max_n must be >= 0 or None, got {max_n}")
    positions = np.sort(np.random.default_rng(seed).choice(len(df), size=max_n, replace=False))
    return df.iloc[positions].reset_index(drop=True)


def load_questions(path: str | Path, max_questions: int | None, seed: int) -> pd.DataFrame:
    """The deterministic subset of a prepared split (its Parquet table) that every pass and method of a cell
    reads."""
    return take_subset(read_parquet(path), max_questions, seed)
