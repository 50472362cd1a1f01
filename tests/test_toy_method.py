"""Adding a UQ method is one module plus one registry line (uqroute.uq.registry): a toy method, registered from
here, runs through the uq job, the analysis jobs and the router with no other edit.

The toy method reads two passes (greedy and ptrue), so the router must build the follow-up pass the method
declares, not one it knows by the method's name. The stages run as their jobs do, in this process, on the real
pass tables of the shared tiny-slice run (SmolLM2 answers, Gemma as the LLM); the router runs SmolLM2 in
process. A Snakemake run would read the same registry, from its METHODS line rather than a registration.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest

from uqroute.io import read_parquet
from uqroute.jobs import analysis as analysis_jobs
from uqroute.jobs import uq as uq_jobs
from uqroute.paths import results_path
from uqroute.uq.registry import METHODS, MethodSpec, register_method
from uqroute.uq.tables import method_frame, question_ids, rows_by_id

pytestmark = pytest.mark.slow  # the shared slice run, and the router loads SmolLM2

TOY = "toy_brevity"
SLM, LLM = "smollm2-135m", "gemma3-270m"


def brevity_times_p_true(*, questions: pd.DataFrame, greedy: pd.DataFrame, ptrue: pd.DataFrame) -> pd.DataFrame:
    """The toy method's module: p(True), discounted by the length of the answer in words."""
    ids = question_ids(questions)
    answers = rows_by_id(greedy, ids, "greedy", ["response", "prediction", "correct"])
    p_true = pd.to_numeric(rows_by_id(ptrue, ids, "ptrue", ["p_true"])["p_true"], errors="coerce").to_numpy(float)
    words = np.array([len(str(text).split()) for text in answers["response"]], dtype=float)
    return method_frame(ids, p_true / (1.0 + words), answers["prediction"], answers["correct"])


@pytest.fixture(scope="module")
def toy_method():
    # The registry line a new module would add to METHODS.
    register_method(MethodSpec(TOY, "Toy: brevity x p(True)", ("greedy", "ptrue"), brevity_times_p_true))
    yield TOY
    METHODS.pop(TOY)


def test_a_registered_method_runs_through_uq_analysis_and_the_router(toy_method, slice_run, smollm2_dir, tmp_path,
                                                                     monkeypatch):
    results = str(slice_run / "results")
    out = str(tmp_path / "results")
    uq_paths = []
    for dataset in ("commonsenseqa", "boolq"):
        cell = {"model": SLM, "dataset": dataset, "split": "test"}
        uq_path = results_path(out, "uq", slm=SLM, dataset=dataset, method=TOY)
        # The uq job, with the arguments its rule hands it (uqroute.jobs.run_job): the method's passes by name.
        uq_jobs.uq_score(method=TOY, dataset=dataset, questions=results_path(results, "data", dataset=dataset,
                                                                             split="test"),
                         greedy=results_path(results, "gen", pass_name="greedy", **cell),
                         ptrue=results_path(results, "gen", pass_name="ptrue", **cell),
                         output=uq_path, probe={}, max_questions=6, subset_seed=50)
        scored = read_parquet(uq_path)
        assert len(scored) == 6 and scored["valid"].all()
        assert (scored["confidence"] > 0).all() and (scored["confidence"] < 1).all()
        uq_paths.append(uq_path)

    # The analysis: alignment, a routing curve and calibration data, by the jobs the rules run.
    alignment = str(tmp_path / "alignment.parquet")
    analysis_jobs.alignment(uq=uq_paths, ece_bins=5, output=alignment)
    table = read_parquet(alignment)
    assert set(table["method"]) == {TOY} and len(table) == 2 and (table["n_valid"] == 6).all()
    curve = results_path(out, "routing", slm=SLM, llm=LLM, dataset="boolq", method=TOY)
    analysis_jobs.routing_curve(uq=uq_paths[1], llm=results_path(results, "gen", model=LLM, dataset="boolq",
                                                                 split="test", pass_name="greedy"),
                                step=0.25, output=curve)
    assert read_parquet(curve)["ratio"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    release = results_path(out, "release", slm=SLM, method=TOY)
    analysis_jobs.calibration_set(uq=uq_paths, n_bins=4, fraction=0.5, seeds=[50], output=release)

    # The router: the config accepts the method, and each request gets both declared passes.
    from uqroute.serve.config import RouterConfig, served_methods
    from uqroute.serve.router import Router

    assert TOY in served_methods()
    config = RouterConfig(**{
        "calibration": release, "method": TOY, "ratio": 0.5,
        "slm": {"model": SLM, "model_dir": str(smollm2_dir),
                "engine_options": {"device": "cpu", "dtype": "float32", "batch_size": 4, "threads": 1}},
        # No LLM runs here: a routed question falls back to the SLM's answer.
        "llm": {"model": LLM, "base_url": "http://127.0.0.1:9/v1", "max_retries": 0, "timeout": 2.0,
                "on_failure": "fallback"},
    })
    router = Router.from_config(config)
    try:
        answer = asyncio.run(router.answer([{"role": "user", "content": "Is the sky blue on a clear day?"}],
                                           task_type="tf"))
    finally:
        router.close()
    words = len(answer.text.split()) if not answer.routed else None
    assert math.isfinite(answer.confidence) and 0 < answer.confidence < 1
    if words is not None:
        assert answer.confidence <= 1 / (1 + words)  # a p(True) in (0, 1], discounted by the answer's length
