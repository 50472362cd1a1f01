"""Every results path of the workflow, spelled once.

The rules build their inputs and outputs from these templates (``workflow/rules/common.smk``), and the
jobs read a cell's coordinates back from a path with :func:`cell_of`, so an aggregate job never depends
on two lists lining up index by index. Templates are relative to the results folder.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Sequence

TEMPLATES: dict[str, str] = {
    "data": "data/{dataset}/{split}.parquet",
    "model_dir": "models/{model}",
    # A model pass writes its replies; grading (rule judge or LLM judge) adds prediction and correct.
    "replies": "gen/{model}/{dataset}/{split}/{pass_name}.replies.parquet",
    "gen": "gen/{model}/{dataset}/{split}/{pass_name}.parquet",
    # Hidden-state passes (uqroute.passes.HIDDEN_PASSES): the answered conversation, and the question alone.
    "hidden": "hidden/{model}/{dataset}/{split}.parquet",
    "hidden_question": "hidden/{model}/{dataset}/{split}.question.parquet",
    "uq": "uq/{slm}/{dataset}/{method}.parquet",
    "routing": "routing/{slm}/{llm}/{dataset}/{method}.parquet",
    "calibration": "calibration/{slm}/{method}/holdout-{dataset}.parquet",
    # An OOD probe's confidences on every dataset but the hold-out {dataset}, from probes that never saw it:
    # what the hold-out calibration set pools for that method.
    "holdout_uq": "holdout-uq/{slm}/{method}/without-{dataset}.parquet",
    "generalization": "generalization/{slm}/{llm}/{method}/{dataset}.parquet",
    # The static calibration threshold against the label-free share controller, replayed on the held-out dataset.
    "share_control": "share-control/{slm}/{llm}/{method}/{dataset}.parquet",
    "release": "release/{slm}/{method}.parquet",
    # The OOD probe learned on every dataset, for the router (uqroute serve).
    "release_probe": "release/{slm}/{method}.probe.pt",
    # What a release file routes, and what its thresholds did on datasets held out (uqroute.analysis.card).
    "release_card": "release/{slm}/{method}.card.json",
    "alignment": "metrics/alignment.parquet",
    # Every pair of methods of an (SLM, dataset) compared on the same questions (paired bootstrap of AUROC).
    "comparisons": "metrics/comparisons.parquet",
    # Every cell's AUROC under every bootstrap resample: what the findings bootstrap statements about methods from.
    "auroc_resamples": "metrics/auroc_resamples.parquet",
    "routing_metrics": "metrics/routing.parquet",
    "relative_accuracy": "metrics/relative_accuracy.parquet",
    "findings": "metrics/findings.parquet",
    # How often each pass's replies used their whole token budget (cut off).
    "truncation": "metrics/truncation.parquet",
    # How each graded pass's replies were read (the reading rules) and graded (the rule, or the LLM judge).
    "grading": "metrics/grading.parquet",
    "findings_html": "metrics/findings.html",
    # The paper's Figures 1-17 by number (uqroute.paper_figures), drawn by the figure families
    # (uqroute.figure_families, which derive their own figures' paths from their declarations).
    "paper_figure": "paper/fig{number}.{ext}",
    "checkpoints": ".checkpoints/{stage}/{cell}",
    "api_cache": "cache/api",
}


def template(kind: str) -> str:
    try:
        return TEMPLATES[kind]
    except KeyError:
        raise KeyError(f"unknown results path kind {kind!r}; known: {sorted(TEMPLATES)}") from None


def results_path(results: str, kind: str, **fields: str) -> str:
    """``results/<template of kind>`` with ``fields`` filled in; a missing field is an error naming it."""
    try:
        return f"{results}/{template(kind).format(**fields)}"
    except KeyError as missing:
        raise KeyError(f"results path {kind!r} needs field {missing}") from None


MODEL_CACHE_ENV = "UQROUTE_MODEL_CACHE"


def model_cache(results: str | os.PathLike = "results") -> Path:
    """Where the fp32 copies of GGUF models live outside a workflow job (the router, tests, benchmarks):
    ``$UQROUTE_MODEL_CACHE``, else the workflow's own model folders under ``results`` (``results/models``)."""
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path(results_path(str(results), "model_dir", model="")))


