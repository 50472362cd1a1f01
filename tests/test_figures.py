"""Every figure family renders to a non-empty PDF and PNG from small synthetic analysis tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uqroute import figures
from uqroute.analysis import (
    alignment_metrics,
    build_calibration_set,
    generalization,
    pool_confidences,
    relative_accuracy,
    routing_curve,
)

SLMS = ("smollm2-135m", "tiny-slm-2")
LLMS = ("gemma3-270m",)
DATASETS = ("gsm8k", "piqa", "boolq")
METHODS = ("perplexity", "verbal_2s", "ood_probe")
# How well each method's confidence separates right from wrong answers (0 = not at all).
SEPARATION = {"perplexity": 1.5, "verbal_2s": 0.2, "ood_probe": 2.5}


def synthetic_uq(rng) -> dict:
    """(slm, dataset, method) -> uq table; one SLM correctness per (slm, dataset), shared by methods."""
    tables = {}
    for slm in SLMS:
        for dataset in DATASETS:
            n = 150
            correct = rng.random(n) < rng.uniform(0.3, 0.7)
            ids = [f"{dataset}-{i}" for i in range(n)]
            for method in METHODS:
                logit = SEPARATION[method] * (correct - 0.5) * 2 + rng.normal(0, 1, n)
                conf = 1 / (1 + np.exp(-logit))
                if method == "verbal_2s":  # verbalized confidences come in steps of 10 %
                    conf = np.round(conf * 10) / 10
                tables[slm, dataset, method] = pd.DataFrame({
                    "id": ids, "confidence": conf, "prediction": "A", "correct": correct, "valid": True,
                })
    return tables


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(11)
    uq = synthetic_uq(rng)
    llm_correct = {(llm, d): rng.random(150) < 0.8 for llm in LLMS for d in DATASETS}
    alignment, curves, rel, gen, pooled = [], [], [], [], []
    for (slm, dataset, method), table in uq.items():
        alignment.append({"slm": slm, "dataset": dataset, "method": method, **alignment_metrics(table)})
        pooled.append(table.assign(slm=slm, dataset=dataset, method=method))
        for llm in LLMS:
            keys = {"slm": slm, "llm": llm, "dataset": dataset, "method": method}
            llm_ok = llm_correct[llm, dataset]
            curves.append(routing_curve(table["confidence"], table["correct"], llm_ok).assign(**keys))
            rel.append(relative_accuracy(table["confidence"], table["correct"], llm_ok).assign(**keys))
            others = {d: uq[slm, d, method] for d in DATASETS}
            calibration = build_calibration_set(pool_confidences(others, exclude=[dataset]), n_bins=10, fraction=0.3)
            gen.append(generalization(calibration, table, llm_ok).assign(**keys))
    return {
        "alignment": pd.DataFrame(alignment), "curves": pd.concat(curves, ignore_index=True),
        "relative": pd.concat(rel, ignore_index=True), "generalization": pd.concat(gen, ignore_index=True),
        "pooled": pd.concat(pooled, ignore_index=True),
    }


def assert_written(paths, tmp_path):
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    for path in paths:
        assert path.stat().st_size > 5000, path
    assert paths[0].read_bytes()[:5] == b"%PDF-"
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob("*.tmp")), "a temp file was left behind"


def test_auroc_heatmaps(tables, tmp_path):
    assert_written(figures.plot_auroc_heatmaps(tables["alignment"], tmp_path / "fig" / "auroc"), tmp_path)


def test_routing_curves(tables, tmp_path):
    curves = tables["curves"][tables["curves"]["dataset"].isin(["gsm8k", "piqa"])]
    assert_written(figures.plot_routing_curves(curves, tmp_path / "routing"), tmp_path)


def test_relative_accuracy(tables, tmp_path):
    assert_written(figures.plot_relative_accuracy(tables["relative"], tmp_path / "relative"), tmp_path)


def test_confidence_distributions(tables, tmp_path):
    assert_written(figures.plot_confidence_distributions(tables["pooled"], tmp_path / "distributions"), tmp_path)


def test_generalization(tables, tmp_path):
    gen = tables["generalization"]
    gen = gen[gen["method"].isin(["perplexity", "ood_probe"]) & gen["dataset"].isin(["gsm8k", "boolq"])]
    assert_written(figures.plot_generalization(gen, tables["curves"], tmp_path / "generalization"), tmp_path)
    # without routing curves the ground truth comes from the table's own column
    assert_written(figures.plot_generalization(gen, None, tmp_path / "generalization_own"), tmp_path)


def test_ratio_fidelity(tables, tmp_path):
    assert_written(figures.plot_ratio_fidelity(tables["generalization"], tmp_path / "fidelity"), tmp_path)


def test_empty_table_is_an_error_naming_the_figure(tmp_path):
    with pytest.raises(ValueError, match="AUROC heatmaps"):
        figures.plot_auroc_heatmaps(pd.DataFrame(columns=["slm", "dataset", "method", "auroc"]), tmp_path / "x")
    assert not list(tmp_path.iterdir())
