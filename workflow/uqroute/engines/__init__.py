"""Engines behind one interface (see :mod:`uqroute.engines.base`), and :func:`make_engine`, which builds
the engine a registry entry asks for."""

from __future__ import annotations

import os
from typing import Any

from ..models import ENGINE_KINDS, ModelSpec
from .base import (Completion, Conversation, CountsTokens, Engine, EngineError, Message, ReadsHiddenStates,
                   Sampling, hidden_state_reader)
from .options import KIND_ONLY, engine_kind
from .vllm_engine import VLLMEngine

__all__ = ["Completion", "Conversation", "CountsTokens", "Engine", "EngineError", "Message", "ReadsHiddenStates",
           "Sampling", "hidden_state_reader", "make_engine"]


def make_engine(
    spec: ModelSpec,
    *,
    kind: str | None = None,
    model_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **opts: Any,
) -> Engine:
    """An engine serving ``spec``.

    ``kind`` defaults to the registry's engine. ``model_dir`` is the
    materialized copy of a GGUF model (required for those); hub models load
    ``spec.hub_id`` unless ``model_dir`` points elsewhere. ``cache_dir`` is the
    API engine's response cache. ``opts`` are the config's per-model engine
    overrides (``device``, ``dtype``, ``batch_size``, ``threads``,
    ``tensor_parallel_size``, ...); each engine rejects what it does not know.
    """
    kind = engine_kind(spec, {}, kind)
    if kind not in ENGINE_KINDS:
        raise ValueError(f"model {spec.name}: unknown engine kind {kind!r}; expected one of {ENGINE_KINDS}")
    if kind == "openai":
        # deferred: the openai client (~0.9 s); the Snakefile reads this package through engines.options
        from .openai_engine import OpenAIEngine

        return OpenAIEngine(
            spec.name,
            model=opts.pop("model", None) or spec.api_model or spec.hub_id or spec.name,
            base_url=opts.pop("base_url", spec.base_url),
            api_key_env=opts.pop("api_key_env", None) or spec.api_key_env or "OPENAI_API_KEY",
            cache_dir=cache_dir,
            **opts,
        )
    if spec.source == "api":
        raise ValueError(f"model {spec.name} is served by an API only; engine kind {kind!r} needs weights")
    if model_dir is not None:
        weights = str(model_dir)
    elif spec.is_gguf:
        raise ValueError(f"model {spec.name}: a GGUF model needs model_dir (its materialized copy; see materialize)")
    else:
        weights = spec.hub_id
    if kind == "hf":
        # deferred: torch and transformers (~8 s), only an engine that runs weights here needs them
        from .hf import HFEngine

        # One `engines.<model>` entry serves a vLLM model's generate passes and its hidden pass, which always
        # runs on transformers: the vLLM-only settings do not apply there.
        return HFEngine(spec, weights, **{k: v for k, v in opts.items() if k not in KIND_ONLY["vllm"]})
    opts.setdefault("tensor_parallel_size", spec.tensor_parallel_size)
    return VLLMEngine(spec, weights, **opts)
