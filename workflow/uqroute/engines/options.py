"""The engine options a workflow job passes, and the GPUs it reserves for them.

One function decides both, so a job that reserves a GPU always runs its model there: the config's
``engines.<model>`` settings, for the engine kind the job runs (the hidden-state pass always runs
transformers, whatever the model generates with), with the device and dtype of that reservation.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..models import ModelSpec

# Settings only one kind of engine takes; a job on another kind leaves them out.
KIND_ONLY: dict[str, frozenset[str]] = {
    "hf": frozenset({"batch_size", "threads"}),
    "vllm": frozenset({"tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "enforce_eager",
                       "kv_cache_memory_bytes", "max_num_batched_tokens"}),
    "openai": frozenset({"base_url", "model", "api_key_env", "max_concurrency", "max_retries", "timeout"}),
}
WEIGHT_SETTINGS = frozenset({"device", "dtype"})
# On a reserved GPU: the checkpoint's own dtype (bf16 for the paper's hub models), as vLLM's "auto" does.
GPU_DTYPE = "auto"
# vLLM's share of each GPU's memory for weights and KV cache (its own default).
GPU_MEMORY_FRACTION = 0.9


def _kind(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None) -> str:
    return kind or configured.get("kind") or spec.engine


def job_gpus(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None = None) -> int:
    """GPUs a job of ``spec`` reserves: none behind an API or on a CPU device, the tensor-parallel size on
    vLLM, one on transformers."""
    kind = _kind(spec, configured, kind)
    if kind == "openai" or str(configured.get("device", "cuda")).startswith("cpu"):
        return 0
    if kind == "vllm":
        return int(configured.get("tensor_parallel_size", spec.tensor_parallel_size))
    return 1


def job_engine_options(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """``kind`` plus the keyword arguments of ``make_engine`` for one job of ``spec``.

    ``configured``: the config's ``engines.<model>`` (may be empty). Settings of another engine kind are
    dropped (a vLLM model's hidden-state job runs transformers); an API engine takes no device or dtype.
    A transformers job that reserves a GPU (:func:`job_gpus`) runs on ``cuda`` in the checkpoint's dtype
    unless the config says otherwise; vLLM places its own weights on the GPUs it is given.
    """
    kind = _kind(spec, configured, kind)
    foreign = set().union(*(names for other, names in KIND_ONLY.items() if other != kind))
    if kind == "openai":
        foreign |= WEIGHT_SETTINGS
    options = {key: value for key, value in configured.items() if key != "kind" and key not in foreign}
    if kind == "hf" and job_gpus(spec, configured, kind):
        options.setdefault("device", "cuda")
        options.setdefault("dtype", GPU_DTYPE)
    if kind == "vllm":
        options.setdefault("tensor_parallel_size", spec.tensor_parallel_size)
        if job_gpus(spec, configured, kind):
            options.setdefault("dtype", GPU_DTYPE)
            options.setdefault("gpu_memory_utilization", GPU_MEMORY_FRACTION)
    return {"kind": kind, **options}
