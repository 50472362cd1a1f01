"""The router card (uqroute.analysis.card) from a small hand-made release file and generalization tables, and its
verifier: a card names the exact calibration file, SLM and method it describes."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import t as student_t

from uqroute.analysis.card import (CARD_FORMAT, CardError, card_for_ratio, card_path_for, load_card, over_datasets,
                                   recorded_dtype)
from uqroute.io import write_parquet
from uqroute.jobs.analysis import release_card

SLM, METHOD = "tiny-slm", "perplexity"
RATIOS = [0.0, 0.25, 0.5, 0.75, 1.0]  # the grid of target_ratio_step 0.25
RUNS = {0: (50, [0.1, 0.2, 0.3, 0.4]), 1: (51, [0.15, 0.25, 0.35, 0.45])}  # run: (seed, confidences)
# Held-out dataset -> how far its routed share falls from the target; a run adds its own shift.
SHARE_OFFSET = {"a": -0.1, "b": 0.0, "c": 0.25}
RUN_SHIFT = {0: 0.0, 1: 0.1}
# LLM -> held-out dataset -> accuracy at every ratio and run.
ACCURACY = {"big": {"a": 0.5, "b": 0.4, "c": 0.6}, "huge": {"a": 0.9, "b": 0.8, "c": 0.7}}


def share(dataset: str, run: int, ratio: float) -> float:
    return min(max(ratio + SHARE_OFFSET[dataset] + RUN_SHIFT[run], 0.0), 1.0)


def make_release(results: Path, confidences=None) -> Path:
    runs = {run: (seed, confidences or values) for run, (seed, values) in RUNS.items()}
    table = pd.DataFrame([{"run": run, "source_dataset": "a", "id": f"a-{i}", "confidence": value, "bin": 0,
                           "seed": seed} for run, (seed, values) in runs.items() for i, value in enumerate(values)])
    return write_parquet(table, results / "release" / SLM / f"{METHOD}.parquet")


def make_generalization(results: Path) -> list[str]:
    """Tables of held-out datasets a, b, c for two LLMs, and one of dataset d without rows (no valid confidence)."""
    paths = []
    for llm, accuracy in ACCURACY.items():
        for dataset in [*SHARE_OFFSET, "d"]:
            rows = [] if dataset == "d" else [
                {"run": run, "target_ratio": ratio, "achieved_ratio": share(dataset, run, ratio),
                 "accuracy": accuracy[dataset]} for run in RUNS for ratio in RATIOS]
            table = pd.DataFrame(rows, columns=["run", "target_ratio", "achieved_ratio", "accuracy"])
            path = results / "generalization" / SLM / llm / METHOD / f"{dataset}.parquet"
            paths.append(str(write_parquet(table.astype({"run": "int64"}), path)))
    return paths


def make_passes(results: Path, dtypes=("float32", "float32")) -> list[str]:
    paths = []
    for dataset, dtype in zip(SHARE_OFFSET, dtypes):
        path = results / "gen" / SLM / dataset / "test" / "greedy.parquet"
        paths.append(str(write_parquet(pd.DataFrame({"id": ["x"]}), path, metadata={"uqroute.dtype": dtype})))
    return paths


@pytest.fixture
def built(tmp_path) -> tuple[Path, Path, dict]:
    """The job run on the hand-made tables: (release file, card file, card)."""
    results = tmp_path / "results"
    release = make_release(results)
    card_path = results / "release" / SLM / f"{METHOD}.card.json"
    release_card(calibration=str(release), generalization=make_generalization(results), passes=make_passes(results),
                 step=0.25, level=0.95, output=str(card_path))
    return release, card_path, json.loads(card_path.read_text())


def by_hand(values: list[float], level: float = 0.95) -> dict:
    """Mean, Student-t interval (clipped to [0, 1]) and range of one value per dataset."""
    mean = statistics.fmean(values)
    half = student_t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "low": max(mean - half, 0.0), "high": min(mean + half, 1.0),
            "spread": {"min": min(values), "max": max(values)}}


def assert_summary(found: dict, expected: dict) -> None:
    assert list(found) == ["mean", "low", "high", "spread"]
    for key in ("mean", "low", "high"):
        assert found[key] == pytest.approx(expected[key], abs=1e-12), key
    assert found["spread"] == pytest.approx(expected["spread"], abs=1e-12)


def test_the_card_says_what_the_release_file_is(built):
    release, _, card = built
    assert list(card) == ["format", "slm", "method", "calibration", "dtype", "llms", "datasets", "ratios"]
    assert (card["format"], card["slm"], card["method"], card["dtype"]) == (CARD_FORMAT, SLM, METHOD, "float32")
    assert card["calibration"] == {"file": f"release/{SLM}/{METHOD}.parquet",
                                   "sha256": hashlib.sha256(release.read_bytes()).hexdigest(),
                                   "runs": [0, 1], "seeds": [50, 51], "rows_per_run": 4}
    assert card["llms"] == ["big", "huge"] and card["datasets"] == ["a", "b", "c", "d"]


def test_the_card_gives_each_runs_threshold_of_the_grid(built):
    _, _, card = built
    assert [entry["target_ratio"] for entry in card["ratios"]] == RATIOS
    # k = round-half-up(r * 4) items routed; the threshold is the midpoint of the k-th and (k+1)-th confidences;
    # none at ratio 0 (-inf) and 1 (+inf), which JSON cannot hold.
    expected = {0.0: [None, None], 0.25: [(0.1 + 0.2) / 2, (0.15 + 0.25) / 2],
                0.5: [(0.2 + 0.3) / 2, (0.25 + 0.35) / 2], 0.75: [(0.3 + 0.4) / 2, (0.35 + 0.45) / 2],
                1.0: [None, None]}
    for entry in card["ratios"]:
        assert entry["thresholds_by_run"] == pytest.approx(expected[entry["target_ratio"]])
        assert entry["threshold"] == entry["thresholds_by_run"][0]


def test_the_card_expects_on_unseen_data_what_the_held_out_datasets_saw(built):
    _, card_path, card = built
    text = card_path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    for entry in card["ratios"]:
        ratio = entry["target_ratio"]
        assert [block["llm"] for block in entry["expected_on_unseen"]] == ["big", "huge"]
        for block in entry["expected_on_unseen"]:
            # Dataset d has no rows: three datasets count, each one value (its mean over the two runs).
            assert (block["n_datasets"], block["held_out"], block["level"]) == (3, ["a", "b", "c"], 0.95)
            assert "Student-t" in block["how"] and "held out" in block["source"]
            shares = [(share(dataset, 0, ratio) + share(dataset, 1, ratio)) / 2 for dataset in "abc"]
            assert_summary(block["routed_share"], by_hand(shares))
            assert_summary(block["accuracy"], by_hand([ACCURACY[block["llm"]][dataset] for dataset in "abc"]))
    # At 50 %: routed shares 0.45, 0.55 and 0.8; the interval's top is clipped at 1.
    middle = card["ratios"][2]["expected_on_unseen"][0]["routed_share"]
    assert middle["mean"] == pytest.approx(0.6) and middle["high"] == 1.0 and 0.15 < middle["low"] < 0.16
    assert middle["spread"] == pytest.approx({"min": 0.45, "max": 0.8})


def test_a_summary_over_fewer_than_two_datasets_has_no_interval():
    assert over_datasets([0.3, float("nan")], 0.95) == {"mean": 0.3, "low": None, "high": None,
                                                        "spread": {"min": 0.3, "max": 0.3}}
    assert over_datasets([], 0.95)["mean"] is None


def test_the_dtype_is_what_the_pass_tables_record():
    assert recorded_dtype(["bfloat16", "bfloat16"]) == "bfloat16"
    assert recorded_dtype([None, None]) is None
    assert recorded_dtype(["float32", "bfloat16", None]) == "bfloat16, float32"


def test_generalization_tables_of_another_grid_are_refused(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(ValueError, match=r"generalization/.*/a\.parquet: target ratios .* are not the grid"):
        release_card(calibration=str(make_release(results)), generalization=make_generalization(results),
                     passes=make_passes(results), step=0.5, level=0.95, output=str(tmp_path / "card.json"))


def test_load_card_accepts_the_card_of_its_calibration_file(built):
    release, card_path, card = built
    assert card_path_for(release) == card_path
    assert load_card(card_path, release, SLM, METHOD) == card


def test_load_card_refuses_a_changed_calibration_file(built):
    release, card_path, _ = built
    make_release(release.parents[2], confidences=[0.1, 0.2, 0.3, 0.5])
    with pytest.raises(CardError) as refused:
        load_card(card_path, release, SLM, METHOD)
    message = str(refused.value)
    assert str(card_path) in message and str(release) in message and "sha256" in message
    assert hashlib.sha256(release.read_bytes()).hexdigest() in message


@pytest.mark.parametrize("slm, method", [("other-slm", METHOD), (SLM, "avg_token_prob")])
def test_load_card_refuses_another_slm_or_method(built, slm, method):
    release, card_path, _ = built
    with pytest.raises(CardError, match=rf"{card_path}.*SLM {SLM} with method {METHOD}.*{release}.*SLM {slm} "
                                        rf"with method {method}"):
        load_card(card_path, release, slm, method)


def test_load_card_refuses_what_is_no_card(built, tmp_path):
    release, card_path, card = built
    with pytest.raises(CardError, match="not found"):
        load_card(tmp_path / "missing.card.json", release, SLM, METHOD)
    card_path.write_text(json.dumps({**card, "format": "uqroute.router_card/0"}))
    with pytest.raises(CardError, match="format 'uqroute.router_card/0'"):
        load_card(card_path, release, SLM, METHOD)
    card_path.write_text("{")
    with pytest.raises(CardError, match="not valid JSON"):
        load_card(card_path, release, SLM, METHOD)
    with pytest.raises(CardError, match="not a calibration file"):
        card_path_for(tmp_path / "perplexity.csv")


def test_card_for_ratio_takes_the_nearest_target_ratio(built):
    _, _, card = built
    entry = card_for_ratio(card, 0.3)
    assert (entry["target_ratio"], entry["requested_ratio"], entry["distance"]) == (0.25, 0.3, 0.05)
    assert entry["threshold"] == pytest.approx(0.15) and entry["expected_on_unseen"][0]["llm"] == "big"
    assert card_for_ratio(card, 0.9)["target_ratio"] == 1.0 and card_for_ratio(card, 0.5)["distance"] == 0
    with pytest.raises(CardError, match="not in"):
        card_for_ratio(card, 1.5)
