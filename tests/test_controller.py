"""The label-free routed-share controller (uqroute.analysis.controller): it holds the target share where the static
calibration threshold misses it, in bounded steps, on any method's scale; and its replay table on a held-out set."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import yaml

from uqroute.analysis.calibration import thresholds_for_ratios
from uqroute.analysis.controller import (SHARE_CONTROL_COLUMNS, CalibrationScale, ControllerSettings, ReplaySettings,
                                         ShareController, replay, replay_streams, replay_table)
from uqroute.io import load_schema
from workflow_runs import EMBEDDED_CONFIG

RATIOS = (0.2, 0.5, 0.8)
# Where the controller's share must end after 600 requests of shifted traffic, and where the static one is.
TOLERANCE = 0.02


def shifted_stream(seed: int = 0, n: int = 600, shift: float = 0.8):
    """Calibration confidences ~ N(0, 1) and live ones shifted up by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, 300), rng.normal(shift, 1, n)


@pytest.mark.parametrize("ratio", RATIOS)
def test_the_controller_holds_the_share_the_static_threshold_misses(ratio):
    calibration, live = shifted_stream()
    threshold = thresholds_for_ratios(calibration, [ratio])[0]
    static = ~(live >= threshold)
    controlled = replay(live, ratio, threshold, calibration)
    assert abs(static.mean() - ratio) > 0.1
    assert abs(controlled.mean() - ratio) < TOLERANCE
    # and it is already closer after the first 100 requests
    assert abs(controlled[:100].mean() - ratio) < abs(static[:100].mean() - ratio)


@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (1e-3, 0.5), (40.0, -300.0)])
def test_the_same_step_means_the_same_on_any_methods_scale(scale, offset):
    """Probabilities, negative log-perplexities, verbalized percentages: the routing decisions are the same."""
    calibration, live = shifted_stream(seed=3)
    reference = replay(live, 0.3, thresholds_for_ratios(calibration, [0.3])[0], calibration)
    scaled_cal, scaled_live = calibration * scale + offset, live * scale + offset
    routed = replay(scaled_live, 0.3, thresholds_for_ratios(scaled_cal, [0.3])[0], scaled_cal)
    assert (routed == reference).mean() > 0.99  # float rounding may flip a decision at a hair's breadth


def test_steps_never_exceed_the_bound_in_calibration_quantiles():
    calibration, live = shifted_stream(seed=1, shift=3.0)
    settings = ControllerSettings(step=0.07)
    for ratio in (0.05, 0.5, 0.9):
        controller = ShareController(ratio, thresholds_for_ratios(calibration, [ratio])[0], calibration, settings)
        scale = CalibrationScale(calibration)
        bound = settings.step * max(ratio, 1 - ratio)
        levels = [scale.level(controller.threshold, ratio)]
        for value in live:
            controller.route(value)
            assert abs(controller.state()["last_step"]) <= bound + 1e-12
            levels.append(controller.state()["level"])
        assert np.max(np.abs(np.diff(levels))) <= bound + 1e-12
        assert controller.state()["largest_step"] <= bound + 1e-12
        assert -settings.reach <= min(levels) and max(levels) <= 1 + settings.reach


def test_the_level_stays_within_reach_of_the_calibration_range():
    """A stream of unscored replies (all routed) cannot wind the threshold down without end."""
    calibration = np.linspace(0, 1, 11)
    controller = ShareController(0.5, 0.5, calibration, ControllerSettings(step=0.5, reach=0.5))
    for _ in range(100):
        assert controller.route(None)
    assert controller.state()["level"] == -0.5
    # the first knot (level 1/11, threshold 0.05), 0.5 + 1/11 levels down at slope 1 (the calibration range)
    assert controller.threshold == pytest.approx(0.05 - (0.5 + 1 / 11))


