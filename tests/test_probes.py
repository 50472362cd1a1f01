"""Hidden-state probes: deterministic, able to learn, and never scoring an item with a probe that saw it.

Synthetic features stand in for hidden states: these tests are of the learner, not of a model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from uqroute.uq import OUTPUT_COLUMNS
from uqroute.uq.probes import (
    OOD_LR,
    ProbeSettings,
    crossfit_assignment,
    crossfit_probe,
    ood_probe,
    predict_correct_proba,
    train_probe,
    trained_probe,
)

FAST = ProbeSettings(hidden_sizes=(32, 16, 8), epochs=20, lr=5e-3, batch_size=32, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separable(n, d=16, seed=0, shift=0.0):
    """Labels = sign of a fixed direction; features offset by ``shift`` (a different 'dataset')."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32) + shift
    w = np.linspace(1.0, -1.0, d)
    y = (X - shift) @ w > 0
    return X, y


def tables(X, y, prefix):
    ids = [f"{prefix}-{i}" for i in range(len(X))]
    hidden = pd.DataFrame({"id": ids, "layer": -8, "vector": [row.tolist() for row in X]})
    greedy = pd.DataFrame({"id": ids, "prediction": ["A"] * len(X), "correct": y})
    return hidden, greedy


def test_settings_follow_the_paper_and_the_config():
    default = ProbeSettings()
    assert default.hidden_sizes == (256, 128, 64) and default.epochs == 20 and default.lr == 5e-4
    assert default.batch_size == 32 and default.weight_decay == 0
    config = {"hidden_sizes": [256, 128, 64], "epochs": 20, "lr": 0.0005, "ood_lr": 0.0001, "batch_size": 32,
              "seed": 50, "crossfit_folds": 5}
    assert ProbeSettings.from_config(config, ood=False).lr == 5e-4
    assert ProbeSettings.from_config(config, ood=True).lr == 1e-4 == OOD_LR
    with pytest.raises(ValueError, match="lrr"):
        ProbeSettings.from_config({"lrr": 1.0})


def test_probe_has_four_linear_layers_with_leaky_relu():
    X, y = separable(40)
    model = train_probe(X, y, ProbeSettings(epochs=1))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(16, 256), (256, 128), (128, 64), (64, 1)]
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in model.modules()) == 3


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    X, y = separable(100)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = train_probe(X, y, FAST)
    assert torch.equal(torch.rand(1), before)
    second = train_probe(X, y, FAST)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(predict_correct_proba(first, X), predict_correct_proba(second, X))
    other = train_probe(X, y, replace(FAST, seed=4))
    assert not np.array_equal(predict_correct_proba(first, X), predict_correct_proba(other, X))


def test_probe_learns_a_separable_problem():
    X_train, y_train = separable(400, seed=1)
    X_test, y_test = separable(200, seed=2)
    probs = predict_correct_proba(train_probe(X_train, y_train, FAST), X_test)
    assert probs.shape == (200,) and ((probs >= 0) & (probs <= 1)).all()
    assert roc_auc_score(y_test, probs) > 0.9


def test_trained_probe_table_follows_the_test_rows_and_standardizes_features():
    # Features at a large offset and scale: without standardization with the training
    # statistics the probe would not learn in 20 epochs.
    X_train, y_train = separable(300, seed=1)
    X_test, y_test = separable(100, seed=2)
    train = tables(X_train * 50 + 1000, y_train, "train")
    test_hidden, test_greedy = tables(X_test * 50 + 1000, y_test, "test")
    test_hidden = test_hidden.iloc[::-1].reset_index(drop=True)
    out = trained_probe(test_hidden, test_greedy, *train, FAST, dataset="toy")
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert out["id"].tolist() == test_greedy["id"].tolist()
    assert out["correct"].tolist() == y_test.tolist()
    assert out["valid"].all()
    assert roc_auc_score(y_test, out["confidence"]) > 0.9


def test_rows_without_a_finite_hidden_state_are_invalid_not_dropped():
    X, y = separable(60)
    train = tables(X, y, "train")
    test_hidden, test_greedy = tables(X[:5], y[:5], "test")
    test_hidden.at[2, "vector"] = [float("nan")] * X.shape[1]
    out = trained_probe(test_hidden, test_greedy, *train, FAST)
    assert len(out) == 5
    assert out["valid"].tolist() == [True, True, False, True, True]


def test_too_few_training_items_is_an_error_naming_the_dataset():
    X, y = separable(10)
    with pytest.raises(ValueError, match="boolq"):
        trained_probe(*tables(X, y, "test"), *tables(X[:1], y[:1], "train"), FAST, dataset="boolq")


def test_one_class_labels_still_train_and_give_a_near_constant_confidence():
    X, _ = separable(64)
    probs = predict_correct_proba(train_probe(X, np.ones(64, dtype=bool), FAST), X)
    assert (probs > 0.5).all()
    assert probs.std() < 0.05


