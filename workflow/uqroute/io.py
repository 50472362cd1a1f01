"""Reading and writing the workflow's tables without ever leaving a torn file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import jsonschema
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from referencing import Registry, Resource

from . import SCHEMAS_DIR
from .paths import cell_of


def _default_file_mode() -> int:
    # Reading the umask means setting it, so set it straight back.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    A killed job leaves either the old file or the new one, never half of one. The temp file gets
    the usual file mode (mkstemp's 0600 would otherwise survive the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema | None = None,
                  metadata: dict[str, str] | None = None) -> Path:
    """Write ``df`` to ``path`` atomically (see :func:`atomic_path`), with ``metadata`` as the file's
    key-value metadata (what made the table, e.g. :func:`table_metadata`'s ``uqroute.dtype``)."""
    table = pa.Table.from_pandas(df.reset_index(drop=True), schema=schema, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{key.encode(): str(value).encode() for key, value in metadata.items()}})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


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


def read_tagged(paths: Sequence[str], kind: str) -> pd.DataFrame:
    """Per-cell tables of one ``kind`` stacked, each with its cell's coordinates (read from its path) as columns."""
    return pd.concat([read_parquet(path).assign(**cell_of(path, kind)) for path in paths], ignore_index=True)


def table_metadata(path: str | os.PathLike, prefix: str = "uqroute.") -> dict[str, str]:
    """The key-value metadata of a Parquet file whose keys start with ``prefix``."""
    found = pq.read_schema(path).metadata or {}
    return {key.decode(): value.decode() for key, value in found.items() if key.decode().startswith(prefix)}


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic text write (same temp-then-rename rule as the tables)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err


def load_schema(name: str) -> dict:
    """A JSON schema of the package's ``schemas/`` (``name`` without ``.schema.yaml``)."""
    return load_yaml(SCHEMAS_DIR / f"{name}.schema.yaml")


def validate_registry(data: dict, schema: dict, path: str | os.PathLike) -> dict:
    """``data`` (read from ``path``) checked against ``schema``; the first error names the file and the key."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ValueError(f"{path}: {where}: {error.message}")
    return data


def schema_validator(name: str):
    """A validator of the package's schema ``name`` that resolves its references to the other schemas of
    ``schemas/`` (the config schema takes the task types and engine kinds from the registries' schemas), as
    Snakemake's ``validate`` does for the Snakefile."""

    def sibling(uri: str) -> Resource:
        return Resource.from_contents(load_yaml(SCHEMAS_DIR / uri))

    return jsonschema.Draft202012Validator(load_schema(name), registry=Registry(retrieve=sibling))
