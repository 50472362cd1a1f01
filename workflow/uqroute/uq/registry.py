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

from ..passes import HIDDEN_PASSES, PASS_NAMES


@dataclass(frozen=True)
class MethodSpec:
    """One UQ method.

    ``passes``: pass names of the SLM on the test split it reads (the function's keyword arguments
    for non-probe methods). ``hidden``: the hidden-state pass a probe reads (``uqroute.passes.HIDDEN_PASSES``:
    ``hidden``, the answered conversation; ``hidden_question``, the question alone), test and train splits
    alike; None for a method that reads none. ``needs_train``:
    None, ``"in_domain"`` (this dataset's train split, or cross-fitting where the dataset registry
    says ``probe_training: crossfit``) or ``"other_datasets"`` (the other datasets' train splits).
    ``function``: ``"module:function"`` under ``uqroute.uq``, ``"package.module:function"`` of another
    package, or the function itself; called with ``questions`` and the pass tables as keywords; a probe's also with ``hidden``
    (test hidden states), ``training`` (dataset -> train ``(hidden, greedy)`` tables), ``probe`` (the
    config's probe settings) and ``dataset``. ``not_served``: why ``uqroute serve`` cannot compute it per
    request (None: it can).

    A probe learned on other datasets is released for the router by two more functions (same spelling as
    ``function``): ``release(training, probe, path, *, slm, method, layer)`` learns it on every dataset's train
    tables and writes it to ``path``; ``load(path)`` returns ``(score, record)``: ``score`` maps hidden
    vectors ``(n, width)`` to confidences, ``record`` says what it was learned for (``slm``, ``method``,
    ``layer``, ``datasets``). None: the method is not released.

    ``color``: its colour in every figure (a matplotlib colour); None: one from a fallback palette.
    """

    name: str
    label: str
    passes: tuple[str, ...]
    function: str | Callable[..., pd.DataFrame]
    hidden: str | None = None
    needs_train: str | None = None
    not_served: str | None = None
    release: str | Callable[..., None] | None = None
    load: str | Callable[..., tuple] | None = None
    color: str | None = None

    @property
    def needs_hidden(self) -> bool:
        """A probe: it reads hidden states."""
        return self.hidden is not None

    @property
    def fn(self) -> Callable[..., pd.DataFrame]:
        return _resolve(self.function)

    @property
    def released(self) -> bool:
        return self.release is not None

    def release_fn(self) -> Callable[..., None]:
        if self.release is None:
            raise ValueError(f"UQ method {self.name!r} is not released for the router (its MethodSpec has no release)")
        return _resolve(self.release)

    def load_fn(self) -> Callable[..., tuple]:
        if self.load is None:
            raise ValueError(f"UQ method {self.name!r} has no released probe to load (its MethodSpec has no load)")
        return _resolve(self.load)


def _resolve(function):
    """A function given as itself, as ``"module:function"`` under ``uqroute.uq`` or as ``"package.module:function"``."""
    if callable(function):
        return function
    module, name = function.split(":")
    return getattr(importlib.import_module(module if "." in module else f"uqroute.uq.{module}"), name)


# The MLP probes learned on other datasets, released as probe files (uqroute.uq.probes).
_RELEASED = {"release": "probes:release_probe", "load": "probes:load_released_probe"}
_IN_DOMAIN = ("it learns from one dataset's own split (or cross-fits over its test questions); serve its variant "
              "learned on every dataset")

# Colours: matplotlib's tab10 without its grey, which the figures keep for random routing.
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("avg_token_prob", "Avg. token prob.", ("greedy",), "avg_token_prob:avg_token_prob", color="tab:blue"),
    MethodSpec("p_true", "p(True)", ("greedy", "ptrue"), "p_true:p_true", color="tab:orange"),
    MethodSpec("perplexity", "Perplexity", ("greedy",), "perplexity:perplexity", color="tab:green"),
    MethodSpec("jaccard_degree", "Jaccard degree", ("greedy", "sample"), "jaccard_degree:jaccard_degree",
               color="tab:purple"),
    MethodSpec("verbal_1s", "Verbalization-1s", ("verbal1s",), "verbalized:verbal_1s", color="tab:olive",
               not_served="its confidence comes with an answer to a different prompt (the one-step format), not "
                          "to the user's own messages"),
    MethodSpec("verbal_2s", "Verbalization-2s", ("greedy", "verbal2s"), "verbalized:verbal_2s", color="tab:brown"),
    MethodSpec("trained_probe", "Trained probe", ("greedy",), "probes:score_trained_probe", hidden="hidden",
               needs_train="in_domain", not_served=_IN_DOMAIN, color="tab:red"),
    MethodSpec("ood_probe", "OOD probe", ("greedy",), "probes:score_ood_probe", hidden="hidden",
               needs_train="other_datasets", color="tab:cyan", **_RELEASED),
    # P(IK) (Kadavath et al., 2022): the same probes on the question alone, before any answer is generated.
    MethodSpec("p_ik", "P(IK)", ("greedy",), "probes:score_trained_probe", hidden="hidden_question",
               needs_train="in_domain", not_served=_IN_DOMAIN, color="tab:pink"),
    MethodSpec("ood_p_ik", "OOD P(IK)", ("greedy",), "probes:score_ood_probe", hidden="hidden_question",
               needs_train="other_datasets", color="midnightblue", **_RELEASED),
)}
# The paper's eight, in its order (figure legends); METHODS also holds the project's and registered ones.
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)[:8]


def probe_methods() -> frozenset[str]:
    """The registered methods that read hidden states (looked up now: registration may add some)."""
    return frozenset(name for name, spec in METHODS.items() if spec.needs_hidden)


def register_method(spec: MethodSpec) -> None:
    """Add a method to the registry (a method of another package; the built-in ones are lines of METHODS)."""
    if spec.name in METHODS:
        raise ValueError(f"UQ method {spec.name!r} is registered already")
    unknown = [name for name in spec.passes if name not in PASS_NAMES]
    if unknown:
        raise ValueError(f"UQ method {spec.name!r} reads unknown pass(es) {unknown}; passes: {', '.join(PASS_NAMES)}")
    if spec.hidden is not None and spec.hidden not in HIDDEN_PASSES:
        raise ValueError(f"UQ method {spec.name!r} reads unknown hidden-state pass {spec.hidden!r}; hidden passes: "
                         f"{', '.join(HIDDEN_PASSES)}")
    METHODS[spec.name] = spec


def load_plugins(modules) -> None:
    """Import each of ``modules`` (the configs' ``plugins``): a package's methods register themselves when their
    module is imported (:func:`register_method`). A module that cannot be imported is an error naming it."""
    for module in modules or ():
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"plugins: cannot import {module!r} ({err}); is its package installed, or its folder on "
                              "PYTHONPATH?") from err


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown UQ method {name!r}; known: {', '.join(METHODS)}") from None


def method_label(name: str) -> str:
    """Display name of a method; an unknown name is shown as it is."""
    spec = METHODS.get(name)
    return spec.label if spec else name
