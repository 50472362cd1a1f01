"""Readers: one per file format, each turning a file into raw records that name their file and row."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


# ---- readers: one per file format -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
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


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
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
            rows.append(Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


def read_json_array(path: Path) -> list[Row]:
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
        rows.append(Row(f"{path}: row {index}", index, record))
    return rows


def _read_tsv(path: Path) -> list[Row]:
    """Tab-separated with a header line and no quoting (the OpenBookQA release)."""
    lines = _read_text_lines(path)
    header = lines[0].split("\t")
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        where = f"{path}: row {len(rows)} (line {lineno})"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"{where}: {len(fields)} tab-separated fields, header has {len(header)}")
        rows.append(Row(where, len(rows), dict(zip(header, fields))))
    if not rows:
        raise _empty(path)
    return rows


def _read_csv(path: Path) -> list[Row]:
    """CSV with a header row; utf-8-sig drops the byte-order mark TruthfulQA's file starts with."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            where = f"{path}: row {len(rows)} (line {reader.line_num})"
            if None in record:
                raise ValueError(f"{where}: more fields than the header's {len(reader.fieldnames or [])}")
            rows.append(Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


_MMLU_FIELDS = ("question", "A", "B", "C", "D", "answer")


def _read_mmlu_csv(path: Path) -> list[Row]:
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
            rows.append(Row(where, len(rows), record))
    if not rows:
        raise _empty(path)
    return rows


_HELLASWAG_LINES = 6  # "<activity_label>: <ctx>", gold index, 4 endings


def _read_hellaswag_text(path: Path) -> list[Row]:
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
        rows.append(Row(where, index, record))
    return rows


def read_labels(path: Path) -> list[str]:
    """One label per line (PIQA, Social IQa)."""
    lines = _read_text_lines(path)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}: row {lineno - 1} (line {lineno}): missing label (empty line)")
    return [line.strip() for line in lines]


READERS: dict[str, Callable[[Path], list[Row]]] = {
    "jsonl": _read_jsonl,
    "json": read_json_array,
    "tsv": _read_tsv,
    "csv": _read_csv,
    "mmlu_csv": _read_mmlu_csv,
    "hellaswag_text": _read_hellaswag_text,
}
