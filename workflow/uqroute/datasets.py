"""The 14 QA datasets as one table format, from local files or the Hugging Face hub.

Every fact about a dataset (files, hub ids, sizes, quirks) lives in ``resources/datasets.yaml``.
Loading a split takes three steps, each strict about its input:

1. a *reader* per file format turns a file into raw records (a hub split is already records);
2. a *layout* per record shape maps one raw record to the common columns;
3. the items are checked against the task type and the expected row count of the registry.

Output columns (one row per question): ``id, dataset, split, task_type, question, context,
choices, answer, answer_aliases, incorrect_answers`` (see :data:`COLUMNS`).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from . import RESOURCES_DIR
from .io import load_yaml

REGISTRY_PATH = RESOURCES_DIR / "datasets.yaml"

DATASET_NAMES: tuple[str, ...] = (
    "gsm8k",
    "aqua",
    "multiarith",
    "svamp",
    "boolq",
    "commonsenseqa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "social_iqa",
    "truthfulqa",
    "winogrande",
    "coqa",
    "mmlu",
)
SPLITS: tuple[str, ...] = ("test", "train")
TASK_TYPES: tuple[str, ...] = ("mcq", "tf", "ff_num", "ff_text")
PROBE_TRAINING: tuple[str, ...] = ("in_domain", "crossfit")
COLUMNS: tuple[str, ...] = (
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
_NULLABLE = ("context", "choices", "answer_aliases", "incorrect_answers")

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

LETTERS = "ABCDEFGHIJ"


# ---- registry ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict]:
    data = load_yaml(REGISTRY_PATH)
    entries = data.get("datasets")
    if not isinstance(entries, dict):
        raise ValueError(f"{REGISTRY_PATH}: top-level key 'datasets' missing or not a mapping")
    if set(entries) != set(DATASET_NAMES):
        raise ValueError(
            f"{REGISTRY_PATH}: datasets {sorted(entries)} differ from DATASET_NAMES {sorted(DATASET_NAMES)}"
        )
    for name, entry in entries.items():
        _check_entry(name, entry)
    return entries


def _check_entry(name: str, entry: Mapping[str, Any]) -> None:
    """Catch registry typos when the registry is first read, not halfway through a run."""
    where = f"{REGISTRY_PATH}: datasets.{name}"
    if entry.get("task_type") not in TASK_TYPES:
        raise ValueError(f"{where}.task_type: {entry.get('task_type')!r} is not one of {TASK_TYPES}")
    if entry.get("probe_training") not in PROBE_TRAINING:
        raise ValueError(f"{where}.probe_training: {entry.get('probe_training')!r} is not one of {PROBE_TRAINING}")
    if entry["task_type"] == "mcq" and not isinstance(entry.get("n_choices"), int):
        raise ValueError(f"{where}.n_choices: required (an integer) for a multiple-choice dataset")
    for source in ("hub", "local"):
        specs = entry.get(source)
        if specs is None and source == "local":
            continue
        if not isinstance(specs, dict) or set(specs) != set(SPLITS):
            raise ValueError(f"{where}.{source}: needs exactly the splits {SPLITS}")
        for split, spec in specs.items():
            if spec.get("layout") not in _LAYOUTS:
                raise ValueError(f"{where}.{source}.{split}.layout: unknown layout {spec.get('layout')!r}")
            if not isinstance(spec.get("rows"), int):
                raise ValueError(f"{where}.{source}.{split}.rows: expected row count missing")
            if source == "hub" and not spec.get("path"):
                raise ValueError(f"{where}.hub.{split}.path: missing")
            if source == "local":
                if spec.get("format") not in _READERS:
                    raise ValueError(f"{where}.local.{split}.format: unknown format {spec.get('format')!r}")
                if "records" not in (spec.get("files") or {}) or not spec.get("source_split"):
                    raise ValueError(f"{where}.local.{split}: needs files.records and source_split")


def dataset_info(name: str) -> dict:
    """The registry entry of one dataset (a copy): task_type, domain, hub, local, notes, ...

    Raises KeyError naming the unknown dataset and the known ones.
    """
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    return copy.deepcopy(registry[name])


def _check_split(dataset: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; splits are {SPLITS}")


def _local_spec(dataset: str, split: str, info: Mapping[str, Any]) -> dict:
    local = info.get("local")
    if not local:
        hub = info["hub"][split]
        raise FileNotFoundError(
            f"{dataset}: no local copy of this dataset exists (see {REGISTRY_PATH.name} notes); "
            f"load it from the Hugging Face hub ({hub['path']}) with data_dir: null"
        )
    return local[split]


def _resolve_files(spec: Mapping[str, Any], data_dir: Path) -> dict[str, list[Path]]:
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
    _check_split(dataset, split)
    info = dataset_info(dataset)
    if data_dir is None:
        return []
    files = _resolve_files(_local_spec(dataset, split, info), Path(data_dir))
    return [path for paths in files.values() for path in paths]


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


# ---- readers: one per file format -----------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    where: str  # "<file>: row <index> (line <n>)" for error messages
    index: int  # 0-based position among the records of its file (or hub split)
    record: Mapping[str, Any]


def _empty(path: Path) -> ValueError:
    return ValueError(f"{path}: empty file, no rows")


def _read_text_lines(path: Path) -> list[str]:
    """The file's lines without the final newline; a file of blank lines counts as empty."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if not text.strip():
        raise _empty(path)
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _read_jsonl(path: Path) -> list[_Row]:
    rows: list[_Row] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}: row {len(rows)} (line {lineno})"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg}); expected one JSON object per line") from err
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            rows.append(_Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


def _read_json_array(path: Path) -> list[_Row]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if not text.strip():
        raise _empty(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not a JSON document ({err.msg} at line {err.lineno}); expected a JSON array"
        ) from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    if not data:
        raise _empty(path)
    rows = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: row {index}: expected a JSON object, got {type(record).__name__}")
        rows.append(_Row(f"{path}: row {index}", index, record))
    return rows


def _read_tsv(path: Path) -> list[_Row]:
    """Tab-separated with a header line and no quoting (the OpenBookQA release)."""
    lines = _read_text_lines(path)
    header = lines[0].split("\t")
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        where = f"{path}: row {len(rows)} (line {lineno})"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"{where}: {len(fields)} tab-separated fields, header has {len(header)}")
        rows.append(_Row(where, len(rows), dict(zip(header, fields))))
    if not rows:
        raise _empty(path)
    return rows


