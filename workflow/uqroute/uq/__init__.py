"""The eight UQ methods: cheap pure functions from pass tables to a confidence per question.

Every method returns ``id, confidence, prediction, correct, valid`` with one row per question,
in the questions' order; higher confidence = more confident; rows a method cannot score have
``confidence`` NaN and ``valid`` False. The methods themselves are listed once, in
:mod:`uqroute.uq.registry`; the workflow imports this package while it builds the DAG, so the
methods' modules (and the probes' torch) are imported only when a method runs.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .registry import METHOD_NAMES, METHODS, PROBE_METHODS, MethodSpec, method_spec
from .tables import OUTPUT_COLUMNS


def pass_requirements(method: str) -> tuple[str, ...]:
    """The SLM pass tables (test split) that ``method`` reads, e.g. ``("greedy", "ptrue")``."""
    return method_spec(method).passes


def score_method(method: str, passes: Mapping[str, pd.DataFrame], questions: pd.DataFrame, **params) -> pd.DataFrame:
    """Score one of the six non-probe methods: ``passes`` maps pass name -> table.

    Returns ``id, confidence, prediction, correct, valid``, one row per question in order.
    Probes need hidden states and training tables: call ``uqroute.uq.probes`` directly.
    """
    spec = method_spec(method)
    if spec.needs_hidden:
        raise ValueError(f"UQ method {method!r} is a probe: use uqroute.uq.probes, not score_method")
    missing = [name for name in spec.passes if name not in passes]
    if missing:
        raise KeyError(f"UQ method {method!r} needs pass table(s) {missing}; got {sorted(passes)}")
    table = spec.fn(questions=questions, **{name: passes[name] for name in spec.passes}, **params)
    return table[list(OUTPUT_COLUMNS)]


__all__ = ["METHODS", "METHOD_NAMES", "MethodSpec", "OUTPUT_COLUMNS", "PROBE_METHODS", "method_spec",
           "pass_requirements", "score_method"]
