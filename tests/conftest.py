"""Shared fixtures: the real data directory and the real tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uqroute import REPO_ROOT

DATA_DIR = Path(os.environ.get("UQROUTE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
# The workflow keeps its fp32 copies of GGUF models here too, so tests and runs convert each model once.
MODEL_CACHE = Path(os.environ.get("UQROUTE_MODEL_CACHE", REPO_ROOT / "results" / "models"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"dataset files not found at {DATA_DIR} (set UQROUTE_DATA_DIR)")
    return DATA_DIR


def _materialized(name: str) -> Path:
    from uqroute.gguf import materialize
    from uqroute.models import model_spec

    return materialize(model_spec(name), MODEL_CACHE / name)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """fp32 copy of SmolLM2-135M-Instruct converted from the wheel's GGUF (once per machine)."""
    return _materialized("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    """fp32 copy of Gemma 3 270M (base) converted from the wheel's GGUF (once per machine)."""
    return _materialized("gemma3-270m")


@pytest.fixture(scope="session")
def smollm2_engine(smollm2_dir):
    from uqroute.engines import make_engine
    from uqroute.models import model_spec

    # One thread: the test machine has two cores shared with other work, and oversubscribed
    # threads slow a small model's prefill by an order of magnitude.
    engine = make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=smollm2_dir, threads=1)
    yield engine
    engine.close()