def _read_csv(path: Path) -> list[_Row]:
    """CSV with a header row; utf-8-sig drops the byte-order mark TruthfulQA's file starts with."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            where = f"{path}: row {len(rows)} (line {reader.line_num})"
            if None in record:
                raise ValueError(f"{where}: more fields than the header's {len(reader.fieldnames or [])}")
            rows.append(_Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


_MMLU_FIELDS = ("question", "A", "B", "C", "D", "answer")


def _read_mmlu_csv(path: Path) -> list[_Row]:
    """Headerless MMLU CSV; the subject comes from the file name, the part from its folder."""
    subject = path.stem.rsplit("_", 1)[0]
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        for fields in reader:
            where = f"{path}: row {len(rows)} (line {reader.line_num})"
            if len(fields) != len(_MMLU_FIELDS):
                raise ValueError(f"{where}: {len(fields)} fields, expected {len(_MMLU_FIELDS)} {_MMLU_FIELDS}")
            record = dict(zip(_MMLU_FIELDS, fields), subject=subject, part=path.parent.name)
            rows.append(_Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


_HELLASWAG_LINES = 6  # "<activity_label>: <ctx>", gold index, 4 endings


def _read_hellaswag_text(path: Path) -> list[_Row]:
    lines = _read_text_lines(path)
    if len(lines) % _HELLASWAG_LINES:
        last = len(lines) // _HELLASWAG_LINES
        raise ValueError(
            f"{path}: {len(lines)} lines is not a multiple of {_HELLASWAG_LINES}; "
            f"row {last} (line {last * _HELLASWAG_LINES + 1}) is incomplete"
        )
    rows = []
    for start in range(0, len(lines), _HELLASWAG_LINES):
        index = start // _HELLASWAG_LINES
        where = f"{path}: row {index} (line {start + 1})"
        block = lines[start : start + _HELLASWAG_LINES]
        for offset, line in enumerate(block):
            if not line.strip():
                raise ValueError(f"{where}: line {start + offset + 1} is empty; every item has 6 non-empty lines")
        label, sep, ctx = block[0].partition(": ")
        if not sep:
            raise ValueError(f"{where}: first line has no '<activity_label>: ' prefix")
        record = {"activity_label": label, "ctx": ctx, "label": block[1], "endings": block[2:]}
        rows.append(_Row(where, index, record))
    return rows


def _read_labels(path: Path) -> list[str]:
    """One label per line (PIQA, Social IQa)."""
    lines = _read_text_lines(path)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}: row {lineno - 1} (line {lineno}): missing label (empty line)")
    return [line.strip() for line in lines]


_READERS: dict[str, Callable[[Path], list[_Row]]] = {
    "jsonl": _read_jsonl,
    "json": _read_json_array,
    "tsv": _read_tsv,
    "csv": _read_csv,
    "mmlu_csv": _read_mmlu_csv,
    "hellaswag_text": _read_hellaswag_text,
}


def _read_local(dataset: str, split: str, spec: Mapping[str, Any], data_dir: Path) -> tuple[list[_Row], dict]:
    files = _resolve_files(spec, data_dir)
    for paths in files.values():
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing data file (dataset {dataset}, split {split})")
    reader = _READERS[spec["format"]]
    rows = [row for path in files["records"] for row in reader(path)]
    if "labels" in files:
        (records_path,), (labels_path,) = files["records"], files["labels"]
        labels = _read_labels(labels_path)
        if len(labels) != len(rows):
            raise ValueError(f"{records_path} has {len(rows)} rows but {labels_path} has {len(labels)} labels")
        rows = [_Row(row.where, row.index, {**row.record, "label": label}) for row, label in zip(rows, labels)]
    extras = {}
    if "id_lookup" in files:
        (lookup_path,) = files["id_lookup"]
        extras["id_lookup"] = _read_json_array(lookup_path)
    return rows, extras


def _read_hub(dataset: str, split: str, spec: Mapping[str, Any]) -> list[_Row]:
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError(f"{dataset}/{split}: loading from the Hugging Face hub needs the `datasets` package") from err
    source = f"hub {spec['path']}" + (f" ({spec['name']})" if spec.get("name") else "") + f" split {spec['split']}"
    options = {key: spec[key] for key in ("revision", "data_files") if key in spec}
    try:
        table = load_dataset(spec["path"], spec.get("name"), split=spec["split"], **options)
    except Exception as err:  # network, auth or schema trouble: say which dataset it was about
        raise RuntimeError(f"{dataset}/{split}: could not load {source}: {err}") from err
    rows = [_Row(f"{source}: row {index}", index, dict(record)) for index, record in enumerate(table)]
    if not rows:
        raise ValueError(f"{source}: empty split, no rows")
    return rows


# ---- field access and normalization -----------------------------------------------------------------


def _field(row: _Row, key: str) -> Any:
    """A required field: absent, None, an empty string and an empty list all count as missing."""
    value = row.record.get(key)
    empty = isinstance(value, str) and not value.strip() or isinstance(value, (list, tuple)) and not value
    if value is None or empty:
        raise ValueError(f"{row.where}: missing field {key!r}")
    return value


def _text(row: _Row, key: str) -> str:
    value = _field(row, key)
    if not isinstance(value, str):
        raise ValueError(f"{row.where}: field {key!r} should be text, got {type(value).__name__}")
    return value.strip()


def _texts(row: _Row, key: str, values: Iterable[Any]) -> list[str]:
    out = []
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{row.where}: missing field {key!r} (item {position} is empty or not text)")
        out.append(value.strip())
    return out


def normalize_number(value: Any) -> str:
    """A number as the canonical string gold answers use: no commas, no trailing '.0'.

    ``"1,234" -> "1234"``, ``5.0 -> "5"``, ``"0.50" -> "0.5"``, ``-3 -> "-3"``. Raises ValueError.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)
    try:
        number = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _number(row: _Row, key: str, value: Any | None = None) -> str:
    value = _field(row, key) if value is None else value
    try:
        return normalize_number(value)
    except ValueError:
        raise ValueError(f"{row.where}: field {key!r} is not a number: {value!r}") from None


