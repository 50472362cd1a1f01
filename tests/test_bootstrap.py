"""The bootstrap behind every interval: its weighted statistics against scikit-learn's and the point estimates,
its coverage in a simulation with a known AUROC, and its paired comparison of two methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, roc_auc_score

from uqroute.analysis.alignment import (alignment_metrics, alignment_tables, area_under_risk_coverage,
                                        expected_calibration_error, prediction_rejection_ratio)
from uqroute.analysis.bootstrap import (BootstrapSettings, cell_seed, interval, mean_statistics, question_weights,
                                        ranking_statistics, resample_weights)


def cell(n: int, separation: float, rng, *, accuracy: float = 0.4, decimals: int | None = None):
    """A cell whose confidence is binormal: N(separation, 1) for right answers, N(0, 1) for wrong ones, so its
    population AUROC is Phi(separation / sqrt 2)."""
    correct = rng.random(n) < accuracy
    confidence = rng.normal(separation * correct, 1.0)
    if decimals is not None:
        confidence = np.round(confidence, decimals)  # ties
    return confidence, correct


def uq(confidence, correct, valid=None) -> pd.DataFrame:
    valid = np.ones(len(confidence), bool) if valid is None else valid
    return pd.DataFrame({"id": [f"q{i:04d}" for i in range(len(confidence))],
                         "confidence": np.where(valid, confidence, np.nan), "prediction": "A",
                         "correct": correct, "valid": valid})


def test_resamples_are_multiplicities_of_n_draws_and_reproducible():
    weights = resample_weights(50, 300, seed=7)
    assert weights.shape == (300, 50) and weights.dtype == np.float32
    assert (weights.sum(axis=1) == 50).all()
    assert np.array_equal(weights, resample_weights(50, 300, seed=7))
    assert not np.array_equal(weights, resample_weights(50, 300, seed=8))
    # Each question is drawn once per resample on average.
    assert abs(weights.mean() - 1) < 0.01
    assert cell_seed(50, "smollm2-135m", "boolq") == cell_seed(50, "smollm2-135m", "boolq")
    assert cell_seed(50, "smollm2-135m", "boolq") != cell_seed(50, "smollm2-135m", "piqa")


def test_weighted_statistics_equal_scikit_learns_and_the_resampled_questions():
    rng = np.random.default_rng(0)
    confidence, correct = cell(300, 0.8, rng, decimals=1)
    probability = 1 / (1 + np.exp(-confidence))
    weights = resample_weights(300, 40, seed=1)
    ranking = ranking_statistics(confidence, correct, weights)
    means = mean_statistics(correct, probability, np.arange(300), weights, 15)
    ece, brier = means["ece"], means["brier"]
    for b in range(40):
        w = weights[b]
        assert ranking["auroc"][b] == pytest.approx(roc_auc_score(correct, confidence, sample_weight=w), abs=1e-9)
        assert brier[b] == pytest.approx(brier_score_loss(correct, probability, sample_weight=w), abs=1e-6)
        drawn = np.repeat(np.arange(300), w.astype(int))
        assert ranking["prr"][b] == pytest.approx(prediction_rejection_ratio(confidence[drawn], correct[drawn]),
                                                  abs=1e-5)
        assert ranking["aurc"][b] == pytest.approx(area_under_risk_coverage(confidence[drawn], correct[drawn]),
                                                   abs=1e-5)
        assert ece[b] == pytest.approx(expected_calibration_error(probability[drawn], correct[drawn]), abs=1e-6)
    # Every weight 1: the point estimates.
    ones = np.ones((1, 300), np.float32)
    point = alignment_metrics(uq(confidence, correct))
    assert ranking_statistics(confidence, correct, ones)["auroc"][0] == pytest.approx(point["auroc"], abs=1e-12)


def test_a_resample_with_one_class_has_no_auroc_and_too_few_defined_resamples_no_interval():
    correct = np.zeros(30, bool)
    correct[0] = True
    ranking = ranking_statistics(np.linspace(0, 1, 30), correct, resample_weights(30, 500, seed=3))
    share = np.isfinite(ranking["auroc"]).mean()
    assert 0.55 < share < 0.72  # the one right answer is drawn in 1 - (29/30)^30 of them, about 64 %
    assert np.isfinite(interval(ranking["auroc"], 0.95)[0])  # over those resamples
    # Defined in fewer than half of the resamples: no interval.
    sparse = np.concatenate([np.full(260, np.nan), np.linspace(0.4, 0.8, 240)])
    assert np.isnan(interval(sparse, 0.95)).all()
    assert interval(np.linspace(0, 1, 1001), 0.95) == pytest.approx((0.025, 0.975))


def test_intervals_cover_a_known_auroc_at_about_the_nominal_rate():
    """Binormal cells with a population AUROC of Phi(1 / sqrt 2) = 0.760: the 95 % interval covers it in about
    95 % of 200 simulated cells (percentile intervals run a little narrow at n = 150)."""
    rng = np.random.default_rng(2026)
    truth = norm.cdf(1.0 / np.sqrt(2))
    settings = BootstrapSettings(resamples=400, seed=11)
    cells = [("slm", f"d{i}", "m", uq(*cell(150, 1.0, rng))) for i in range(200)]
    table = alignment_tables(cells, bootstrap=settings)[0]
    covered = ((table["auroc_low"] <= truth) & (truth <= table["auroc_high"])).mean()
    assert 0.90 <= covered <= 0.99, covered
    # The other metrics get intervals around their point estimates, but ECE: resampling adds noise to every
    # bin's gap, so its bootstrap distribution sits above the estimate (a percentile interval reports that).
    for metric in ("accuracy", "prr", "aurc", "brier"):
        inside = (table[f"{metric}_low"] <= table[metric] + 1e-9) & (table[metric] <= table[f"{metric}_high"] + 1e-9)
        assert inside.mean() >= 0.99, metric
    assert (table["ece_low"] < table["ece_high"]).all()


def test_paired_comparison_finds_a_planted_difference_and_none_where_there_is_none():
    rng = np.random.default_rng(5)
    settings = BootstrapSettings(resamples=400, seed=3)

    def compare(separation_a, separation_b, n=300):
        correct = rng.random(n) < 0.4
        a = rng.normal(separation_a * correct, 1.0)
        b = rng.normal(separation_b * correct, 1.0)
        cells = [("s", "d", "a", uq(a, correct)), ("s", "d", "b", uq(b, correct))]
        return alignment_tables(cells, bootstrap=settings)[1].iloc[0]

    planted = [compare(1.2, 0.2) for _ in range(20)]
    assert all(row["better"] == "a" and row["difference_low"] > 0 and row["p_value"] < 0.05 for row in planted)
    assert not any(row["underpowered"] for row in planted)  # 300 questions, ~120 right: enough of each
    null = [compare(0.6, 0.6) for _ in range(100)]
    false_alarms = sum(row["better"] is not None for row in null)
    assert false_alarms <= 12, false_alarms  # nominal 5 of 100


def test_underpowered_cells_are_flagged():
    rng = np.random.default_rng(1)
    big = uq(*cell(400, 1.0, rng))
    small = uq(*cell(16, 1.0, rng))
    table = alignment_tables([("s", "big", "m", big), ("s", "small", "m", small)],
                             bootstrap=BootstrapSettings(resamples=300))[0].set_index("dataset")
    assert not table.loc["big", "underpowered"] and table.loc["small", "underpowered"]
    assert table.loc["small", "auroc_high"] - table.loc["small", "auroc_low"] > 0.2
    assert table.loc["big", "n_valid_correct"] == big["correct"].sum()
    # A comparison inside an underpowered cell says so.
    reversed_ = small.assign(confidence=-small["confidence"])
    pair = alignment_tables([("s", "small", "a", small), ("s", "small", "b", reversed_)],
                            bootstrap=BootstrapSettings(resamples=300))[1]
    assert pair["underpowered"].all()


def test_curve_bands_come_from_the_curves_of_the_resampled_questions():
    """Under one resample, the band's accuracies are those of the routing curve, relative accuracy and
    generalization table of the questions that resample drew (ties and invalid rows as there)."""
    from uqroute.analysis.calibration import generalization
    from uqroute.analysis.routing import _resampled_kept, relative_accuracy, routing_curve, routing_rows

    rng = np.random.default_rng(9)
    confidence, correct = cell(120, 0.8, rng, decimals=1)
    llm = rng.random(120) < 0.7
    valid = rng.random(120) > 0.1
    weights = resample_weights(120, 30, seed=4)
    ratios = np.linspace(0, 1, 11)
    conf, slm, llm_v, kept = routing_rows(confidence, correct, llm, valid, "drop")
    overall = _resampled_kept(conf, slm, llm_v, kept, weights[:, valid], ratios, "overall")
    slm_kept, llm_kept = _resampled_kept(conf, slm, llm_v, kept, weights[:, valid], ratios, "kept")
    calibration = pd.DataFrame({"run": 0, "confidence": np.sort(rng.normal(0.3, 1, 60))})
    table = uq(confidence, correct, valid)
    banded = generalization(calibration, table, llm, ratios, weights=weights, level=0.5)
    for b in (0, 7, 29):
        drawn = np.repeat(np.arange(120), weights[b].astype(int))
        curve = routing_curve(confidence[drawn], correct[drawn], llm[drawn], valid[drawn], ratios)
        assert overall[:, b] == pytest.approx(curve["accuracy"].to_numpy(), abs=1e-6)
        rel = relative_accuracy(confidence[drawn], correct[drawn], llm[drawn], valid[drawn], range(0, 101, 10))
        assert slm_kept[:, b] == pytest.approx(rel["slm_accuracy"].to_numpy(), abs=1e-6, nan_ok=True)
        assert llm_kept[:, b] == pytest.approx(rel["llm_accuracy"].to_numpy(), abs=1e-6, nan_ok=True)
    # The generalization band: the same thresholds met by the resampled questions.
    resampled = [generalization(calibration, table.iloc[np.repeat(np.arange(120), weights[b].astype(int))],
                                llm[np.repeat(np.arange(120), weights[b].astype(int))], ratios)
                 for b in range(30)]
    achieved = np.array([r["achieved_ratio"].to_numpy() for r in resampled])
    assert banded["achieved_ratio_low"].to_numpy() == pytest.approx(np.quantile(achieved, 0.25, axis=0), abs=1e-6)
    assert banded["accuracy_high"].to_numpy() == pytest.approx(
        np.quantile(np.array([r["accuracy"].to_numpy() for r in resampled]), 0.75, axis=0), abs=1e-6)


def test_a_curve_band_uses_the_first_of_the_cells_resamples():
    """Bands on curves draw ``curve_resamples`` resamples: the first of those behind the cell's intervals, so a
    band and an interval of one cell rest on the same draws; and the draws follow the questions, not the row
    order of the table."""
    ids = np.array([f"q{i:03d}" for i in range(40)])
    settings = BootstrapSettings(resamples=300, curve_resamples=50, seed=50)
    full = question_weights(ids, settings, "slm", "piqa")
    assert np.array_equal(question_weights(ids, settings.for_curves, "slm", "piqa"), full[:50])
    shuffled = np.random.default_rng(0).permutation(40)
    assert np.array_equal(question_weights(ids[shuffled], settings, "slm", "piqa"), full[:, shuffled])


def test_a_subset_of_the_questions_is_scored_as_if_alone():
    """The valid rows of a cell are scored in place (``columns`` / ``scored``) as if their weights were copied
    out, and a resample that draws them more often than there are of them still counts every draw."""
    rng = np.random.default_rng(4)
    confidence, correct = cell(200, 0.8, rng, decimals=2)
    probability = 1 / (1 + np.exp(-confidence))
    scored = np.flatnonzero(rng.random(200) < 0.3)
    weights = resample_weights(200, 50, seed=2)
    alone = weights[:, scored]
    assert (alone.sum(axis=1) > len(scored)).any()  # more draws than rows: the harmonic table grows
    in_place = ranking_statistics(confidence[scored], correct[scored], weights, scored)
    copied = ranking_statistics(confidence[scored], correct[scored], alone)
    for metric in ("auroc", "prr", "aurc"):
        assert in_place[metric] == pytest.approx(copied[metric], abs=1e-12, nan_ok=True)
    means = mean_statistics(correct, probability[scored], scored, weights, 15)
    b = 3
    drawn = np.repeat(scored, weights[b, scored].astype(int))
    assert means["brier"][b] == pytest.approx(brier_score_loss(correct[drawn], probability[drawn]), abs=1e-6)
    assert means["ece"][b] == pytest.approx(expected_calibration_error(probability[drawn], correct[drawn]), abs=1e-6)
    assert means["accuracy"][b] == pytest.approx(np.average(correct, weights=weights[b]), abs=1e-6)
    drawn_pairs = ranking_statistics(confidence[drawn], correct[drawn], np.ones((1, len(drawn)), np.float32))
    assert in_place["aurc"][b] == pytest.approx(drawn_pairs["aurc"][0], abs=1e-5)