def model_folder(results: str | os.PathLike, model: str) -> Path:
    """The fp32 folder the workflow converts ``model`` to, under its results folder ``results``."""
    return Path(results_path(str(results), "model_dir", model=model))


def wildcard_path(results: str, kind: str, **fixed: str) -> str:
    """``results/<template of kind>`` with every field not in ``fixed`` left as a Snakemake wildcard (a rule's output)."""
    return results_path(results, kind, **{name: f"{{{name}}}" for name in fields(kind)} | fixed)


def checkpoint_path(results: str, stage: str, cell) -> str:
    """Where a long job of ``stage`` keeps its finished parts: one folder per cell (its wildcard values)."""
    return results_path(results, "checkpoints", stage=stage, cell="/".join(str(value) for value in cell))


def job_record_path(root: str, rule: str, output: str, suffix: str) -> str:
    """Where each job of ``rule`` keeps its log or benchmark (``suffix``: ``log``, ``tsv``): ``root/rule.suffix``
    for a rule of one job, else ``root/rule/<the wildcards of its output pattern, in order>.suffix``, so a job's
    record is named by the rule and the wildcards a run's error report shows."""
    names = list(dict.fromkeys(re.findall(r"\{(\w+)(?:,[^}]*)?\}", output)))
    return "/".join([root, rule, *(f"{{{name}}}" for name in names)]) + f".{suffix}"


def _pattern(kind: str) -> tuple[re.Pattern, tuple[str, ...]]:
    return _compiled(template(kind))


@lru_cache(maxsize=None)
def _compiled(text: str) -> tuple[re.Pattern, tuple[str, ...]]:
    names = tuple(re.findall(r"\{(\w+)\}", text))
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+?)" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{\w+\})", text) if part
    )
    return re.compile(rf"(?:^|/){regex}$"), names


def fields(kind: str) -> tuple[str, ...]:
    """The fields of template ``kind``, in order."""
    return _pattern(kind)[1]


def cell_of(path: str, kind: str) -> dict[str, str]:
    """The fields of ``path`` under template ``kind``, e.g. ``{"slm": ..., "dataset": ..., "method": ...}``.

    The path may carry any prefix (the results folder). Raises ValueError naming the path and the
    template when it does not match.
    """
    return fields_of(path, template(kind), kind)


def fields_of(path: str, pattern: str, name: str = "matching") -> dict[str, str]:
    """The fields of ``path`` under the path ``pattern`` (``{field}`` placeholders; any prefix before it);
    ValueError naming the path, ``name`` and the pattern when it does not match."""
    regex, _ = _compiled(pattern)
    match = regex.search(PurePosixPath(path).as_posix())
    if match is None:
        raise ValueError(f"{path}: not a {name} path ({pattern})")
    return match.groupdict()


def kind_of(path: str, kinds: Sequence[str]) -> str:
    """The first of ``kinds`` whose template ``path`` matches; ValueError naming the path and the kinds if none."""
    for kind in kinds:
        if _pattern(kind)[0].search(PurePosixPath(path).as_posix()):
            return kind
    raise ValueError(f"{path}: none of the results paths {', '.join(f'{k} ({template(k)})' for k in kinds)}")


def cells_of(paths, kind: str, names: tuple[str, ...] | None = None) -> list[tuple[str, ...]]:
    """``cell_of`` for each path, as tuples of ``names`` (default: the template's own field order)."""
    names = names or fields(kind)
    return [tuple(cell_of(path, kind)[name] for name in names) for path in paths]
