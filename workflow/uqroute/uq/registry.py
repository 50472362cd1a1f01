"""The one registry of UQ methods: name, display label, the passes each reads, its training data.

Kept free of heavy imports (the workflow reads it while it builds the DAG of the paper's grid); a
method's function is imported only when it is called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class MethodSpec:
    """One UQ method.

    ``passes``: pass names of the SLM on the test split it reads (the function's keyword arguments
    for non-probe methods). ``needs_hidden``: also reads the layer -8 hidden states. ``needs_train``:
    None, ``"in_domain"`` (this dataset's train split, or cross-fitting where the dataset registry
    says ``probe_training: crossfit``) or ``"other_datasets"`` (the other datasets' train splits).
    ``function``: ``"module:function"`` under ``uqroute.uq``.
    """

    name: str
    label: str
    passes: tuple[str, ...]
    function: str
    needs_hidden: bool = False
    needs_train: str | None = None

    @property
    def fn(self) -> Callable[..., pd.DataFrame]:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"uqroute.uq.{module}"), name)


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("avg_token_prob", "Avg. token prob.", ("greedy",), "avg_token_prob:avg_token_prob"),
    MethodSpec("p_true", "p(True)", ("greedy", "ptrue"), "p_true:p_true"),
    MethodSpec("perplexity", "Perplexity", ("greedy",), "perplexity:perplexity"),
    MethodSpec("jaccard_degree", "Jaccard degree", ("greedy", "sample"), "jaccard_degree:jaccard_degree"),
    MethodSpec("verbal_1s", "Verbalization-1s", ("verbal1s",), "verbalized:verbal_1s"),
    MethodSpec("verbal_2s", "Verbalization-2s", ("greedy", "verbal2s"), "verbalized:verbal_2s"),
    MethodSpec("trained_probe", "Trained probe", ("greedy",), "probes:trained_probe", needs_hidden=True,
               needs_train="in_domain"),
    MethodSpec("ood_probe", "OOD probe", ("greedy",), "probes:ood_probe", needs_hidden=True,
               needs_train="other_datasets"),
)}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
PROBE_METHODS = frozenset(name for name, spec in METHODS.items() if spec.needs_hidden)


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown UQ method {name!r}; known: {', '.join(METHOD_NAMES)}") from None


def method_label(name: str) -> str:
    """Display name of a method; an unknown name is shown as it is."""
    spec = METHODS.get(name)
    return spec.label if spec else name