def test_ratio_zero_and_one_hold_their_infinite_thresholds():
    calibration, live = shifted_stream(seed=2, shift=-5.0)
    values = np.concatenate([live, [np.inf, -np.inf, 1e308, -1e308]])
    never = replay(values, 0.0, -np.inf, calibration)
    always = replay(values[:-4], 1.0, np.inf, calibration)
    assert not never.any() and always.all()
    controller = ShareController(1.0, np.inf, calibration, ControllerSettings())
    for value in live:
        controller.route(value)
    assert controller.threshold == np.inf and controller.state()["holds"]
    assert json.dumps(controller.state())  # infinite thresholds are null in the state, with their sign beside
    assert controller.state()["threshold_infinite"] == "+inf" and controller.state()["threshold"] is None
    with pytest.raises(ValueError, match="target ratio 0 routes nothing.*-inf, not 0.1"):
        ShareController(0.0, 0.1, calibration, ControllerSettings())


def test_an_infinite_start_inside_the_ratios_moves():
    """A small calibration set gives -inf to a small ratio (round-half-up of r m is 0); the controller leaves it."""
    calibration = np.array([0.2, 0.4, 0.6, 0.8])
    threshold = thresholds_for_ratios(calibration, [0.1])[0]
    assert threshold == -np.inf
    routed = replay(np.random.default_rng(8).uniform(0.3, 0.9, 1000), 0.1, threshold, calibration)
    assert not routed[0] and routed.any() and abs(routed.mean() - 0.1) < 0.02


def test_nan_is_routed_and_counts_toward_the_share():
    calibration = np.linspace(0, 1, 101)
    controller = ShareController(0.3, thresholds_for_ratios(calibration, [0.3])[0], calibration, ControllerSettings())
    assert controller.route(float("nan")) and controller.route(None)
    state = controller.state()
    assert (state["requests"], state["routed"], state["routed_share"]) == (2, 2, 1.0)
    assert controller.threshold < controller.initial_threshold  # routing above target lowers the threshold
    rng = np.random.default_rng(4)
    stream = np.where(rng.random(2000) < 0.25, np.nan, rng.uniform(0, 1, 2000))
    routed = replay(stream, 0.5, thresholds_for_ratios(calibration, [0.5])[0], calibration)
    assert routed[np.isnan(stream)].all() and abs(routed.mean() - 0.5) < TOLERANCE


def test_ties_are_kept_at_the_threshold_and_discrete_confidences_average_to_target():
    calibration = np.array([0.5, 0.8, 0.8, 0.8, 0.9, 1.0])
    controller = ShareController(0.5, 0.8, calibration, ControllerSettings())
    assert not controller.route(0.8)  # confidence >= threshold: kept, as the calibration rule keeps it
    rng = np.random.default_rng(5)
    verbalized = rng.choice([0.5, 0.8, 0.9, 1.0], size=3000, p=[0.1, 0.2, 0.4, 0.3])
    routed = replay(verbalized, 0.5, thresholds_for_ratios(calibration, [0.5])[0], calibration)
    assert abs(routed.mean() - 0.5) < TOLERANCE


def test_the_replay_is_deterministic():
    calibration, live = shifted_stream(seed=6)
    first = replay(live, 0.4, thresholds_for_ratios(calibration, [0.4])[0], calibration)
    again = replay(live, 0.4, thresholds_for_ratios(calibration, [0.4])[0], calibration)
    assert np.array_equal(first, again)


def test_concurrent_routes_each_count_once():
    calibration = np.linspace(0, 1, 101)
    controller = ShareController(0.5, 0.5, calibration, ControllerSettings(window=20_000))
    threads, per_thread = 8, 2000
    values = np.random.default_rng(7).uniform(0, 1, (threads, per_thread))
    decisions = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        decisions[i] = [controller.route(v) for v in values[i]]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    state = controller.state()
    routed = sum(sum(d) for d in decisions)
    assert (state["requests"], state["routed"], state["window_requests"]) == (threads * per_thread, routed,
                                                                             threads * per_thread)
    # With every update counted, the level is the start plus step times the deficit, exactly.
    expected = 0.5 + controller.settings.step * (0.5 * threads * per_thread - routed)
    assert state["level"] == pytest.approx(min(max(expected, -1.0), 2.0), abs=1e-9)


