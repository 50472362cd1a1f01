"""A request's routing policy: which served method scores its answer, and at what routed share or threshold.

Two spellings, as routers' users know them:
- in the model name (RouteLLM style): ``uqroute`` (the server's defaults), ``uqroute-<method>``, or
  ``uqroute-<method>-<ratio>``, e.g. ``uqroute-perplexity-0.3``; ``GET /v1/models`` lists the choices;
- in the body: ``"uqroute": {"method": ..., "ratio": ...}`` or ``{"threshold": ...}`` (the openai client's
  ``extra_body``).
A ratio is turned into a threshold by the method's own calibration file, as the server's default ratio is. A
request that names neither gets the server's default, which the controller (if on) keeps on target; a request's
own ratio or threshold is applied as given and does not move the controller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class PolicyError(ValueError):
    """A policy the server cannot apply; ``param`` names the request field at fault."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class Policy:
    """What a request asked for: a served method, and at most one of a ratio and a threshold (None: the
    server's default ratio)."""

    method: str
    ratio: float | None = None
    threshold: float | None = None

    @property
    def is_default(self) -> bool:
        return self.ratio is None and self.threshold is None


def model_names(served_name: str, methods: list[str], ratios: list[float]) -> list[str]:
    """The names ``/v1/models`` lists: the default, one per method, one per (method, listed ratio)."""
    names = [served_name]
    for method in methods:
        names.append(f"{served_name}-{method}")
        names.extend(f"{served_name}-{method}-{ratio:g}" for ratio in ratios)
    return names


def parse_policy(model: str, hints: dict, *, served_name: str, methods: list[str]) -> Policy:
    """The policy of a request with ``model`` and ``uqroute`` body fields ``hints`` (method, ratio, threshold);
    :class:`PolicyError` naming the field when it cannot be served. ``methods[0]`` is the default method."""
    method, ratio = _from_model_name(model, served_name, methods)
    asked_method = hints.get("method")
    if asked_method is not None:
        if method is not None and asked_method != method:
            raise PolicyError("uqroute.method", f"{asked_method!r} contradicts the model name {model!r}")
        if asked_method not in methods:
            raise PolicyError("uqroute.method", f"{asked_method!r} is not served here; served: {', '.join(methods)}")
        method = asked_method
    body_ratio, threshold = hints.get("ratio"), hints.get("threshold")
    if body_ratio is not None and threshold is not None:
        raise PolicyError("uqroute.threshold", "give a ratio or a threshold, not both")
    if body_ratio is not None:
        if ratio is not None and body_ratio != ratio:
            raise PolicyError("uqroute.ratio", f"{body_ratio:g} contradicts the model name {model!r}")
        ratio = _share(body_ratio, "uqroute.ratio")
    if threshold is not None:
        if ratio is not None:
            raise PolicyError("uqroute.threshold", f"the model name {model!r} already sets a ratio")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or math.isnan(threshold):
            raise PolicyError("uqroute.threshold", f"must be a number, got {threshold!r}")
        threshold = float(threshold)
    return Policy(method or methods[0], ratio, threshold)


def _from_model_name(model: str, served_name: str, methods: list[str]) -> tuple[str | None, float | None]:
    if model == served_name:
        return None, None
    prefix = f"{served_name}-"
    if not model.startswith(prefix):
        raise PolicyError("model", f"this router serves {served_name!r} and {prefix}<method>[-<ratio>] "
                                   f"(GET /v1/models lists them), not {model!r}")
    method, _, ratio_text = model[len(prefix):].partition("-")
    if method not in methods:
        raise PolicyError("model", f"method {method!r} in {model!r} is not served here; served: {', '.join(methods)}")
    if not ratio_text:
        return method, None
    try:
        ratio = float(ratio_text)
    except ValueError:
        raise PolicyError("model", f"{ratio_text!r} in {model!r} is not a ratio (a number from 0 to 1)") from None
    return method, _share(ratio, "model")


def _share(value, param: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise PolicyError(param, f"a routed share is a number from 0 to 1, got {value!r}")
    return float(value)
