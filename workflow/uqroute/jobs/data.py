"""Jobs of the data stage: one dataset split as a table, one GGUF model as an fp32 folder."""

from __future__ import annotations

import logging
from pathlib import Path

from ..datasets import ITEM_SCHEMA, load_split
from ..gguf import materialize
from ..io import write_parquet
from ..models import model_spec

log = logging.getLogger(__name__)


def prepare_dataset(*, dataset: str, split: str, data_dir: str | None, output: str) -> None:
    table = load_split(dataset, split, Path(data_dir) if data_dir else None)
    log.info("%s/%s: %d rows", dataset, split, len(table))
    write_parquet(table, output, schema=ITEM_SCHEMA)


def prepare_model(*, model: str, output: str) -> None:
    materialize(model_spec(model), Path(output))
