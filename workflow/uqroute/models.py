"""The model registry (``resources/models.yaml``, validated by its JSON schema).

GGUF models are converted once to an fp32 folder by :mod:`uqroute.gguf`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from . import RESOURCES_DIR
from .io import load_schema, load_yaml, validate_registry

_SCHEMA = load_schema("models")
# Defined once, in the registry's schema.
SOURCES: tuple[str, ...] = tuple(_SCHEMA["$defs"]["source"]["enum"])
ENGINE_KINDS: tuple[str, ...] = tuple(_SCHEMA["$defs"]["engine"]["enum"])


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


def _parse_model(name: str, raw: dict, formats: dict[str, CompletionFormat], path: Path) -> ModelSpec:
    fmt = None
    if not raw["chat_template"]:
        if raw["completion_format"] not in formats:
            raise ValueError(f"{path}: models.{name}.completion_format: {raw['completion_format']!r} is not one of "
                             f"completion_formats {sorted(formats)}")
        fmt = formats[raw["completion_format"]]
    gguf = raw.get("gguf") or {}
    params = raw.get("params_b")
    return ModelSpec(
        name=name,
        source=raw["source"],
        engine=raw["engine"],
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
    raw = validate_registry(load_yaml(path), _SCHEMA, path)
    formats = {name: CompletionFormat(**{**fmt, "stop": tuple(fmt.get("stop") or ())})
               for name, fmt in (raw.get("completion_formats") or {}).items()}
    return {name: _parse_model(name, entry, formats, path) for name, entry in raw["models"].items()}


def model_spec(name: str, path: str | os.PathLike | None = None) -> ModelSpec:
    """The registry entry ``name``; ``KeyError`` naming it and the known names otherwise."""
    registry = load_model_registry(path)
    if name not in registry:
        raise KeyError(f"unknown model {name!r} (not in {_registry_path(path)}); known: {', '.join(sorted(registry))}")
    return registry[name]
