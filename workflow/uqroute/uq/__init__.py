"""The eight UQ methods: cheap pure functions from pass tables to a confidence per question.

Every method returns ``id, confidence, prediction, correct, valid`` with one row per question,
in the questions' order; higher confidence = more confident; rows a method cannot score have
``confidence`` NaN and ``valid`` False. The workflow imports this package while it builds the DAG,
so the probes' torch import is deferred until a probe actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from .avg_token_prob import avg_token_prob
from .jaccard_degree import jaccard_degree
from .p_true import p_true
from .perplexity import perplexity
from .requirements import METHOD_PASSES, PROBE_METHODS
from .tables import OUTPUT_COLUMNS
from .verbalized import verbal_1s, verbal_2s


def _trained_probe(*args, **kwargs) -> pd.DataFrame:
    from .probes import trained_probe

    return trained_probe(*args, **kwargs)


def _ood_probe(*args, **kwargs) -> pd.DataFrame:
    from .probes import ood_probe

    return ood_probe(*args, **kwargs)


@dataclass(frozen=True)
class MethodSpec:
    """A method's name, the pass tables it reads and where its training data comes from.

    ``passes``: pass names of the SLM on the test split (the function's keyword arguments for
    non-probe methods). ``needs_hidden``: also reads the layer -8 hidden states. ``needs_train``:
    None, ``"in_domain"`` (this dataset's train split, or cross-fitting where the dataset registry
    says ``probe_training: crossfit``) or ``"other_datasets"`` (the other datasets' train splits).
    ``fn``: for non-probe methods ``fn(questions=..., **{pass: table})``; for probes the function
    of ``uqroute.uq.probes`` with its own signature.
    """

    name: str
    passes: tuple[str, ...]
    needs_hidden: bool
    needs_train: str | None
    fn: Callable[..., pd.DataFrame]


_FUNCTIONS: dict[str, tuple[Callable[..., pd.DataFrame], str | None]] = {
    "avg_token_prob": (avg_token_prob, None),
    "p_true": (p_true, None),
    "perplexity": (perplexity, None),
    "jaccard_degree": (jaccard_degree, None),
    "verbal_1s": (verbal_1s, None),
    "verbal_2s": (verbal_2s, None),
    "trained_probe": (_trained_probe, "in_domain"),
    "ood_probe": (_ood_probe, "other_datasets"),
}

METHODS: dict[str, MethodSpec] = {
    name: MethodSpec(name, METHOD_PASSES[name], name in PROBE_METHODS, needs_train, fn)
    for name, (fn, needs_train) in _FUNCTIONS.items()
}


def _spec(method: str) -> MethodSpec:
    try:
        return METHODS[method]
    except KeyError:
        raise KeyError(f"unknown UQ method {method!r}; known: {list(METHODS)}") from None


def pass_requirements(method: str) -> tuple[str, ...]:
    """The SLM pass tables (test split) that ``method`` reads, e.g. ``("greedy", "ptrue")``."""
    return _spec(method).passes


def score_method(method: str, passes: Mapping[str, pd.DataFrame], questions: pd.DataFrame, **params) -> pd.DataFrame:
    """Score one of the six non-probe methods: ``passes`` maps pass name -> table.

    Returns ``id, confidence, prediction, correct, valid``, one row per question in order.
    Probes need hidden states and training tables: call ``uqroute.uq.probes`` directly.
    """
    spec = _spec(method)
    if spec.needs_hidden:
        raise ValueError(f"UQ method {method!r} is a probe: use uqroute.uq.probes, not score_method")
    missing = [name for name in spec.passes if name not in passes]
    if missing:
        raise KeyError(f"UQ method {method!r} needs pass table(s) {missing}; got {sorted(passes)}")
    table = spec.fn(questions=questions, **{name: passes[name] for name in spec.passes}, **params)
    return table[list(OUTPUT_COLUMNS)]


__all__ = ["METHODS", "MethodSpec", "OUTPUT_COLUMNS", "pass_requirements", "score_method"]