def _truth(row: _Row, key: str) -> str:
    value = _field(row, key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise ValueError(f"{row.where}: field {key!r} should be true/false, got {value!r}")


def _letter(row: _Row, key: str, value: Any, n_choices: int, base: int) -> str:
    """An option index (0- or 1-based per ``base``) or letter as 'A', 'B', ..."""
    text = str(value).strip()
    if text in LETTERS[:n_choices]:
        return text
    if text.lstrip("-").isdigit() and 0 <= int(text) - base < n_choices:
        return LETTERS[int(text) - base]
    raise ValueError(f"{row.where}: field {key!r} = {value!r} is not an option of {n_choices}")


def _labelled_choices(row: _Row, key: str, labels: list[str], texts: list[str], n_choices: int) -> list[str]:
    if list(labels) != list(LETTERS[:n_choices]) or len(texts) != n_choices:
        raise ValueError(f"{row.where}: field {key!r} has labels {labels}, expected {list(LETTERS[:n_choices])}")
    return _texts(row, key, texts)


# ---- layouts: one per record shape ------------------------------------------------------------------


@dataclass
class _Context:
    dataset: str
    source_split: str  # the split name ids carry ("validation", "dev", ...)
    info: Mapping[str, Any]
    extras: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # per-load counters (MMLU rows per subject on the hub)

    @property
    def n_choices(self) -> int:
        return self.info.get("n_choices") or 0

    def row_id(self, row: _Row) -> str:
        return f"{self.dataset}-{self.source_split}-{row.index}"

    def question(self, **fields: str) -> str:
        return self.info["question_template"].format(**fields)


def _item(id: str, question: str, answer: str, *, context=None, choices=None, aliases=None, incorrect=None) -> dict:
    return {
        "id": id,
        "question": question,
        "context": context,
        "choices": choices,
        "answer": answer,
        "answer_aliases": aliases,
        "incorrect_answers": incorrect,
    }


def _gsm8k(row: _Row, ctx: _Context) -> dict:
    rationale = _text(row, "answer")
    if "####" not in rationale:
        raise ValueError(f"{row.where}: field 'answer' has no '#### <number>' final line")
    final = rationale.rsplit("####", 1)[1].strip()
    return _item(ctx.row_id(row), _text(row, "question"), _number(row, "answer", final))


_AQUA_PREFIX = re.compile(r"^\s*([A-E])\s*\)\s*")


def _aqua(row: _Row, ctx: _Context) -> dict:
    options = _field(row, "options")
    if len(options) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'options' has {len(options)} options, expected {ctx.n_choices}")
    choices = []
    for letter, option in zip(LETTERS, _texts(row, "options", options)):
        match = _AQUA_PREFIX.match(option)
        if not match or match.group(1) != letter:
            raise ValueError(f"{row.where}: option {option!r} does not start with '{letter})'")
        choices.append(option[match.end() :].strip())
    answer = _letter(row, "correct", _text(row, "correct"), ctx.n_choices, 0)
    return _item(ctx.row_id(row), _text(row, "question"), answer, choices=choices)


def _multiarith(row: _Row, ctx: _Context) -> dict:
    solutions = _field(row, "lSolutions")
    if len(solutions) != 1:
        raise ValueError(f"{row.where}: field 'lSolutions' has {len(solutions)} solutions, expected 1")
    answer = _number(row, "lSolutions", solutions[0])
    return _item(f"multiarith-{_field(row, 'iIndex')}", _text(row, "sQuestion"), answer)


def _multiarith_hub(row: _Row, ctx: _Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _number(row, "final_ans"))


def _svamp(row: _Row, ctx: _Context) -> dict:
    question = f"{_text(row, 'Body')} {_text(row, 'Question')}"
    return _item(f"svamp-{_text(row, 'ID')}", question, _number(row, "Answer"))


def _svamp_llm_foundry(row: _Row, ctx: _Context) -> dict:
    if "svamp_ids" not in ctx.state:
        ids: dict[str, list[str]] = {}
        for record_row in ctx.extras["id_lookup"]:
            item = _svamp(record_row, ctx)
            ids.setdefault(item["question"], []).append(item["id"])
        ctx.state["svamp_ids"] = ids
    question = _text(row, "context")
    matches = ctx.state["svamp_ids"].get(question, [])
    if len(matches) != 1:
        raise ValueError(
            f"{row.where}: problem text matches {len(matches)} SVAMP records in the id lookup file, expected 1"
        )
    return _item(matches[0], question, _number(row, "answer"))


def _boolq_superglue(row: _Row, ctx: _Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _truth(row, "label"), context=_text(row, "passage"))


def _boolq_hub(row: _Row, ctx: _Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _truth(row, "answer"), context=_text(row, "passage"))


_BOOLQ_TEMPLATE = re.compile(
    r"^Please answer the following question with true or false, question: (.+?)\?\n\nAnswer format: true/false$",
    re.S,
)


def _boolq_llm_adapters(row: _Row, ctx: _Context) -> dict:
    match = _BOOLQ_TEMPLATE.match(_text(row, "instruction"))
    if not match:
        raise ValueError(f"{row.where}: field 'instruction' does not follow the true/false question template")
    return _item(ctx.row_id(row), match.group(1).strip(), _truth(row, "answer"))


def _commonsenseqa(row: _Row, ctx: _Context) -> dict:
    question = _field(row, "question")
    inner = _Row(row.where, row.index, question)
    options = _field(inner, "choices")
    choices = _labelled_choices(
        row, "question.choices", [o.get("label") for o in options], [o.get("text") for o in options], ctx.n_choices
    )
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"commonsenseqa-{_text(row, 'id')}", _text(inner, "stem"), answer, choices=choices)


