"""The eight UQ methods: cheap pure functions from pass tables to a confidence per question.

Every method returns ``id, confidence, prediction, correct, valid`` with one row per question,
in the questions' order; higher confidence = more confident; rows a method cannot score have
``confidence`` NaN and ``valid`` False. The methods themselves are listed once, in
:mod:`uqroute.uq.registry`; the workflow imports this package while it builds the DAG, so the
methods' modules (and the probes' torch) are imported only when a method runs.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from .registry import METHOD_NAMES, METHODS, MethodSpec, method_spec, probe_methods, register_method
from .tables import OUTPUT_COLUMNS


def pass_requirements(method: str) -> tuple[str, ...]:
    """The SLM pass tables (test split) that ``method`` reads, e.g. ``("greedy", "ptrue")``."""
    return method_spec(method).passes


def score_method(method: str, passes: Mapping[str, pd.DataFrame], questions: pd.DataFrame, *,
                 hidden: pd.DataFrame | None = None, training: Mapping[str, Any] | None = None,
                 probe: Mapping[str, Any] | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Score any registered method: ``passes`` maps pass name -> table (the method's passes at least).

    A probe also reads ``hidden`` (test hidden states), ``training`` (dataset -> train ``(hidden, greedy)``
    tables; empty for a trained probe that cross-fits), ``probe`` (the config's probe settings) and
    ``dataset``. Returns ``id, confidence, prediction, correct, valid``, one row per question in order.
    """
    spec = method_spec(method)
    missing = [name for name in spec.passes if name not in passes]
    if missing:
        raise KeyError(f"UQ method {method!r} needs pass table(s) {missing}; got {sorted(passes)}")
    inputs: dict[str, Any] = {name: passes[name] for name in spec.passes}
    if spec.needs_hidden:
        if hidden is None or probe is None or dataset is None:
            raise ValueError(f"UQ method {method!r} is a probe: it needs hidden, probe and dataset")
        inputs.update(hidden=hidden, training=dict(training or {}), probe=probe, dataset=dataset)
    table = spec.fn(questions=questions, **inputs)
    return table[list(OUTPUT_COLUMNS)]


__all__ = ["METHODS", "METHOD_NAMES", "MethodSpec", "OUTPUT_COLUMNS", "method_spec", "probe_methods",
           "pass_requirements", "register_method", "score_method"]
