"""The dataset registry (``resources/datasets.yaml``, validated by its JSON schema) and the files it names."""

from __future__ import annotations

import copy
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from .. import RESOURCES_DIR
from ..io import load_schema, load_yaml, validate_registry
from .layouts import LAYOUTS
from .readers import READERS

REGISTRY_PATH = RESOURCES_DIR / "datasets.yaml"
log = logging.getLogger(__name__)

_SCHEMA = load_schema("datasets")
# Defined once, in the registry's schema.
SPLITS: tuple[str, ...] = tuple(_SCHEMA["$defs"]["split"]["enum"])
TASK_TYPES: tuple[str, ...] = tuple(_SCHEMA["$defs"]["task_type"]["enum"])
PROBE_TRAINING: tuple[str, ...] = tuple(_SCHEMA["$defs"]["probe_training"]["enum"])
ITEM_COLUMNS: tuple[str, ...] = (
    "id",
    "dataset",
    "split",
    "task_type",
    "question",
    "context",
    "choices",
    "answer",
    "answer_aliases",
    "incorrect_answers",
)
# Columns that hold None for some rows: kept as object so None stays None (not NaN).
NULLABLE_COLUMNS = ("context", "choices", "answer_aliases", "incorrect_answers")

# Arrow schema of results/data/{dataset}/{split}.parquet: pins the list columns' type even when a
# dataset has no lists (else an all-null column is written as type null).
ITEM_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("task_type", pa.string()),
        ("question", pa.string()),
        ("context", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("answer_aliases", pa.list_(pa.string())),
        ("incorrect_answers", pa.list_(pa.string())),
    ]
)



# ---- registry ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict]:
    entries = validate_registry(load_yaml(REGISTRY_PATH), _SCHEMA, REGISTRY_PATH)["datasets"]
    for name, entry in entries.items():
        _check_code_names(name, entry)
    return entries


def _check_code_names(name: str, entry: Mapping[str, Any]) -> None:
    """Layouts and formats name functions of this module, which the schema cannot see."""
    for source, known in (("hub", LAYOUTS), ("local", LAYOUTS)):
        for split, spec in (entry.get(source) or {}).items():
            if spec["layout"] not in known:
                raise ValueError(f"{REGISTRY_PATH}: datasets.{name}.{source}.{split}.layout: unknown layout "
                                 f"{spec['layout']!r}")
            if source == "local" and spec["format"] not in READERS:
                raise ValueError(f"{REGISTRY_PATH}: datasets.{name}.local.{split}.format: unknown format "
                                 f"{spec['format']!r}")


def dataset_info(name: str) -> dict:
    """The registry entry of one dataset (a copy): task_type, domain, hub, local, notes, ...

    Raises KeyError naming the unknown dataset and the known ones.
    """
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    return copy.deepcopy(registry[name])


def check_split(dataset: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; splits are {SPLITS}")


def local_spec(dataset: str, split: str, info: Mapping[str, Any]) -> dict:
    local = info.get("local")
    if not local:
        hub = info["hub"][split]
        raise FileNotFoundError(
            f"{dataset}: no local copy of this dataset exists (see {REGISTRY_PATH.name} notes); "
            f"load it from the Hugging Face hub ({hub['path']}) with data_dir: null"
        )
    return local[split]


def resolve_files(spec: Mapping[str, Any], data_dir: Path) -> dict[str, list[Path]]:
    """role -> files; a glob with no match stays as its pattern so that it is reported missing."""
    resolved: dict[str, list[Path]] = {}
    for role, patterns in spec["files"].items():
        paths: list[Path] = []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            if any(ch in pattern for ch in "*?["):
                paths.extend(sorted(data_dir.glob(pattern)) or [data_dir / pattern])
            else:
                paths.append(data_dir / pattern)
        resolved[role] = paths
    return resolved


def required_files(dataset: str, split: str, data_dir: Path | None) -> list[Path]:
    """The local files one split is read from (empty when data_dir is None: hub).

    Raises FileNotFoundError for a dataset without a local copy (CoQA).
    """
    check_split(dataset, split)
    info = dataset_info(dataset)
    if data_dir is None:
        return []
    files = resolve_files(local_spec(dataset, split, info), Path(data_dir))
    return [path for paths in files.values() for path in paths]


def data_source(data_dir: str | Path | None) -> Path | None:
    """Where the datasets load from: the folder ``data_dir`` names where it exists, else the Hugging Face hub
    (None), with a log line saying which. ``data_dir: null`` is the hub."""
    if data_dir is None:
        log.info("datasets: loading from the Hugging Face hub (data_dir: null)")
        return None
    folder = Path(data_dir)
    if folder.is_dir():
        log.info("datasets: reading the local files under %s", folder)
        return folder
    log.warning("datasets: data_dir %s does not exist; loading from the Hugging Face hub instead (put the files "
                "there, laid out as %s says, to read them locally)", folder, REGISTRY_PATH.name)
    return None


def check_data_files(datasets: Iterable[str], data_dir: Path) -> None:
    """Fail before any job runs: every file of both splits of ``datasets`` must exist.

    Raises FileNotFoundError naming each missing file with its dataset and split.
    """
    missing = []
    for name in datasets:
        for split in SPLITS:
            for path in required_files(name, split, Path(data_dir)):
                if not path.is_file():
                    missing.append(f"{path} (dataset {name}, split {split})")
    if missing:
        raise FileNotFoundError(f"missing data file(s) under {data_dir}: " + "; ".join(missing))



# The registry's datasets, in its order (read once, after the layouts and readers it is checked against).
DATASET_NAMES: tuple[str, ...] = tuple(_registry())


def probe_training(name: str, local: bool) -> str:
    """How the trained probe of ``name`` learns (``in_domain`` or ``crossfit``) from the local files or the hub."""
    rule = dataset_info(name)["probe_training"]
    return rule["local" if local else "hub"] if isinstance(rule, dict) else rule


def dataset_label(name: str) -> str:
    """Display name of a dataset; an unknown name is shown as it is."""
    return _registry()[name]["label"] if name in _registry() else name
