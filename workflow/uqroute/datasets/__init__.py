"""The 14 QA datasets as one table format, from local files or the Hugging Face hub.

Every fact about a dataset (files, hub ids, sizes, quirks) lives in ``resources/datasets.yaml``.
Loading a split takes three steps, each strict about its input:

1. a *reader* per file format turns a file into raw records (a hub split is already records);
2. a *layout* per record shape maps one raw record to the common columns;
3. the items are checked against the task type and the expected row count of the registry.

Output columns (one row per question): ``id, dataset, split, task_type, question, context,
choices, answer, answer_aliases, incorrect_answers`` (see :data:`ITEM_COLUMNS`).
"""

from .layouts import normalize_number
from .loader import derived_split_rank, load_questions, load_split, take_subset
from .registry import (
    DATASET_NAMES,
    ITEM_COLUMNS,
    ITEM_SCHEMA,
    PROBE_TRAINING,
    REGISTRY_PATH,
    SPLITS,
    TASK_TYPES,
    check_data_files,
    data_source,
    dataset_info,
    dataset_label,
    probe_training,
    required_files,
)

__all__ = [
    "DATASET_NAMES", "ITEM_COLUMNS", "ITEM_SCHEMA", "PROBE_TRAINING", "REGISTRY_PATH", "SPLITS", "TASK_TYPES",
    "check_data_files", "dataset_info", "dataset_label", "derived_split_rank", "load_questions", "load_split",
    "normalize_number", "probe_training", "required_files", "take_subset",
]
