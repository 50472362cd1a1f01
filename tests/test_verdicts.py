"""The paper's observations and insights as verdicts, on synthetic tables whose answer is known by design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uqroute.analysis.alignment import alignment_tables
from uqroute.analysis.bootstrap import BootstrapSettings
from uqroute.analysis.verdicts import (FAILS, HOLDS, UNDECIDED, insight_1, insight_2, observation_1, observation_2,
                                       observation_3, observation_4)

SETTINGS = BootstrapSettings(resamples=300, seed=1)
STRONG, WEAK = ("trained_probe", "ood_probe", "perplexity"), ("avg_token_prob", "p_true", "jaccard_degree",
                                                              "verbal_1s", "verbal_2s")


def study(separation: dict[str, float], *, n: int = 300, datasets: int = 4, seed: int = 0):
    """Alignment tables of binormal cells: method m's confidence is N(separation[m], 1) on right answers and
    N(0, 1) on wrong ones (population AUROC Phi(separation / sqrt 2)), the same answers for every method."""
    rng = np.random.default_rng(seed)
    cells = []
    for d in range(datasets):
        correct = rng.random(n) < 0.4
        ids = [f"q{i:04d}" for i in range(n)]
        for method, sep in separation.items():
            confidence = rng.normal(sep * correct, 1.0)
            cells.append(("slm", f"d{d}", method, pd.DataFrame({"id": ids, "confidence": confidence,
                                                                 "prediction": "A", "correct": correct,
                                                                 "valid": True})))
    return alignment_tables(cells, bootstrap=SETTINGS)


def verdicts(rows) -> list[str]:
    return [row["verdict"] for row in (rows if isinstance(rows, list) else [rows])]


def test_observation_1_some_methods_aligned_and_some_at_chance():
    mixed, _, _ = study({**{m: 1.5 for m in STRONG}, **{m: 0.0 for m in WEAK}})
    assert observation_1(mixed)["verdict"] == HOLDS
    aligned, _, _ = study({m: 1.5 for m in STRONG + WEAK})
    assert observation_1(aligned)["verdict"] == FAILS
    tiny, _, _ = study({m: 1.5 for m in STRONG}, n=12)
    assert observation_1(tiny)["verdict"] == UNDECIDED  # every cell underpowered: nothing to say


def test_observation_2_verbalized_methods_against_perplexity():
    alignment, _, resamples = study({"perplexity": 1.5, "verbal_1s": 0.1, "verbal_2s": 0.2})
    assert verdicts(observation_2(alignment, resamples, 0.95)) == [HOLDS, HOLDS]
    alignment, _, resamples = study({"perplexity": 0.1, "verbal_1s": 1.5, "verbal_2s": 1.4})
    assert verdicts(observation_2(alignment, resamples, 0.95)) == [FAILS, FAILS]
    alignment, _, resamples = study({"perplexity": 0.8, "verbal_1s": 0.8, "verbal_2s": 0.8}, datasets=2)
    assert UNDECIDED in verdicts(observation_2(alignment, resamples, 0.95))


def test_observation_3_the_top_three_by_a_bootstrap_of_the_ranks():
    alignment, _, resamples = study({**{m: 1.6 for m in STRONG}, **{m: 0.2 for m in WEAK}})
    row = observation_3(resamples, alignment, 0.95)
    assert row["verdict"] == HOLDS and row["low"] > 0 and row["value"] > 0
    alignment, _, resamples = study({**{m: 0.1 for m in STRONG}, **{m: 1.6 for m in WEAK}})
    row = observation_3(resamples, alignment, 0.95)
    assert row["verdict"] == FAILS and row["high"] < 0
    # Every method alike: whichever three come first on the data, nothing says they are the top three.
    for seed in range(3):
        alignment, _, resamples = study({m: 0.8 for m in (*STRONG, *WEAK)}, seed=seed)
        assert observation_3(resamples, alignment, 0.95)["verdict"] == UNDECIDED
    alignment, _, resamples = study({m: 1.5 for m in STRONG})  # only three methods: always "top three"
    assert observation_3(resamples, alignment, 0.95)["verdict"] == HOLDS


def _relative(low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame({"slm": "s", "llm": "l", "dataset": ["d0", "d1"], "method": "perplexity",
                         "excluded_pct": 80.0, "n_kept": 40, "slm_accuracy": 0.8, "llm_accuracy": 0.85,
                         "relative_accuracy": (low + high) / 2, "relative_low": [low, low - 0.3],
                         "relative_high": [high, high - 0.3]})


def test_observation_4_the_slm_near_the_llm_on_its_most_confident_queries():
    assert observation_4(_relative(0.92, 1.05))["verdict"] == HOLDS
    assert observation_4(_relative(0.5, 0.8))["verdict"] == FAILS
    assert observation_4(_relative(0.8, 1.0))["verdict"] == UNDECIDED


def _scaled(method_shift: float, dataset_shift: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(5):
        for m in range(4):
            values = np.clip(rng.beta(2 + 3 * method_shift * m, 2, 300) + dataset_shift * d / 10, 0, 1.5)
            frames.append(pd.DataFrame({"slm": "s", "dataset": f"d{d}", "method": f"m{m}", "scaled": values}))
    return pd.concat(frames, ignore_index=True)


def test_insight_1_the_method_shapes_the_distribution_more_than_the_dataset():
    assert insight_1(_scaled(method_shift=1.0, dataset_shift=0.0), 200, 3, 0.95)["verdict"] == HOLDS
    assert insight_1(_scaled(method_shift=0.0, dataset_shift=3.0), 200, 3, 0.95)["verdict"] == FAILS


def _generalization(ratio_error: float, accuracy_error: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(8):
        target = np.linspace(0, 1, 21)
        frames.append(pd.DataFrame({
            "slm": "s", "llm": "l", "dataset": f"d{d}", "method": "perplexity", "run": 0, "target_ratio": target,
            "achieved_ratio": np.clip(target + rng.choice([-1, 1], 21) * ratio_error * rng.uniform(0.8, 1.2), 0, 1),
            "accuracy": 0.6, "oracle_threshold_accuracy": 0.6 + accuracy_error * rng.uniform(0.8, 1.2, 21)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("errors, expected", [((0.01, 0.005), [HOLDS, HOLDS]), ((0.2, 0.1), [FAILS, FAILS]),
                                              ((0.01, 0.1), [HOLDS, FAILS])])
def test_insight_2_calibration_thresholds_generalize(errors, expected):
    rows = insight_2(_generalization(*errors), 300, 2, 0.95, ratio_tolerance=0.05, accuracy_tolerance=0.02)
    assert verdicts(rows) == expected


def test_the_findings_page_states_every_verdict_from_the_tables(tmp_path):
    """docs/findings-cpu.md is written from the tables alone: every statement with its number, interval and
    verdict, each dataset's counts and every cell's AUROC, the underpowered ones marked."""
    from uqroute.analysis.findings_doc import findings_markdown
    from uqroute.jobs.analysis import findings_doc
    from uqroute.io import write_parquet

    alignment, _, resamples = study({**{m: 1.5 for m in STRONG}, **{m: 0.0 for m in WEAK}}, n=120)
    small = alignment[alignment["dataset"] == "d0"].index
    alignment.loc[small, "underpowered"] = True  # as a cell with few right answers would be
    found = pd.DataFrame([observation_1(alignment), *observation_2(alignment, resamples, 0.95),
                          observation_3(resamples, alignment, 0.95)])
    found["slm"], found["llm"] = "slm", "gemma3-270m"
    found.loc[found.index[-1], "llm"] = "all"  # a statement pooled over the LLMs: not one of them
    page = findings_markdown(found, alignment, source="results-x/metrics", machine="a CPU", level=0.95,
                             resamples=300, max_auroc_width=0.2)
    for row in found.itertuples():
        line = next(line for line in page.splitlines() if f"| {row.description} |" in line)
        assert f"{row.value:.2f}" in line and f"**{row.verdict}**" in line
        assert f"[{row.low:.2f}, {row.high:.2f}]" in line
    assert "Observation 3: trained probe, OOD probe and perplexity rank top three" in page
    assert "smollm2" not in page and "slm -> gemma3-270m" in page and "a CPU" in page
    for cell in alignment.itertuples():
        text = f"{cell.auroc:.2f} [{cell.auroc_low:.2f}, {cell.auroc_high:.2f}]"
        assert (f"*{text}*" in page) == bool(cell.underpowered) and text in page
    # The job writes it from the files; a table without verdicts is an error naming where it came from.
    write_parquet(found, tmp_path / "findings.parquet")
    write_parquet(alignment, tmp_path / "alignment.parquet")
    # With the run's benchmark files and logs, the page ends with what the run cost.
    (tmp_path / "benchmarks/uq/slm/d0").mkdir(parents=True)
    (tmp_path / "benchmarks/uq/slm/d0/perplexity.tsv").write_text("s\tmax_rss\n3.5\t100\n")
    findings_doc(findings=str(tmp_path / "findings.parquet"), alignment=str(tmp_path / "alignment.parquet"),
                 bootstrap={"resamples": 300}, power={"max_auroc_width": 0.2}, output=str(tmp_path / "page.md"),
                 benchmarks=str(tmp_path / "benchmarks"), logs=str(tmp_path / "logs"))
    written = (tmp_path / "page.md").read_text()
    assert written.startswith("# What the paper's findings become for slm -> gemma3-270m")
    assert "## What it cost" in written and "| uq | 1 | 0.00 | 3.5 | 3.5 |" in written
    with pytest.raises(ValueError, match="no statement with a verdict"):
        findings_markdown(found.assign(verdict=None), alignment, source="results-x/metrics", machine="", level=0.95,
                          resamples=300, max_auroc_width=0.2)
