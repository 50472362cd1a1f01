"""Resumable passes: each finished batch is kept as its own Parquet part.

A model pass can run for hours on a cluster; if its job dies, the restarted
job reloads the finished batches and only computes the rest. Parts live in a
folder of their own, outside the pass's output, and are removed once the final
table is safely written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from .io import read_parquet, write_parquet

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
log = logging.getLogger(__name__)


class BatchCheckpoint:
    """Parquet parts ``{directory}/{key}.parquet``, one per finished batch.

    Each part is written atomically, so a part on disk is a finished batch. A
    part whose ``id`` values differ from the batch asked for (the inputs
    changed since it was written) is ignored and recomputed.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"checkpoint key {key!r}: use letters, digits, '_', '.', '-' only")
        return self.directory / f"{key}.parquet"

    def keys(self) -> list[str]:
        """Keys of the parts on disk (sorted)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(".parquet")] for p in self.directory.glob("*.parquet"))

    def load(self, key: str, ids: Iterable[str] | None = None) -> pd.DataFrame | None:
        """The part ``key``, or None when absent or written for other ids."""
        path = self.path(key)
        if not path.is_file():
            return None
        part = read_parquet(path)
        if ids is not None and ("id" not in part.columns or set(part["id"]) != set(ids)):
            return None
        return part

    def save(self, key: str, part: pd.DataFrame) -> None:
        write_parquet(part, self.path(key))

    def run(self, key: str, ids: Iterable[str], compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The finished part ``key`` if there is one for these ids; else ``compute()``, saved first."""
        ids = list(ids)
        part = self.load(key, ids)
        if part is None:
            part = compute()
            self.save(key, part)
        else:
            log.info("resumed batch %s (%d rows) from %s", key, len(part), self.directory)
        return part

    def finish(self) -> None:
        """Remove all parts (call after the final table is written)."""
        if self.directory.is_dir():
            shutil.rmtree(self.directory)


class NoCheckpoint:
    """Stand-in when no checkpoint folder is given: always computes, keeps nothing."""

    def run(self, key: str, ids: Iterable[str], compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        return compute()

    def finish(self) -> None:
        pass


def open_checkpoint(directory: str | os.PathLike | None) -> BatchCheckpoint | NoCheckpoint:
    return BatchCheckpoint(directory) if directory is not None else NoCheckpoint()
