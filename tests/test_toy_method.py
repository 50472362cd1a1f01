"""A UQ method of another package takes part through its declaration only: two toy methods, registered by a
module the config names in ``plugins``, are planned, run by the workflow's own rules and served by the router.

- ``toy_brevity`` reads two passes (greedy and ptrue), so the router must build the follow-up pass the method
  declares, not one it knows by the method's name;
- ``toy_centroid`` is a probe learned on other datasets (nearest class centroid of the answered conversation's
  hidden states): the uq rule, the hold-out calibration pool (``holdout_uq``) and the release for the router
  (``release_probe``) reach it through its declaration, and the router loads its released file with the
  method's own ``load``.

The DAG runs on a copy of the shared tiny-slice run (SmolLM2 answers, Gemma as the LLM), so only the toy
methods' jobs and the tables they feed run; the slice has two datasets, too few for a leak-free hold-out pool,
so ``holdout_uq`` is planned on a third and run as the job it is.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
import textwrap

import pytest
import yaml

from uqroute.io import read_parquet
from uqroute.paths import results_path
from workflow_runs import count_rules, plan, run_workflow, slice_config

pytestmark = pytest.mark.slow  # a DAG run on the shared slice, and the router loads SmolLM2

SLM, LLM = "smollm2-135m", "gemma3-270m"
TOYS = ("toy_brevity", "toy_centroid")

# The other package: its methods, and the registry lines that add them.
PLUGIN = '''
import json
from pathlib import Path

import numpy as np

from uqroute.uq.registry import MethodSpec, register_method
from uqroute.uq.tables import method_frame, question_ids, rows_by_id


def brevity_times_p_true(*, questions, greedy, ptrue):
    """p(True), discounted by the length of the answer in words."""
    ids = question_ids(questions)
    answers = rows_by_id(greedy, ids, "greedy", ["response", "prediction", "correct"])
    p_true = np.asarray(rows_by_id(ptrue, ids, "ptrue", ["p_true"])["p_true"], dtype=float)
    words = np.array([len(str(text).split()) for text in answers["response"]], dtype=float)
    return method_frame(ids, p_true / (1.0 + words), answers["prediction"], answers["correct"])


def _centroids(training):
    vectors, right = [], []
    for hidden, greedy in training.values():
        correct = dict(zip(greedy["id"], greedy["correct"]))
        vectors += [np.asarray(v, dtype=float) for v in hidden["vector"]]
        right += [bool(correct[i]) for i in hidden["id"]]
    vectors, right = np.array(vectors), np.array(right)
    # A class the training answers lack (a few questions of a tiny slice) sits at the mean of all of them.
    centre = lambda chosen: (vectors[chosen] if chosen.any() else vectors).mean(axis=0).tolist()
    return {"right": centre(right), "wrong": centre(~right)}


def _score(centroids, vectors):
    vectors = np.asarray(vectors, dtype=float)
    near = {name: np.linalg.norm(vectors - np.asarray(c), axis=1) for name, c in centroids.items()}
    # relative distance in [-1, 1], so the logistic never saturates to exactly 0 or 1
    closer = (near["wrong"] - near["right"]) / (near["wrong"] + near["right"] + 1e-12)
    return 1.0 / (1.0 + np.exp(-4.0 * closer))


def centroid_probe(*, questions, greedy, hidden, training, probe, dataset):
    """Closer to the centroid of right answers than to that of wrong ones, learned on the other datasets."""
    ids = question_ids(questions)
    answers = rows_by_id(greedy, ids, "greedy", ["prediction", "correct"])
    vectors = rows_by_id(hidden, ids, "hidden", ["vector"])["vector"]
    return method_frame(ids, _score(_centroids(training), list(vectors)), answers["prediction"], answers["correct"])


def release_centroids(*, training, probe, path, slm, method, layer):
    record = {"slm": slm, "method": method, "layer": layer, "datasets": list(training), **_centroids(training)}
    Path(path).write_text(json.dumps(record))


def load_centroids(path):
    record = json.loads(Path(path).read_text())
    return (lambda vectors: _score({k: record[k] for k in ("right", "wrong")}, vectors)), record


register_method(MethodSpec("toy_brevity", "Toy: brevity x p(True)", ("greedy", "ptrue"), brevity_times_p_true))
register_method(MethodSpec("toy_centroid", "Toy: hidden-state centroids", ("greedy",), centroid_probe,
                           hidden="hidden", needs_train="other_datasets", release=release_centroids,
                           load=load_centroids))
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The other package's module, importable here (the router) and in the workflow's processes (PYTHONPATH)."""
    from uqroute.uq.registry import METHODS

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "toy_uq_plugin.py").write_text(textwrap.dedent(PLUGIN))
    sys.path.insert(0, str(folder))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), old]))
    yield "toy_uq_plugin"
    sys.path.remove(str(folder))
    os.environ.pop("PYTHONPATH") if old is None else os.environ.update(PYTHONPATH=old)
    for name in TOYS:
        METHODS.pop(name, None)
    sys.modules.pop("toy_uq_plugin", None)


def _outputs_by_rule(log: str) -> dict[str, list[str]]:
    """rule -> the output files of its jobs, as a Snakemake run's log lists them."""
    ran, rule = {}, None
    for line in log.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("output:"):
            ran.setdefault(rule, []).extend(part.strip() for part in line.split(":", 1)[1].split(","))
            rule = None
    return ran