def test_crossfit_scores_each_item_once_with_a_probe_trained_on_the_other_folds():
    X, y = separable(60, seed=5)
    hidden, greedy = tables(X, y, "boolq")
    out = crossfit_probe(hidden, greedy, FAST, folds=3, dataset="boolq")
    assert out["id"].tolist() == greedy["id"].tolist() and out["valid"].all()

    folds = crossfit_assignment(y, 3, FAST.seed)
    assert sorted(np.unique(folds)) == [0, 1, 2]
    for fold in range(3):
        held_out = folds == fold
        # Stratified: each fold holds about a third of each class.
        assert abs(y[held_out].sum() - y.sum() / 3) <= 1
        expected = predict_correct_proba(train_probe(X[~held_out], y[~held_out], FAST), X[held_out])
        np.testing.assert_allclose(out["confidence"].to_numpy()[held_out], expected)


def test_crossfit_does_not_leak_labels():
    # Random labels are memorized in-sample but unpredictable out of fold.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 16)).astype(np.float32)
    y = rng.random(80) < 0.5
    settings = ProbeSettings(hidden_sizes=(64, 64, 64), epochs=60, lr=5e-3, seed=1)
    in_sample = roc_auc_score(y, predict_correct_proba(train_probe(X, y, settings), X))
    out = crossfit_probe(*tables(X, y, "noise"), settings, folds=5)
    assert in_sample > 0.95
    assert roc_auc_score(y, out["confidence"]) < 0.75


def test_ood_probe_trains_on_the_other_datasets_only():
    sources = {name: tables(*separable(120, seed=k, shift=k * 0.5), name) for k, name in enumerate(("a", "b", "c"))}
    # The target's own train split carries inverted labels: if it were used, the probe would flip.
    X_t, y_t = separable(120, seed=9)
    sources["target"] = tables(X_t, ~y_t, "target-train")
    test = tables(*separable(80, seed=10), "target-test")
    settings = replace(FAST, lr=2e-3)

    out = ood_probe(*test, sources, settings, dataset="target")
    others_only = ood_probe(*test, [sources["a"], sources["b"], sources["c"]], settings, dataset="target")
    np.testing.assert_allclose(out["confidence"], others_only["confidence"])
    assert roc_auc_score(test[1]["correct"], out["confidence"]) > 0.9

    with pytest.raises(ValueError, match="target"):
        ood_probe(*test, {"target": sources["target"]}, settings, dataset="target")


def test_probes_read_hidden_tables_from_parquet(tmp_path):
    import pyarrow as pa

    from uqroute.io import read_parquet, write_parquet

    schema = pa.schema([("id", pa.string()), ("layer", pa.int64()), ("vector", pa.list_(pa.float32()))])
    X, y = separable(40)
    hidden, greedy = tables(X, y, "q")
    hidden = read_parquet(write_parquet(hidden, tmp_path / "hidden.parquet", schema=schema))
    greedy = read_parquet(write_parquet(greedy, tmp_path / "greedy.parquet"))
    out = crossfit_probe(hidden, greedy, FAST, folds=2)
    assert out["valid"].all() and len(out) == 40


def test_the_registry_dispatches_the_probes_like_every_other_method():
    """score_method scores the two probes from their registry entries: the same rows as calling them directly."""
    from uqroute.uq import score_method

    probe = {"hidden_sizes": [32, 16, 8], "epochs": 20, "lr": 5e-3, "ood_lr": 5e-3, "batch_size": 32, "seed": 3,
             "crossfit_folds": 3}
    test_hidden, test_greedy = tables(*separable(60, seed=1), "test")
    train = {name: tables(*separable(120, seed=seed), name) for seed, name in ((2, "piqa"), (3, "boolq"))}
    questions = test_greedy[["id"]]
    direct = trained_probe(test_hidden, test_greedy, *train["piqa"], ProbeSettings.from_config(probe, ood=False),
                           dataset="piqa", questions=questions)
    via_registry = score_method("trained_probe", {"greedy": test_greedy}, questions, hidden=test_hidden,
                                training={"piqa": train["piqa"]}, probe=probe, dataset="piqa")
    pd.testing.assert_frame_equal(via_registry, direct)
    crossfit = score_method("trained_probe", {"greedy": test_greedy}, questions, hidden=test_hidden, training={},
                            probe=probe, dataset="piqa")
    pd.testing.assert_frame_equal(crossfit, crossfit_probe(test_hidden, test_greedy,
                                                           ProbeSettings.from_config(probe, ood=False), folds=3,
                                                           dataset="piqa", questions=questions))
    ood = score_method("ood_probe", {"greedy": test_greedy}, questions, hidden=test_hidden, training=train,
                       probe=probe, dataset="arc_easy")
    pd.testing.assert_frame_equal(ood, ood_probe(test_hidden, test_greedy, train,
                                                 ProbeSettings.from_config(probe, ood=True), dataset="arc_easy",
                                                 questions=questions))
    with pytest.raises(ValueError, match="trained probe of piqa: train splits of \\['boolq', 'piqa'\\]"):
        score_method("trained_probe", {"greedy": test_greedy}, questions, hidden=test_hidden, training=train,
                     probe=probe, dataset="piqa")
    with pytest.raises(ValueError, match="is a probe: it needs hidden, probe and dataset"):
        score_method("ood_probe", {"greedy": test_greedy}, questions)
