"""The job of the uq stage: one method's confidence for one (SLM, dataset)."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import pandas as pd

from ..io import read_parquet, write_parquet
from ..paths import cell_of
from .generate import load_questions

log = logging.getLogger(__name__)


def training_pairs(hidden: Sequence[str], greedy: Sequence[str]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Train-split ``(hidden, greedy)`` tables by dataset, matched by the dataset each path names, in the
    order of ``hidden`` (the OOD probe pools its training data in that order)."""
    hidden_by = {cell_of(path, "hidden")["dataset"]: path for path in hidden}
    greedy_by = {cell_of(path, "gen")["dataset"]: path for path in greedy}
    if hidden_by.keys() != greedy_by.keys():
        raise ValueError(f"probe training data: hidden states of {sorted(hidden_by)} but greedy answers of "
                         f"{sorted(greedy_by)}")
    return {
        dataset: (read_parquet(hidden_by[dataset], ["id", "layer", "vector"]),
                  read_parquet(greedy_by[dataset], ["id", "correct"]))
        for dataset in hidden_by
    }


def uq_score(*, method: str, dataset: str, questions: str, passes: Mapping[str, str], output: str,
             probe: Mapping[str, Any], max_questions: int | None, subset_seed: int, hidden: str | None = None,
             train_hidden: Sequence[str] = (), train_greedy: Sequence[str] = (), threads: int = 1) -> None:
    """Score one method on ``dataset``'s test subset.

    ``passes``: pass name -> the SLM's pass table. Probes also read ``hidden`` (test hidden states) and the
    train splits in ``train_hidden``/``train_greedy``: this dataset's own for the trained probe (none:
    cross-fitting over the test split), the other datasets' for the OOD probe.
    """
    from ..uq import score_method
    from ..uq.registry import method_spec

    items = load_questions(questions, max_questions, subset_seed)
    tables = {name: read_parquet(path) for name, path in passes.items()}
    if not method_spec(method).needs_hidden:
        write_parquet(score_method(method, tables, items), output)
        return

    import torch

    from ..uq import probes

    torch.set_num_threads(threads)
    test_hidden = read_parquet(hidden, ["id", "layer", "vector"])
    pairs = training_pairs(train_hidden, train_greedy)
    common = {"dataset": dataset, "questions": items}
    if method == "trained_probe":
        settings = probes.ProbeSettings.from_config(probe, ood=False)
        if set(pairs) - {dataset}:
            raise ValueError(f"trained probe of {dataset}: train splits of {sorted(pairs)} given; it learns from "
                             f"{dataset}'s own train split only")
        if dataset in pairs:
            scores = probes.trained_probe(test_hidden, tables["greedy"], *pairs[dataset], settings, **common)
        else:
            log.info("%s: train split missing or unlike test; cross-fitting over the test split", dataset)
            scores = probes.crossfit_probe(test_hidden, tables["greedy"], settings,
                                           folds=probe.get("crossfit_folds", 5), **common)
    else:
        settings = probes.ProbeSettings.from_config(probe, ood=True)
        scores = probes.ood_probe(test_hidden, tables["greedy"], pairs, settings, **common)
    write_parquet(scores, output)