def test_the_window_reports_the_recent_share():
    controller = ShareController(0.5, 0.5, np.linspace(0, 1, 11), ControllerSettings(window=4))
    for value in (np.nan, np.nan, np.nan, np.nan, 2.0, 2.0):
        controller.route(value)
    state = controller.state()
    assert (state["window_requests"], state["window_routed_share"], state["routed_share"]) == (4, 0.5, 4 / 6)


@pytest.mark.parametrize("settings, key", [
    (dict(window=0), "window"), (dict(step=0.0), "step"), (dict(step=1.5), "step"), (dict(reach=-1.0), "reach"),
])
def test_bad_settings_name_their_config_key(settings, key):
    with pytest.raises(ValueError, match=f"analysis.controller.{key}"):
        ControllerSettings(**settings)


def test_calibration_without_finite_confidences_is_refused():
    with pytest.raises(ValueError, match="finite calibration confidences"):
        ShareController(0.5, 0.0, np.array([np.nan, 1.0]), ControllerSettings())
    with pytest.raises(ValueError, match="finite calibration confidences; got 0"):
        ShareController(0.5, 0.0, np.array([]), ControllerSettings())


def test_the_schema_defaults_are_the_routers_defaults():
    """The workflow measures the controller the router runs: one set of defaults."""
    schema = load_schema("config")["properties"]["analysis"]["properties"]["controller"]["properties"]
    defaults = {key: rule["default"] for key, rule in schema.items()}
    assert ControllerSettings.from_config(defaults) == ControllerSettings()
    assert ReplaySettings.from_config(defaults) == ReplaySettings()
    stated = yaml.safe_load(EMBEDDED_CONFIG.read_text())["analysis"]["controller"]
    assert ControllerSettings.from_config(stated) == ControllerSettings()


# ---- the replay table --------------------------------------------------------------------------------------


def synthetic_cell(seed: int, n: int = 80, shift: float = 0.8, invalid: int = 0):
    """A calibration set of two runs (confidences ~ N(0, 1)) and a held-out uq table shifted up by ``shift``."""
    rng = np.random.default_rng(seed)
    calibration = pd.DataFrame({"run": np.repeat([0, 1], 60), "confidence": rng.normal(0, 1, 120)})
    confidence = rng.normal(shift, 1, n)
    correct = rng.random(n) < 1 / (1 + np.exp(-2 * (confidence - shift)))
    valid = np.ones(n, dtype=bool)
    valid[:invalid] = False
    confidence[~valid] = np.nan
    uq = pd.DataFrame({"id": [f"q{i}" for i in range(n)], "confidence": confidence, "prediction": "A",
                       "correct": correct, "valid": valid})
    return calibration, uq, rng.random(n) < 0.9


def test_replay_table_columns_rows_and_checkpoints():
    calibration, uq, llm = synthetic_cell(0)
    settings = ReplaySettings(orders=12, seed=3, checkpoints=(50, 100))
    table = replay_table(calibration, uq, llm, [0.0, 0.3, 1.0], cell=("s", "d"), replay_settings=settings)
    assert list(table.columns) == list(SHARE_CONTROL_COLUMNS)
    assert len(table) == 2 * 3 * 2 * 3  # runs x ratios x routers x (50, 100, end)
    assert set(table["checkpoint"]) == {"50", "100", "end"}
    end = table[table["checkpoint"] == "end"]
    assert set(end["requests"]) == {160} and set(table["n"]) == {80} and set(table["orders"]) == {12}
    for column in ("achieved_ratio", "abs_error", "accuracy"):
        assert (table[f"{column}_low"] <= table[column] + 1e-12).all()
        assert (table[column] <= table[f"{column}_high"] + 1e-12).all()
    # ratio 0 and 1: nothing and everything routed by both; accuracy is the SLM's and the LLM's
    for ratio, share in ((0.0, 0.0), (1.0, 1.0)):
        rows = table[table["target_ratio"] == ratio]
        assert (rows["achieved_ratio"] == share).all() and (rows["abs_error"] == 0).all()
    static = table[(table["router"] == "static") & (table["target_ratio"] == 0.3)]
    assert set(static["threshold"]) == {thresholds_for_ratios(calibration.loc[calibration["run"] == run,
                                                                               "confidence"], [0.3])[0]
                                        for run in (0, 1)}


