"""Shared fixtures: the real data directory, the real tiny models and the tiny slice's two runs."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from uqroute import REPO_ROOT
from uqroute.datasets import DATASET_NAMES, dataset_info
from uqroute.paths import model_cache

DATA_DIR = Path(os.environ.get("UQROUTE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
# Set by .ci/run: there the data folder must be present, and a real-data test that cannot find it fails.
REQUIRE_DATA = os.environ.get("UQROUTE_REQUIRE_DATA", "") not in ("", "0")


def _split_rows(info: dict, split: str) -> int:
    """Rows of a loaded split, from the dataset registry: its file's rows, or its share of a derived split."""
    rows, derived = info["local"][split]["rows"], info.get("derived_split")
    if derived is None:
        return rows
    return derived["test_size"] if split == "test" else rows - derived["test_size"]


# Rows of each local dataset's (test, train) split, as the dataset registry states them (the paper's test sizes);
# the loader tests check the data folder's files against them. Datasets without a local copy are left out.
LOCAL_ROWS = {name: (_split_rows(info, "test"), _split_rows(info, "train"))
              for name, info in ((name, dataset_info(name)) for name in DATASET_NAMES) if info.get("local")}
# The workflow keeps its fp32 copies of GGUF models here too, so tests and runs convert each model once.
MODEL_CACHE = model_cache(REPO_ROOT / "results")


# Fixtures that load a model (or run the DAG with one): a test that asks for any of them is `slow`, so the
# quick tier (`pytest -m "not slow"`) never converts or loads a model.
MODEL_FIXTURES = frozenset({"smollm2_dir", "gemma3_dir", "smollm2_engine", "model_dirs", "slice_run", "slice_rerun"})


# The longest modules (minutes each: DAG runs, SLURM jobs, vLLM engines, servers, the paper grid's plans), longest
# first (loaded 2026-12-07 durations). The full suite runs on three pytest-xdist workers, one module at a time each
# (`--dist loadfile`); starting these first and leaving the short modules to fill in at the end keeps one worker
# from being the last thing left running while the others idle. test_slurm leads: it makes the session's two
# slice runs (`slice_run`, `slice_rerun`), which test_workflow_e2e's last test reads.
LONG_MODULES = ("test_slurm", "test_serve_e2e", "test_engine_vllm", "test_workflow_e2e", "test_engine_hf",
                "test_workflow_vllm", "test_paper_grid", "test_api_run", "test_passes", "test_job_adapter",
                "test_truncation")


def pytest_configure(config):
    # pytest-xdist hands modules out by their number of tests, most first, unless told not to: that puts the
    # long modules, which have few tests each, last. Keep the order set below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: modules stay whole and in order


def pytest_report_header(config):
    found = "found" if DATA_DIR.is_dir() else "MISSING: the real-data tests " + ("fail" if REQUIRE_DATA else "skip")
    return f"uqroute data folder: {DATA_DIR} ({found}; UQROUTE_DATA_DIR names another)"


def real_data(path: Path = DATA_DIR) -> Path:
    """``path`` (the data folder, or a file in it) for a test that reads the real dataset files. Where it is
    missing the test fails under CI (UQROUTE_REQUIRE_DATA=1) and skips elsewhere, naming the path either way."""
    if not path.exists():
        message = f"dataset files not found at {path} (set UQROUTE_DATA_DIR to the data folder)"
        if REQUIRE_DATA:
            pytest.fail(f"{message}; UQROUTE_REQUIRE_DATA is set, so the real-data tests must not skip",
                        pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data()


def _materialized(name: str) -> Path:
    from filelock import FileLock

    from uqroute.gguf import materialize
    from uqroute.models import model_spec

    # Under pytest-xdist each worker asks for the models at once: one converts, the other waits for its copy.
    # The lock lives outside the cache, which holds models only.
    cache_key = hashlib.sha1(str(MODEL_CACHE.resolve()).encode()).hexdigest()[:12]
    with FileLock(Path(tempfile.gettempdir()) / f"uqroute-models-{cache_key}-{name}.lock"):
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
    # threads slow a small model's prefill by an order of magnitude. float32, pinned: the tests on this
    # engine check what holds in float32 only (tokens independent of the batch, logprobs within 1e-4 of a
    # plain forward pass); tests of what `auto` runs build their own engine or run the workflow.
    engine = make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=smollm2_dir, dtype="float32", threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def model_dirs(smollm2_dir, gemma3_dir) -> dict[str, Path]:
    from workflow_runs import LLM, SLM

    return {SLM: smollm2_dir, LLM: gemma3_dir}


def _shared_temp(tmp_path_factory, worker_id) -> Path:
    """The test run's temporary folder that every pytest-xdist worker sees."""
    return tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope="session")
def slice_run(tmp_path_factory, worker_id, data_dir, model_dirs) -> Path:
    """The tiny slice's tables made by the local executor; the determinism, granularity and SLURM tests compare
    to it. Made once per test run: under pytest-xdist the first worker to ask runs it, the others wait for it."""
    from filelock import FileLock

    from workflow_runs import run_workflow, slice_config

    shared = _shared_temp(tmp_path_factory, worker_id)
    workdir, done = shared / "slice-local", shared / "slice-local.done"
    with FileLock(shared / "slice-local.lock"):
        if not done.exists():
            workdir.mkdir(exist_ok=True)
            result = run_workflow(workdir, data_dir, model_dirs, "tables", config=slice_config(data_dir))
            assert result.returncode == 0, result.stderr[-6000:]
            done.touch()
    return workdir


@dataclass(frozen=True)
class SliceRerun:
    """The tiny slice made a second time from scratch: its workdir, what its Snakemake printed, and whether its
    jobs ran on SLURM."""

    workdir: Path
    log: str
    on_slurm: bool


@pytest.fixture(scope="session")
def slice_rerun(tmp_path_factory, worker_id, data_dir, model_dirs, slice_run) -> SliceRerun:
    """The tiny slice run again from scratch, after ``slice_run``: through SLURM jobs where a cluster answers
    (tests/test_slurm.py checks it gives the local run's tables), by the local executor otherwise. The determinism
    test compares it with ``slice_run`` either way, so the suite runs the slice twice, not three times. Made once
    per test run, shared by the workers as ``slice_run`` is; a failed run fails every test that asks for it."""
    from filelock import FileLock

    from workflow_runs import SLURM_JOB_PATH, run_workflow, slice_config, slurm_answers, slurm_options

    shared = _shared_temp(tmp_path_factory, worker_id)
    workdir, log_file = shared / "slice-again", shared / "slice-again.log"
    with FileLock(shared / "slice-again.lock"):
        if not log_file.exists():
            workdir.mkdir(exist_ok=True)
            on_slurm = slurm_answers() is None
            options, env = ((slurm_options(shared / "slice-again-profile"), {"PATH": SLURM_JOB_PATH}) if on_slurm
                            else ([], None))
            result = run_workflow(workdir, data_dir, model_dirs, *options, "tables", config=slice_config(data_dir),
                                  env=env)
            log = result.stdout + result.stderr
            assert result.returncode == 0, log[-6000:]
            log_file.write_text(("slurm" if on_slurm else "local") + "\n" + log)
    executor, log = log_file.read_text().split("\n", 1)
    return SliceRerun(workdir, log, executor == "slurm")
