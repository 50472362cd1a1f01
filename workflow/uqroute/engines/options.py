"""The engine options a workflow job passes, and the GPUs it reserves for them.

One function decides both, so a job that reserves a GPU always runs its model there: the config's
``engines.<model>`` settings, for the engine kind the job runs (the hidden-state pass always runs
transformers, whatever the model generates with), with the device and dtype of that reservation.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from ..machine import cpu_description, cpu_runs_bf16_natively
from ..models import ModelSpec

# Settings only one kind of engine takes; a job on another kind leaves them out.
KIND_ONLY: dict[str, frozenset[str]] = {
    "hf": frozenset({"batch_size", "threads", "prefix_cache_mb"}),
    "vllm": frozenset({"tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "enforce_eager",
                       "kv_cache_memory_bytes", "max_num_batched_tokens"}),
    "openai": frozenset({"base_url", "model", "api_key_env", "max_concurrency", "max_retries", "timeout"}),
}
WEIGHT_SETTINGS = frozenset({"device", "dtype"})
# What a config that pins no dtype runs: the machine's fastest (:func:`resolve_dtype`), decided on the machine
# that runs the job, not on the one that plans the DAG (a SLURM login node may have another CPU or no GPU).
AUTO_DTYPE = "auto"
DTYPES = ("float32", "bfloat16", "float16")
# The line each engine's job log opens with (:func:`engine_dtype`); :func:`parse_engine_line` reads it back, so
# a run's logs say which machines and dtypes its tables were made on.
ENGINE_LINE = "model %s (%s): dtype %s -> %s on %s"
_ENGINE_LINE_RE = re.compile(r"model (?P<model>\S+) \((?P<kind>[^)]+)\): dtype (?P<asked>\S+) -> (?P<dtype>\S+) "
                             r"on (?P<where>.+)$")
# vLLM's share of each GPU's memory for weights and KV cache (its own default).
GPU_MEMORY_FRACTION = 0.9


def engine_kind(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None = None) -> str:
    """The engine a job of ``spec`` runs: ``kind`` where the job fixes it (hidden states: ``hf``), else the
    config's ``engines.<model>.kind``, else the registry's engine."""
    return kind or configured.get("kind") or spec.engine


def job_gpus(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None = None) -> int:
    """GPUs a job of ``spec`` reserves: none behind an API or on a CPU device, the tensor-parallel size on
    vLLM, one on transformers."""
    kind = engine_kind(spec, configured, kind)
    if kind == "openai" or str(configured.get("device", "cuda")).startswith("cpu"):
        return 0
    if kind == "vllm":
        return int(configured.get("tensor_parallel_size", spec.tensor_parallel_size))
    return 1


def job_engine_options(spec: ModelSpec, configured: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """``kind`` plus the keyword arguments of ``make_engine`` for one job of ``spec``.

    ``configured``: the config's ``engines.<model>`` (may be empty). Settings of another engine kind are
    dropped (a vLLM model's hidden-state job runs transformers); an API engine takes no device or dtype.
    A transformers job that reserves a GPU (:func:`job_gpus`) runs on ``cuda`` unless the config says
    otherwise; vLLM places its own weights on the GPUs it is given. A model engine without a configured
    dtype gets ``auto``, which the engine resolves on the machine it runs on (:func:`resolve_dtype`).
    """
    kind = engine_kind(spec, configured, kind)
    foreign = set().union(*(names for other, names in KIND_ONLY.items() if other != kind))
    if kind == "openai":
        foreign |= WEIGHT_SETTINGS
    options = {key: value for key, value in configured.items() if key != "kind" and key not in foreign}
    if kind == "hf" and job_gpus(spec, configured, kind):
        options.setdefault("device", "cuda")
    if kind == "vllm":
        options.setdefault("tensor_parallel_size", spec.tensor_parallel_size)
        if job_gpus(spec, configured, kind):
            options.setdefault("gpu_memory_utilization", GPU_MEMORY_FRACTION)
    if kind != "openai":
        options.setdefault("dtype", AUTO_DTYPE)
    return {"kind": kind, **options}


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype an engine loads its weights in: ``dtype`` itself, or for ``auto`` the fastest on ``device``.

    ``auto`` on CUDA: bfloat16 where the GPU computes it, else float16. On a CPU: bfloat16 only where the
    CPU has bf16 instructions (AVX-512 BF16 or AMX, :func:`uqroute.machine.cpu_runs_bf16_natively`), else
    float32, because emulated bf16 is slower than float32 (SmolLM2-135M prefill, 2 cores: 6.4x on an
    AVX2-only EPYC). vLLM's CPU build gets the same rule: its linear layers run on PyTorch's CPU GEMMs,
    which emulate bf16 on such a CPU just the same (bench/README.md measures both engines).
    """
    if dtype != AUTO_DTYPE:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} not one of {[*DTYPES, AUTO_DTYPE]}")
        return dtype
    if str(device).startswith("cuda"):
        # deferred: torch (~3 s); the Snakefile plans each job's engine options with this module
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_runs_bf16_natively() else "float32"


def engine_dtype(model: str, kind: str, dtype: str, device: str) -> str:
    """:func:`resolve_dtype` for an engine of ``model``: errors name the model, and the job log records the
    dtype chosen with the machine it was chosen for, so runs on different machines can be told apart."""
    try:
        resolved = resolve_dtype(dtype, device)
    except ValueError as err:
        raise ValueError(f"model {model}: {err}") from None
    where = device
    if not str(device).startswith("cuda"):
        where = f"{device} ({cpu_description()})"
    logging.getLogger(__name__).info(ENGINE_LINE, model, kind, dtype, resolved, where)
    return resolved


def parse_engine_line(line: str) -> dict[str, str] | None:
    """The fields of a log line :func:`engine_dtype` wrote (``model``, ``kind``, ``asked``, ``dtype``, ``where``:
    the device, with the CPU named on a CPU), or None for any other line."""
    found = _ENGINE_LINE_RE.search(line.rstrip("\n"))
    return found.groupdict() if found else None