def test_replay_table_static_misses_and_the_controller_closes_in():
    calibration, uq, llm = synthetic_cell(1, n=200)
    table = replay_table(calibration, uq, llm, [0.2, 0.5, 0.8], cell=("s", "d"),
                         replay_settings=ReplaySettings(orders=10, seed=1, checkpoints=(50, 100)))
    error = table.groupby(["router", "checkpoint"])["abs_error"].mean()
    assert error["static", "end"] > 0.15
    assert error["controller", "end"] < error["controller", "100"] < error["static", "100"]
    assert error["controller", "end"] < 0.05


def test_replay_table_accuracy_is_the_generalization_rules():
    """Static at the end of a stream that holds each question once: the generalization rule's accuracy."""
    from uqroute.analysis.calibration import generalization

    calibration, uq, llm = synthetic_cell(2, n=40)
    calibration = calibration[calibration["run"] == 0]
    settings = ReplaySettings(orders=4, seed=0, checkpoints=(40,))
    streams = replay_streams(40, settings, ("s", "d"))
    assert streams.shape == (4, 40)
    table = replay_table(calibration, uq, llm, [0.25, 0.5], cell=("s", "d"), replay_settings=settings)
    static = table[(table["router"] == "static") & (table["checkpoint"] == "end")].set_index("target_ratio")
    # each stream is a resample: weighted by how often it drew each question, the rule's accuracy and share
    truth = generalization(calibration, uq, llm, [0.25, 0.5])
    conf, slm = uq["confidence"].to_numpy(), uq["correct"].to_numpy()
    for ratio, threshold in zip(truth["target_ratio"], truth["threshold"]):
        routed = conf < threshold
        right = np.where(routed, llm, slm)
        assert static.loc[ratio, "accuracy"] == pytest.approx(right[streams].mean(axis=1).mean())
        assert static.loc[ratio, "achieved_ratio"] == pytest.approx(routed[streams].mean(axis=1).mean())
        assert right.mean() == pytest.approx(truth.set_index("target_ratio").loc[ratio, "accuracy"])


def test_replay_table_takes_the_invalid_rule_and_a_ratio_subset():
    calibration, uq, llm = synthetic_cell(3, n=60, invalid=10)
    dropped = replay_table(calibration, uq, llm, [0.5], cell=("s", "d"), invalid="drop",
                           replay_settings=ReplaySettings(orders=3, checkpoints=(20,)))
    assert set(dropped["n"]) == {50}
    routed_first = replay_table(calibration, uq, llm, [0.0, 0.5], cell=("s", "d"), invalid="route_first",
                                replay_settings=ReplaySettings(orders=3, checkpoints=(20,), ratios=(0.0,)))
    assert set(routed_first["n"]) == {60} and set(routed_first["target_ratio"]) == {0.0}
    # unscored rows are routed even at ratio 0: about a sixth of the stream
    end = routed_first[routed_first["checkpoint"] == "end"]
    assert (end["achieved_ratio"] > 0.05).all()


def test_replay_table_of_an_empty_calibration_set_has_no_rows_and_the_columns():
    _, uq, llm = synthetic_cell(4)
    empty = replay_table(pd.DataFrame({"run": pd.Series(dtype="int64"), "confidence": pd.Series(dtype=float)}),
                         uq, llm, [0.5], cell=("s", "d"), replay_settings=ReplaySettings(orders=2))
    assert empty.empty and list(empty.columns) == list(SHARE_CONTROL_COLUMNS)


def test_replay_streams_are_seeded_per_cell_and_hold_the_largest_checkpoint():
    settings = ReplaySettings(orders=5, seed=9, checkpoints=(50, 100))
    first = replay_streams(16, settings, ("s", "d"))
    assert first.shape == (5, 112)  # seven passes of 16
    assert np.array_equal(first, replay_streams(16, settings, ("s", "d")))
    assert not np.array_equal(first, replay_streams(16, settings, ("s", "e")))
    # each pass replays the order's resample, in a new order
    passes = first.reshape(5, 7, 16)
    assert all((np.sort(passes[b], axis=1) == np.sort(passes[b, 0])).all() for b in range(5))