def _commonsenseqa_hub(row: _Row, ctx: _Context) -> dict:
    options = _field(row, "choices")
    choices = _labelled_choices(row, "choices", list(options["label"]), list(options["text"]), ctx.n_choices)
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"commonsenseqa-{_text(row, 'id')}", _text(row, "question"), answer, choices=choices)


_WIKIHOW_TAG = re.compile(r"\s*\[(?:header|title|step|substeps)\]\s*")


def _strip_tags(text: str) -> str:
    return _WIKIHOW_TAG.sub(" ", text).strip() if "[" in text else text


def _hellaswag(row: _Row, ctx: _Context) -> dict:
    endings = _texts(row, "endings", _field(row, "endings"))
    if len(endings) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'endings' has {len(endings)} endings, expected {ctx.n_choices}")
    label = _field(row, "label")
    # Not `ind`: it is counted per source, so ActivityNet and WikiHow rows of one split share values.
    return _item(
        ctx.row_id(row),
        ctx.question(activity_label=_text(row, "activity_label")),
        _letter(row, "label", label, ctx.n_choices, 0),
        context=_strip_tags(_text(row, "ctx")),
        choices=[_strip_tags(ending) for ending in endings],
    )


_OBQA_OPTION = re.compile(r"(?:^|\s)\(([A-Z])\)\s")


