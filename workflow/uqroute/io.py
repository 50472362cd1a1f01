"""Reading and writing the workflow's tables without ever leaving a torn file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema | None = None) -> Path:
    """Write ``df`` to ``path`` atomically: a temp file in the same folder, then rename.

    A killed job leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df.reset_index(drop=True), schema=schema, preserve_index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table, naming the file and the missing columns when it is not what we expect."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    df = pd.read_parquet(path)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; has {list(df.columns)}")
    return df


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic text write (same temp-then-rename rule as the tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
