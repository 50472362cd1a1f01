"""The job of the uq stage: one method's confidence for one (SLM, dataset)."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import pandas as pd

from ..datasets import load_questions
from ..io import read_parquet, write_parquet
from ..passes import HIDDEN_COLUMNS, PASS_NAMES
from ..paths import cell_of
from ..uq import score_method
from ..uq.registry import method_spec

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
        dataset: (read_parquet(hidden_by[dataset], HIDDEN_COLUMNS),
                  read_parquet(greedy_by[dataset], ["id", "correct"]))
        for dataset in hidden_by
    }


def uq_score(*, method: str, dataset: str, questions: str, output: str, probe: Mapping[str, Any],
             max_questions: int | None, subset_seed: int, hidden: str | None = None,
             train_hidden: Sequence[str] = (), train_greedy: Sequence[str] = (), threads: int = 1,
             **passes: str) -> None:
    """Score one method on ``dataset``'s test subset.

    ``passes``: the SLM's pass tables the method reads, each named by its pass (``greedy=``, ``sample=``...).
    Probes also read ``hidden`` (test hidden states) and the train splits in ``train_hidden``/``train_greedy``:
    this dataset's own for the trained probe (none: cross-fitting over the test split), the other datasets'
    for the OOD probe. Every method, probes included, is scored by :func:`uqroute.uq.score_method`.
    """
    unknown = sorted(set(passes) - set(PASS_NAMES))
    if unknown:
        raise ValueError(f"uq_score {method} on {dataset}: {unknown} named as pass tables; passes: "
                         f"{', '.join(PASS_NAMES)}")
    items = load_questions(questions, max_questions, subset_seed)
    tables = {name: read_parquet(path) for name, path in passes.items()}
    probe_inputs: dict[str, Any] = {}
    if method_spec(method).needs_hidden:
        # deferred: torch (~3 s), only a probe needs it; each uq job pays only for what it scores
        import torch

        torch.set_num_threads(threads)
        probe_inputs = {"hidden": read_parquet(hidden, HIDDEN_COLUMNS), "probe": probe, "dataset": dataset,
                        "training": training_pairs(train_hidden, train_greedy)}
    write_parquet(score_method(method, tables, items, **probe_inputs), output)


def holdout_uq(*, method: str, holdout: str, questions: Sequence[str], greedy: Sequence[str], hidden: Sequence[str],
               train_hidden: Sequence[str], train_greedy: Sequence[str], output: str, probe: Mapping[str, Any],
               max_questions: int | None, subset_seed: int, threads: int = 1) -> None:
    """A method learned on other datasets (the OOD probe, OOD P(IK)): its confidences on every dataset but
    ``holdout``, for the hold-out calibration set.

    Each scored dataset D gets its own probe, trained on the train splits given (which must not include
    ``holdout``) minus D's own: like the probe applied to ``holdout`` itself, it never saw D, and none of
    the pool's probes saw ``holdout``. Each is scored as the uq job scores it (:func:`uqroute.uq.score_method`).
    Rows: the uq columns plus ``dataset``, datasets in the order of ``questions`` (each cell matched to its
    tables by the dataset its paths name).
    """
    # deferred: torch (~3 s), as in uq_score: the uq jobs of other methods start without it
    import torch

    spec = method_spec(method)
    if spec.needs_train != "other_datasets":
        raise ValueError(f"holdout_uq: {method} does not learn from other datasets; its calibration pool is "
                         "the other datasets' uq tables")
    pairs = training_pairs(train_hidden, train_greedy)
    if holdout in pairs:
        raise ValueError(f"holdout_uq without {holdout}: its own train split was given, which would leak it into "
                         "the calibration set")
    cells = {kind: {cell_of(path, kind)["dataset"]: path for path in paths}
             for kind, paths in (("data", questions), ("gen", greedy), (spec.hidden, hidden))}
    if len({tuple(sorted(by_dataset)) for by_dataset in cells.values()}) != 1:
        raise ValueError(f"holdout_uq without {holdout}: questions, greedy and hidden name different datasets "
                         f"{ {kind: sorted(by_dataset) for kind, by_dataset in cells.items()} }")
    if holdout in cells["data"]:
        raise ValueError(f"holdout_uq without {holdout}: the hold-out's own test cell was given")
    torch.set_num_threads(threads)
    frames = []
    for dataset, questions_path in cells["data"].items():
        others = {source: pair for source, pair in pairs.items() if source != dataset}
        if not others:
            raise ValueError(f"holdout_uq without {holdout}: no dataset is left to train {dataset}'s probe on (a "
                             f"leak-free pool needs 3 datasets or more); leave {method} out of calibration.methods")
        scores = score_method(method, {"greedy": read_parquet(cells["gen"][dataset])},
                              load_questions(questions_path, max_questions, subset_seed),
                              hidden=read_parquet(cells[spec.hidden][dataset], HIDDEN_COLUMNS), training=others,
                              probe=probe, dataset=dataset)
        log.info("%s: %s trained on %s (hold-out %s left out)", dataset, method, sorted(others), holdout)
        frames.append(scores.assign(dataset=dataset))
    write_parquet(pd.concat(frames, ignore_index=True), output)


def release_probe(*, slm: str, method: str, train_hidden: Sequence[str], train_greedy: Sequence[str], output: str,
                  probe: Mapping[str, Any], layer: int, threads: int = 1) -> None:
    """A method learned on other datasets (the OOD probe, OOD P(IK)), learned on the train splits of every
    dataset given and saved for the router (``uqroute serve``) by the method's ``release`` function.

    The same training as the workflow's (pooled in the order of ``train_hidden``), on all datasets: the probe to
    deploy on traffic from none of them.
    """
    # deferred: torch (~3 s), as in uq_score: the uq jobs of other methods start without it
    import torch

    spec = method_spec(method)
    if spec.needs_train != "other_datasets":
        raise ValueError(f"release_probe: {method} learns from one dataset's own split; the router serves probes "
                         "learned on every dataset")
    torch.set_num_threads(threads)
    pairs = training_pairs(train_hidden, train_greedy)
    spec.release_fn()(training=pairs, probe=probe, path=output, slm=slm, method=method, layer=layer)
    log.info("%s %s: probe learned on %s saved to %s", slm, method, list(pairs), output)