def _openbookqa(row: _Row, ctx: _Context) -> dict:
    own = _text(row, "ID")
    parts = _OBQA_OPTION.split(_text(row, "Choices"))
    labels, texts = parts[1::2], [text.strip() for text in parts[2::2]]
    expected = list(LETTERS[: ctx.n_choices])
    if parts[0].strip() or labels != expected:
        if own in (ctx.info.get("known_defects") or {}) and labels[: ctx.n_choices] == expected:
            labels, texts = labels[: ctx.n_choices], texts[: ctx.n_choices]
        else:
            raise ValueError(f"{row.where}: field 'Choices' has option labels {labels}, expected {expected}")
    choices = _labelled_choices(row, "Choices", labels, texts, ctx.n_choices)
    answer = _letter(row, "Answer Key", _text(row, "Answer Key"), ctx.n_choices, 0)
    return _item(f"openbookqa-{own}", _text(row, "Question Stem"), answer, choices=choices)


def _openbookqa_hub(row: _Row, ctx: _Context) -> dict:
    options = _field(row, "choices")
    choices = _labelled_choices(row, "choices", list(options["label"]), list(options["text"]), ctx.n_choices)
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"openbookqa-{_text(row, 'id')}", _text(row, "question_stem"), answer, choices=choices)


def _piqa(row: _Row, ctx: _Context) -> dict:
    choices = [_text(row, "sol1"), _text(row, "sol2")]
    answer = _letter(row, "label", _field(row, "label"), ctx.n_choices, 0)
    return _item(ctx.row_id(row), _text(row, "goal"), answer, choices=choices)