def toy_config(data_dir, plugin: str, datasets=None) -> dict:
    config = slice_config(data_dir)
    config["datasets"] = datasets or config["datasets"]
    config["plugins"] = [plugin]
    config["methods"] = [*config["methods"], *TOYS]
    config["calibration"]["methods"] = list(TOYS)
    return config


def test_a_method_of_another_package_is_planned_run_and_served(plugin, slice_run, data_dir, model_dirs,
                                                                 smollm2_dir, tmp_path):
    # Planned: with three datasets every rule of a probe learned on other datasets is in the DAG.
    planning = tmp_path / "plan"
    planning.mkdir()
    (planning / "config").mkdir()
    three = toy_config(data_dir, plugin, ["multiarith", "commonsenseqa", "boolq"])
    (planning / "config" / "config.yaml").write_text(yaml.safe_dump(three))
    jobs = plan(planning, "tables", configfiles=[planning / "config" / "config.yaml"])
    rules = count_rules(jobs)
    assert rules["holdout_uq"] == rules["release_probe"] * 3 == 3  # toy_centroid, one pool per hold-out
    uq_jobs = [job for job in jobs if job["rule"] == "uq"]
    assert {job["wildcards"]["method"] for job in uq_jobs} >= set(TOYS)

    # Run: the tiny slice's tables, then the toy methods' jobs only.
    workdir = tmp_path / "run"
    shutil.copytree(slice_run, workdir, symlinks=True)
    config = toy_config(data_dir, plugin)
    results = workdir / "results"
    targets = [results_path("results", "uq", slm=SLM, dataset=d, method=m) for d in config["datasets"] for m in TOYS]
    releases = {method: results_path("results", "release", slm=SLM, method=method) for method in TOYS}
    probe_file = results_path("results", "release_probe", slm=SLM, method="toy_centroid")
    curve = results_path("results", "routing", slm=SLM, llm=LLM, dataset="boolq", method="toy_centroid")
    done = run_workflow(workdir, data_dir, model_dirs, *targets, *releases.values(), probe_file, curve,
                        results_path("results", "alignment"), config=config)
    assert done.returncode == 0, done.stderr[-6000:]
    # No model pass the slice had made runs again: the model jobs that ran (the train splits a probe learned on
    # other datasets reads, which the slice's own methods did not need) made only files the slice lacked.
    ran = _outputs_by_rule(done.stderr)
    assert ran, done.stderr[-3000:]
    model_rules = {"generate", "generate_replies", "generate_cell", "generate_train_cell", "hidden_states", "grade"}
    remade = [out for rule, outs in ran.items() if rule in model_rules for out in outs if (slice_run / out).exists()]
    assert not remade, remade
    for dataset in config["datasets"]:
        for method in TOYS:
            scored = read_parquet(results / "uq" / SLM / dataset / f"{method}.parquet")
            assert len(scored) == 6 and scored["valid"].all(), (dataset, method)
            assert ((scored["confidence"] > 0) & (scored["confidence"] < 1)).all()
    alignment = read_parquet(results / "metrics" / "alignment.parquet")
    assert set(TOYS) <= set(alignment["method"])
    assert read_parquet(workdir / curve)["ratio"].iloc[-1] == 1.0

    # The hold-out pool job, as its rule hands it the toy probe's tables (here on the slice's two datasets,
    # each scored by a probe learned on the other).
    from uqroute.jobs import uq as uq_jobs

    pool = str(tmp_path / "pool.parquet")
    cells = [dict(model=SLM, dataset=d, split=s) for d in config["datasets"] for s in ("test",)]
    uq_jobs.holdout_uq(method="toy_centroid", holdout="multiarith",
                       questions=[str(workdir / results_path("results", "data", dataset=c["dataset"], split="test"))
                                  for c in cells],
                       greedy=[str(workdir / results_path("results", "gen", pass_name="greedy", **c)) for c in cells],
                       hidden=[str(workdir / results_path("results", "hidden", **c)) for c in cells],
                       train_hidden=[str(workdir / results_path("results", "hidden", model=SLM, dataset=d, split="train"))
                                     for d in config["datasets"]],
                       train_greedy=[str(workdir / results_path("results", "gen", model=SLM, dataset=d, split="train",
                                                                pass_name="greedy")) for d in config["datasets"]],
                       output=pool, probe={}, max_questions=6, subset_seed=50)
    assert sorted(set(read_parquet(pool)["dataset"])) == sorted(config["datasets"])

    # Served: the router reads both declarations (the toy probe's released file through its own load).
    from uqroute.serve.config import RouterConfig, served_methods
    from uqroute.serve.router import Router

    assert set(TOYS) <= set(served_methods())
    for method, extra in (("toy_brevity", {}), ("toy_centroid", {"probe": str(workdir / probe_file)})):
        config = RouterConfig(**{
            "calibration": str(workdir / releases[method]), "method": method, "ratio": 0.5, **extra,
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
        assert math.isfinite(answer.confidence) and 0 < answer.confidence < 1, method
        if method == "toy_brevity" and not answer.routed:
            assert answer.confidence <= 1 / (1 + len(answer.text.split()))  # p(True) discounted by length

