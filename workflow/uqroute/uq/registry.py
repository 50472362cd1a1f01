"""The one registry of UQ methods: name, display label, the passes each reads, its training data.

Kept free of heavy imports (the workflow reads it while it builds the DAG of the paper's grid); a
method's function is imported only when it is called. Adding a method is one module under ``uqroute.uq``
and one :class:`MethodSpec` line in :data:`METHODS` (or :func:`register_method` from outside the
package): the uq jobs, the analysis and the router read everything else from the spec.
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
    ``function``: ``"module:function"`` under ``uqroute.uq``, ``"package.module:function"`` of another
    package, or the function itself; called with ``questions`` and the pass tables as keywords; a probe's also with ``hidden``
    (test hidden states), ``training`` (dataset -> train ``(hidden, greedy)`` tables), ``probe`` (the
    config's probe settings) and ``dataset``. ``not_served``: why ``uqroute serve`` cannot compute it per
    request (None: it can).
    """

    name: str
    label: str
    passes: tuple[str, ...]
    function: str | Callable[..., pd.DataFrame]
    needs_hidden: bool = False
    needs_train: str | None = None
    not_served: str | None = None

    @property
    def fn(self) -> Callable[..., pd.DataFrame]:
        if callable(self.function):
            return self.function
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module if "." in module else f"uqroute.uq.{module}"), name)


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("avg_token_prob", "Avg. token prob.", ("greedy",), "avg_token_prob:avg_token_prob"),
    MethodSpec("p_true", "p(True)", ("greedy", "ptrue"), "p_true:p_true"),
    MethodSpec("perplexity", "Perplexity", ("greedy",), "perplexity:perplexity"),
    MethodSpec("jaccard_degree", "Jaccard degree", ("greedy", "sample"), "jaccard_degree:jaccard_degree"),
    MethodSpec("verbal_1s", "Verbalization-1s", ("verbal1s",), "verbalized:verbal_1s",
               not_served="its confidence comes with an answer to a different prompt (the one-step format), not "
                          "to the user's own messages"),
    MethodSpec("verbal_2s", "Verbalization-2s", ("greedy", "verbal2s"), "verbalized:verbal_2s"),
    MethodSpec("trained_probe", "Trained probe", ("greedy",), "probes:score_trained_probe", needs_hidden=True,
               needs_train="in_domain",
               not_served="it learns from one dataset's own split (or cross-fits over its test questions); serve "
                          "ood_probe, learned on every dataset (results/release/<slm>/ood_probe.probe.pt)"),
    MethodSpec("ood_probe", "OOD probe", ("greedy",), "probes:score_ood_probe", needs_hidden=True,
               needs_train="other_datasets"),
)}
# The paper's eight, in its order (figure legends and colours); METHODS also holds registered ones.
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
PROBE_METHODS = frozenset(name for name, spec in METHODS.items() if spec.needs_hidden)


def register_method(spec: MethodSpec) -> None:
    """Add a method to the registry (a method of another package; the built-in ones are lines of METHODS)."""
    from ..passes import PASS_NAMES

    if spec.name in METHODS:
        raise ValueError(f"UQ method {spec.name!r} is registered already")
    unknown = [name for name in spec.passes if name not in PASS_NAMES]
    if unknown:
        raise ValueError(f"UQ method {spec.name!r} reads unknown pass(es) {unknown}; passes: {', '.join(PASS_NAMES)}")
    METHODS[spec.name] = spec


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown UQ method {name!r}; known: {', '.join(METHODS)}") from None


def method_label(name: str) -> str:
    """Display name of a method; an unknown name is shown as it is."""
    spec = METHODS.get(name)
    return spec.label if spec else name