def _social_iqa(row: _Row, ctx: _Context) -> dict:
    choices = [_text(row, "answerA"), _text(row, "answerB"), _text(row, "answerC")]
    answer = _letter(row, "label", _field(row, "label"), ctx.n_choices, 1)
    return _item(ctx.row_id(row), _text(row, "question"), answer, context=_text(row, "context"), choices=choices)


def _split_answers(row: _Row, key: str) -> list[str]:
    parts = [part.strip() for part in _text(row, key).split(";")]
    return [part for part in parts if part]


def _truthfulqa(row: _Row, ctx: _Context) -> dict:
    return _item(
        f"truthfulqa-{row.index}",
        _text(row, "Question"),
        _text(row, "Best Answer"),
        aliases=_split_answers(row, "Correct Answers"),
        incorrect=_split_answers(row, "Incorrect Answers"),
    )


def _truthfulqa_hub(row: _Row, ctx: _Context) -> dict:
    return _item(
        f"truthfulqa-{row.index}",
        _text(row, "question"),
        _text(row, "best_answer"),
        aliases=_texts(row, "correct_answers", _field(row, "correct_answers")),
        incorrect=_texts(row, "incorrect_answers", _field(row, "incorrect_answers")),
    )


def _winogrande_choices(row: _Row) -> list[str]:
    return [_text(row, "option1"), _text(row, "option2")]


def _winogrande(row: _Row, ctx: _Context) -> dict:
    answer = _letter(row, "answer", _text(row, "answer"), ctx.n_choices, 1)
    question = ctx.question(sentence=_text(row, "sentence"))
    return _item(ctx.row_id(row), question, answer, choices=_winogrande_choices(row))


def _winogrande_dev(row: _Row, ctx: _Context) -> dict:
    answer = _letter(row, "correct_option", _text(row, "correct_option"), ctx.n_choices, 1)
    question = ctx.question(sentence=_text(row, "sentence"))
    return _item(f"winogrande-{_text(row, 'id')}", question, answer, choices=_winogrande_choices(row))


def _mmlu(row: _Row, ctx: _Context) -> dict:
    subject, part = _text(row, "subject"), _text(row, "part")
    own = f"{subject}-{row.index}" if part == "test" else f"{subject}-{part}-{row.index}"
    choices = [_text(row, letter) for letter in LETTERS[: ctx.n_choices]]
    answer = _letter(row, "answer", _text(row, "answer"), ctx.n_choices, 0)
    return _item(f"mmlu-{own}", _text(row, "question"), answer, choices=choices)


def _mmlu_hub(row: _Row, ctx: _Context) -> dict:
    # Some revisions of auxiliary_train nest each record under a "train" key.
    if isinstance(row.record.get("train"), Mapping):
        row = _Row(row.where, row.index, row.record["train"])
    subject = str(row.record.get("subject") or "").strip()
    if subject:
        counts = ctx.state.setdefault("mmlu_rows", {})
        own = f"mmlu-{subject}-{counts.get(subject, 0)}"
        counts[subject] = counts.get(subject, 0) + 1
    else:
        own = ctx.row_id(row)
    choices = _texts(row, "choices", _field(row, "choices"))
    if len(choices) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'choices' has {len(choices)} options, expected {ctx.n_choices}")
    answer = _letter(row, "answer", _field(row, "answer"), ctx.n_choices, 0)
    return _item(own, _text(row, "question"), answer, choices=choices)


def _coqa_hub(row: _Row, ctx: _Context) -> dict:
    questions = _texts(row, "questions", _field(row, "questions"))
    answers = _field(row, "answers")
    texts = answers.get("input_text") if isinstance(answers, Mapping) else None
    if not texts:
        raise ValueError(f"{row.where}: missing field 'answers.input_text'")
    answer = _texts(row, "answers.input_text", texts[:1])[0]
    return _item(ctx.row_id(row), questions[0], answer, context=_text(row, "story"))


_LAYOUTS: dict[str, Callable[[_Row, _Context], dict]] = {
    "gsm8k": _gsm8k,
    "aqua": _aqua,
    "multiarith": _multiarith,
    "multiarith_hub": _multiarith_hub,
    "svamp": _svamp,
    "svamp_llm_foundry": _svamp_llm_foundry,
    "boolq_superglue": _boolq_superglue,
    "boolq_llm_adapters": _boolq_llm_adapters,
    "boolq_hub": _boolq_hub,
    "commonsenseqa": _commonsenseqa,
    "commonsenseqa_hub": _commonsenseqa_hub,
    "hellaswag": _hellaswag,
    "openbookqa": _openbookqa,
    "openbookqa_hub": _openbookqa_hub,
    "piqa": _piqa,
    "social_iqa": _social_iqa,
    "truthfulqa": _truthfulqa,
    "truthfulqa_hub": _truthfulqa_hub,
    "winogrande": _winogrande,
    "winogrande_dev": _winogrande_dev,
    "mmlu": _mmlu,
    "mmlu_hub": _mmlu_hub,
    "coqa_hub": _coqa_hub,
}


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
        data_dir: folder of the local files (shared/data); None loads from the Hugging Face hub.

    Returns:
        DataFrame with columns COLUMNS, one row per question, in source order.

    Raises:
        KeyError: unknown dataset.  FileNotFoundError: a missing file, or no local copy (CoQA).
        ValueError: a malformed or empty file, a row with a missing field (naming file and row),
        or a row count that differs from the registry.
    """
    _check_split(dataset, split)
    info = dataset_info(dataset)
    if data_dir is None:
        spec = info["hub"][split]
        rows, extras = _read_hub(dataset, split, spec), {}
        source_split = spec["split"]
        source = f"hub {spec['path']} split {spec['split']}"
    else:
        spec = _local_spec(dataset, split, info)
        rows, extras = _read_local(dataset, split, spec, Path(data_dir))
        source_split = spec["source_split"]
        records = spec["files"]["records"]
        source = ", ".join(str(Path(data_dir) / p) for p in ([records] if isinstance(records, str) else records))
    ctx = _Context(dataset, source_split, info, extras)
    layout = _LAYOUTS[spec["layout"]]
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
    frame = pd.DataFrame({column: [item[column] for item in items] for column in COLUMNS if column not in _NULLABLE})
    for column in _NULLABLE:
        frame[column] = pd.Series([item[column] for item in items], dtype=object)
    return frame[list(COLUMNS)]


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
