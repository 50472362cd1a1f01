"""The workflow's job functions on small tables written where the workflow writes them.

Each job is the code the workflow runs; these tests call it the way its script does, with paths laid
out by uqroute.paths, and check that each cell's coordinates come from its path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from uqroute import paths
from uqroute.analysis import alignment_table, build_calibration_set, pool_confidences, routing_curve
from uqroute.analysis.bootstrap import BootstrapSettings, question_weights
from uqroute.io import read_parquet, write_parquet
from uqroute.jobs import analysis, figures, generate, uq
from uqroute.passes import PASS_COLUMNS

SLMS, LLM, DATASETS, METHODS = ("slm-a", "slm-b"), "llm-x", ("boolq", "piqa", "multiarith"), ("perplexity", "p_true")


def uq_frame(rng, n=40, invalid=0) -> pd.DataFrame:
    confidence = rng.random(n)
    valid = np.arange(n) >= invalid
    return pd.DataFrame({"id": [f"q{i}" for i in range(n)], "confidence": np.where(valid, confidence, np.nan),
                         "prediction": ["A"] * n, "correct": rng.random(n) < confidence, "valid": valid})


@pytest.fixture
def grid(tmp_path):
    """UQ tables of every (slm, dataset, method) cell, each with its own values, and the LLM's answers."""
    results = str(tmp_path / "results")
    rng = np.random.default_rng(7)
    tables = {}
    for slm in SLMS:
        for dataset in DATASETS:
            for method in METHODS:
                table = uq_frame(rng, invalid=3 if method == "p_true" else 0)
                tables[slm, dataset, method] = table
                write_parquet(table, paths.results_path(results, "uq", slm=slm, dataset=dataset, method=method))
    for dataset in DATASETS:
        llm = pd.DataFrame({"id": [f"q{i}" for i in range(40)][::-1], "correct": rng.random(40) < 0.8})
        write_parquet(llm, paths.results_path(results, "gen", model=LLM, dataset=dataset, split="test",
                                              pass_name="greedy"))
    return results, tables


def uq_paths(results, cells):
    return [paths.results_path(results, "uq", slm=s, dataset=d, method=m) for s, d, m in cells]


def llm_path(results, dataset):
    return paths.results_path(results, "gen", model=LLM, dataset=dataset, split="test", pass_name="greedy")


def test_paths_round_trip_and_name_a_stranger():
    path = paths.results_path("results", "routing", slm="llama-3.2-1b", llm="gpt-4o-mini", dataset="gsm8k",
                              method="p_true")
    assert path == "results/routing/llama-3.2-1b/gpt-4o-mini/gsm8k/p_true.parquet"
    assert paths.cell_of(path, "routing") == {"slm": "llama-3.2-1b", "llm": "gpt-4o-mini", "dataset": "gsm8k",
                                              "method": "p_true"}
    assert paths.cell_of("/abs/results/calibration/s/m/holdout-piqa.parquet", "calibration") == {
        "slm": "s", "method": "m", "dataset": "piqa"}
    replies = paths.results_path("r", "replies", model="m", dataset="d", split="test", pass_name="greedy")
    assert paths.cell_of(replies, "replies")["pass_name"] == "greedy"
    with pytest.raises(ValueError, match="not a uq path"):
        paths.cell_of("results/routing/a/b/c/d.parquet", "uq")
    with pytest.raises(KeyError, match="method"):
        paths.results_path("results", "uq", slm="s", dataset="d")


def test_alignment_job_labels_each_row_by_its_path_in_any_order(grid, tmp_path):
    results, tables = grid
    cells = [(s, d, m) for s in SLMS for d in DATASETS for m in METHODS]
    shuffled = [cells[i] for i in np.random.default_rng(1).permutation(len(cells))]
    out, compared = str(tmp_path / "alignment.parquet"), str(tmp_path / "comparisons.parquet")
    analysis.alignment(uq=uq_paths(results, shuffled), ece_bins=10, bootstrap={"resamples": 200}, power={},
                       alignment=out, comparisons=compared, resamples=str(tmp_path / "resamples.parquet"))
    expected = alignment_table([(*cell, tables[cell]) for cell in shuffled], ece_bins=10,
                               bootstrap=BootstrapSettings(resamples=200))
    pd.testing.assert_frame_equal(read_parquet(out), expected)
    assert read_parquet(out).loc[lambda t: t["method"] == "p_true", "n_valid"].eq(37).all()
    # Every pair of methods of every (SLM, dataset) is compared once.
    pairs = len(METHODS) * (len(METHODS) - 1) // 2
    assert len(read_parquet(compared)) == len(SLMS) * len(DATASETS) * pairs


def test_routing_curve_job_aligns_the_llm_by_id(grid, tmp_path):
    results, tables = grid
    out = str(tmp_path / "curve.parquet")
    analysis.routing_curve(uq=uq_paths(results, [("slm-a", "piqa", "perplexity")])[0],
                           llm=llm_path(results, "piqa"), step=0.1, bootstrap={"resamples": 100}, output=out)
    table = tables["slm-a", "piqa", "perplexity"]
    llm = read_parquet(llm_path(results, "piqa")).set_index("id").loc[table["id"], "correct"].to_numpy()
    weights = question_weights(table["id"], BootstrapSettings(resamples=100), "slm-a", "piqa")
    expected = routing_curve(table["confidence"], table["correct"], llm, valid=table["valid"],
                             ratios=np.round(np.arange(0, 1.05, 0.1), 10), weights=weights)
    pd.testing.assert_frame_equal(read_parquet(out), expected)
    curve = read_parquet(out)
    assert (curve["accuracy_low"] <= curve["accuracy"] + 1e-9).all()
    assert (curve["accuracy"] <= curve["accuracy_high"] + 1e-9).all()


def test_routing_metrics_job_takes_each_cell_from_its_curve_path(grid, tmp_path):
    results, _ = grid
    curves = []
    for slm, method in (("slm-b", "p_true"), ("slm-a", "perplexity")):
        curve = paths.results_path(results, "routing", slm=slm, llm=LLM, dataset="boolq", method=method)
        analysis.routing_curve(uq=uq_paths(results, [(slm, "boolq", method)])[0], llm=llm_path(results, "boolq"),
                               step=0.05, bootstrap={"resamples": 50}, output=curve)
        curves.append(curve)
    out = str(tmp_path / "routing.parquet")
    analysis.routing_metrics(curves=curves, output=out)
    table = read_parquet(out)
    assert list(zip(table["slm"], table["method"])) == [("slm-b", "p_true"), ("slm-a", "perplexity")]
    first = read_parquet(curves[0])
    assert table["slm_accuracy"].iloc[0] == first["accuracy"].iloc[0]
    assert table["llm_accuracy"].iloc[0] == first["accuracy"].iloc[-1]


def test_relative_accuracy_job_pairs_each_uq_table_with_its_datasets_llm(grid, tmp_path):
    results, _ = grid
    out = str(tmp_path / "relative.parquet")
    cells = [("slm-a", "piqa", "perplexity"), ("slm-b", "boolq", "p_true")]
    analysis.relative_accuracy(uq=uq_paths(results, cells), llm=[llm_path(results, d) for d in DATASETS], step=30,
                               bootstrap={"resamples": 100}, output=out)
    table = read_parquet(out)
    assert list(table.columns[:4]) == ["slm", "llm", "dataset", "method"]
    assert set(zip(table["slm"], table["dataset"], table["method"])) == set(cells)
    assert (table["llm"] == LLM).all() and sorted(set(table["excluded_pct"])) == [0, 30, 60, 90]


def test_calibration_job_pools_the_datasets_its_paths_name(grid, tmp_path):
    results, tables = grid
    out = str(tmp_path / "calibration.parquet")
    sources = [("slm-a", "piqa", "p_true"), ("slm-a", "multiarith", "p_true")]
    analysis.calibration_set(uq=uq_paths(results, sources), n_bins=5, fraction=0.5, seeds=[50, 51], output=out)
    table = read_parquet(out)
    expected = build_calibration_set(pool_confidences({d: tables[s, d, m] for s, d, m in sources}), n_bins=5,
                                     fraction=0.5, seeds=(50, 51))
    pd.testing.assert_frame_equal(table.drop(columns="seed"), expected)
    assert set(table["source_dataset"]) == {"piqa", "multiarith"}
    assert set(zip(table["run"], table["seed"])) == {(0, 50), (1, 51)}


def test_calibration_generalization_and_share_control_keep_their_column_types_without_valid_scores(grid, tmp_path):
    """A method that scored nothing in one dataset, or anywhere, still writes the column types of one that scored
    everything (docs/contracts.md), so the tables of all methods stack into one schema."""
    results, _ = grid
    rng = np.random.default_rng(11)
    unscored = {"piqa": uq_frame(rng, invalid=40), "multiarith": uq_frame(rng, invalid=40),
                "boolq": uq_frame(rng, invalid=10)}
    for dataset, table in unscored.items():
        write_parquet(table, paths.results_path(results, "uq", slm="slm-a", dataset=dataset, method="verbal_1s"))
    schemas = {}
    for name, sources in {"scored": [("piqa", "p_true"), ("multiarith", "p_true")],
                          "partly": [("piqa", "verbal_1s"), ("boolq", "verbal_1s")],
                          "never": [("piqa", "verbal_1s"), ("multiarith", "verbal_1s")]}.items():
        calibration, generalization = str(tmp_path / f"{name}.parquet"), str(tmp_path / f"{name}-boolq.parquet")
        analysis.calibration_set(uq=uq_paths(results, [("slm-a", d, m) for d, m in sources]), n_bins=5,
                                 fraction=0.5, seeds=[50, 51], output=calibration)
        analysis.generalization(calibration=calibration, uq=uq_paths(results, [("slm-a", "boolq", "p_true")])[0],
                                llm=llm_path(results, "boolq"), step=0.1, bootstrap={"resamples": 50},
                                output=generalization)
        share_control = str(tmp_path / f"{name}-share-control.parquet")
        analysis.share_control(calibration=calibration, uq=uq_paths(results, [("slm-a", "boolq", "p_true")])[0],
                               llm=llm_path(results, "boolq"), step=0.5, controller={"orders": 3}, level=0.95,
                               output=share_control)
        schemas[name] = [pq.read_schema(path).remove_metadata()
                         for path in (calibration, generalization, share_control)]
    assert len(read_parquet(str(tmp_path / "never-boolq.parquet"))) == 0
    assert len(read_parquet(str(tmp_path / "never-share-control.parquet"))) == 0
    assert len(read_parquet(str(tmp_path / "scored-share-control.parquet"))) == 2 * 3 * 2 * 3
    assert schemas["partly"] == schemas["scored"] and schemas["never"] == schemas["scored"]


def test_grade_job_grades_replies_with_the_rule_judge(tmp_path):
    questions = pd.DataFrame({"id": ["b1", "b2"], "dataset": "boolq", "split": "test", "task_type": "tf",
                              "question": ["q1", "q2"], "context": None, "choices": None, "answer": ["true", "false"],
                              "answer_aliases": None, "incorrect_answers": None})
    replies = pd.DataFrame({"id": ["b2", "b1"], "response": ["Yes, it is.", "Yes."], "verbal_confidence": [0.9, np.nan]})
    write_parquet(questions, tmp_path / "test.parquet")
    write_parquet(replies, tmp_path / "verbal1s.replies.parquet")
    generate.grade(pass_name="verbal1s", replies=str(tmp_path / "verbal1s.replies.parquet"),
                   questions=str(tmp_path / "test.parquet"), judge={"engine": "rule", "weak_readings": "drop"},
                   budgets={"max_new_tokens": {"tf": 8}, "verbal_max_new_tokens": 16},
                   output=str(tmp_path / "verbal1s.parquet"))
    table = read_parquet(tmp_path / "verbal1s.parquet")
    assert list(table.columns) == PASS_COLUMNS["verbal1s"]
    assert table["id"].tolist() == ["b2", "b1"] and table["prediction"].tolist() == ["true", "true"]
    assert table["correct"].tolist() == [False, True]
    assert table["read_by"].tolist() == ["opening", "whole_reply"] and set(table["graded_by"]) == {"rule"}


@pytest.mark.parametrize("outputs, named", [
    ({"greedy": "g.parquet", "beam": "b.parquet"}, "beam"),
    ({"sample": "s.parquet", "ptrue": "p.parquet"}, "ptrue"),  # a follow-up pass without the greedy replies it quotes
])
def test_cell_job_refuses_passes_it_cannot_make_before_loading_a_model(tmp_path, outputs, named):
    with pytest.raises(ValueError, match=named):
        generate.generate_cell(model="smollm2-135m", outputs={k: str(tmp_path / v) for k, v in outputs.items()},
                               questions=str(tmp_path / "missing.parquet"), engine_options={}, settings={},
                               max_questions=None, subset_seed=50)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("outputs, hidden_settings, named", [
    ({"hidden": "h.parquet"}, {"layer": -8, "hidden_part_size": 2}, "hidden"),  # it quotes the greedy reply
    ({"greedy": "g.parquet", "hidden_question": "q.parquet"}, {}, "layer"),  # no hidden-state settings
])
def test_cell_job_refuses_hidden_passes_it_cannot_make_before_loading_a_model(tmp_path, outputs, hidden_settings,
                                                                              named):
    with pytest.raises(ValueError, match=named):
        generate.generate_cell(model="smollm2-135m", outputs={k: str(tmp_path / v) for k, v in outputs.items()},
                               questions=str(tmp_path / "missing.parquet"), engine_options={}, settings={},
                               max_questions=None, subset_seed=50, **hidden_settings)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("prefix_cache_mb", [0, None], ids=["prefilled-whole", "reusing-the-greedy-conversation"])
def test_cell_job_writes_the_tables_the_greedy_and_hidden_state_jobs_write(tmp_path, data_dir, smollm2_dir,
                                                                          prefix_cache_mb, caplog):
    """A cell with hidden states (as an SLM's train cell: greedy replies and the hidden-state passes) writes the
    tables the passes' own jobs write: the greedy replies of the generate job, and the hidden states of the
    hidden_states job run on those replies with the same engine options and part size. Byte for byte where the
    engine prefills every prompt whole; with the engine's default, its hidden-state prompts start from the greedy
    conversations it stored, and the float32 states stay within 1e-6 of their size."""
    from uqroute.datasets import load_split, take_subset
    from uqroute.passes import HIDDEN_PASSES, pass_settings

    questions = tmp_path / "questions.parquet"
    write_parquet(take_subset(load_split("commonsenseqa", "test", data_dir), 3, 11), questions)
    fp32 = {"kind": "hf", "device": "cpu", "dtype": "float32", "batch_size": 16,
            **({} if prefix_cache_mb is None else {"prefix_cache_mb": prefix_cache_mb})}
    generation = {"max_new_tokens": {"mcq": 8}, "part_size": 2, "seed": 50}
    common = dict(model="smollm2-135m", questions=str(questions), engine_options=fp32, max_questions=None,
                  subset_seed=50, model_dir=str(smollm2_dir), threads=1)
    cell, alone = tmp_path / "cell", tmp_path / "alone"
    outputs = {"greedy": str(cell / "greedy.replies.parquet"),
               **{name: str(cell / f"{name}.parquet") for name in HIDDEN_PASSES}}
    parts = {name: str(tmp_path / "parts" / name) for name in outputs}
    with caplog.at_level(logging.INFO, logger="uqroute.engines.hf"):
        generate.generate_cell(outputs=outputs, settings={"greedy": pass_settings("greedy", generation, ["mcq"])},
                               checkpoint_dirs=parts, layer=-8, hidden_part_size=2, **common)
    assert ("started from a stored conversation" in caplog.text) == (prefix_cache_mb is None)
    generate.generate(pass_name="greedy", output=str(alone / "greedy.replies.parquet"),
                      settings=pass_settings("greedy", generation, ["mcq"]), **common)
    for name in HIDDEN_PASSES:
        generate.hidden_states(hidden_pass=name, greedy=outputs["greedy"], output=str(alone / f"{name}.parquet"),
                               layer=-8, part_size=2, **common)
    for name, made in outputs.items():
        if prefix_cache_mb == 0 or name == "greedy":
            assert Path(made).read_bytes() == (alone / Path(made).name).read_bytes(), name
            continue
        ours, theirs = (np.stack(read_parquet(path)["vector"]) for path in (made, alone / Path(made).name))
        assert np.max(np.abs(ours - theirs)) <= 1e-6 * np.max(np.abs(theirs)), name
    assert len(read_parquet(outputs["hidden"])) == 3
    assert not any(Path(part).exists() for part in parts.values())  # cleared once every table was written


def test_uq_job_trains_the_probe_on_the_train_split_its_paths_name(tmp_path):
    rng = np.random.default_rng(3)
    results = str(tmp_path / "results")

    def write_cell(dataset, split, n, shift):
        ids = [f"{dataset}-{split}-{i}" for i in range(n)]
        correct = rng.random(n) < 0.5
        vectors = [rng.normal(shift * c, 1.0, 8).astype(np.float32) for c in correct]
        write_parquet(pd.DataFrame({"id": ids, "layer": -8, "vector": vectors}),
                      paths.results_path(results, "hidden", model="s", dataset=dataset, split=split))
        write_parquet(pd.DataFrame({"id": ids, "prediction": "A", "correct": correct}),
                      paths.results_path(results, "gen", model="s", dataset=dataset, split=split,
                                         pass_name="greedy"))
        return ids

    test_ids = write_cell("piqa", "test", 30, 2.0)
    write_cell("piqa", "train", 60, 2.0)
    write_cell("boolq", "train", 60, 0.0)
    write_parquet(pd.DataFrame({"id": test_ids, "task_type": "mcq", "question": "q"}), tmp_path / "questions.parquet")

    def score(train_dataset):
        out = str(tmp_path / f"probe-{train_dataset}.parquet")
        uq.uq_score(method="trained_probe", dataset="piqa", questions=str(tmp_path / "questions.parquet"),
                    **{"greedy": paths.results_path(results, "gen", model="s", dataset="piqa", split="test",
                                                         pass_name="greedy")},
                    hidden=paths.results_path(results, "hidden", model="s", dataset="piqa", split="test"),
                    train_hidden=[paths.results_path(results, "hidden", model="s", dataset=train_dataset,
                                                     split="train")],
                    train_greedy=[paths.results_path(results, "gen", model="s", dataset=train_dataset, split="train",
                                                     pass_name="greedy")],
                    probe={"epochs": 5, "seed": 50}, max_questions=None, subset_seed=50, output=out)
        return read_parquet(out)

    from sklearn.metrics import roc_auc_score

    own = score("piqa")
    assert own["valid"].all() and len(own) == 30
    assert roc_auc_score(own["correct"], own["confidence"]) > 0.8
    with pytest.raises(ValueError, match="trained probe of piqa: train splits of \\['boolq'\\]"):
        score("boolq")


def test_probe_training_pairs_refuse_mismatched_datasets(tmp_path):
    hidden = [paths.results_path("results", "hidden", model="s", dataset="piqa", split="train")]
    greedy = [paths.results_path("results", "gen", model="s", dataset="boolq", split="train", pass_name="greedy")]
    with pytest.raises(ValueError, match="piqa.*boolq"):
        uq.training_pairs(hidden, greedy)


def _probe_cells(results: str, rng, datasets, splits=("test", "train"), n=30) -> None:
    """Hidden states and greedy grades where correctness shifts each vector, for every (dataset, split)."""
    for dataset in datasets:
        for split in splits:
            ids = [f"{dataset}-{split}-{i}" for i in range(n)]
            correct = rng.random(n) < 0.5
            vectors = [rng.normal(1.5 * c, 1.0, 8).astype(np.float32) for c in correct]
            write_parquet(pd.DataFrame({"id": ids, "layer": -8, "vector": vectors}),
                          paths.results_path(results, "hidden", model="s", dataset=dataset, split=split))
            write_parquet(pd.DataFrame({"id": ids, "prediction": "A", "correct": correct}),
                          paths.results_path(results, "gen", model="s", dataset=dataset, split=split,
                                             pass_name="greedy"))
            if split == "test":
                write_parquet(pd.DataFrame({"id": ids, "task_type": "mcq", "question": "q"}),
                              paths.results_path(results, "data", dataset=dataset, split=split))


def test_holdout_pool_scores_each_dataset_with_a_probe_that_saw_neither_it_nor_the_holdout(tmp_path):
    """The OOD probe's calibration pool for hold-out T holds nothing learned from T."""
    results, holdout, others = str(tmp_path / "results"), "boolq", ["piqa", "multiarith", "commonsenseqa"]
    _probe_cells(results, np.random.default_rng(5), [holdout, *others])

    def cell(kind, dataset, split="test"):
        extra = {"pass_name": "greedy"} if kind == "gen" else {}
        model = {} if kind == "data" else {"model": "s"}
        return paths.results_path(results, kind, dataset=dataset, split=split, **model, **extra)

    probe = {"epochs": 5, "seed": 50, "ood_lr": 1e-3}
    pool = str(tmp_path / "results" / paths.template("holdout_uq").format(slm="s", method="ood_probe",
                                                                         dataset=holdout))

    def pooled(train):
        uq.holdout_uq(method="ood_probe", holdout=holdout, questions=[cell("data", d) for d in others],
                      greedy=[cell("gen", d) for d in others], hidden=[cell("hidden", d) for d in others],
                      train_hidden=[cell("hidden", d, "train") for d in train],
                      train_greedy=[cell("gen", d, "train") for d in train], probe=probe, max_questions=None,
                      subset_seed=50, output=pool)
        return read_parquet(pool)

    table = pooled(others)
    assert table["dataset"].unique().tolist() == others and len(table) == 90

    def ood_score(dataset, train):
        out = str(tmp_path / f"{dataset}-{'-'.join(train)}.parquet")
        uq.uq_score(method="ood_probe", dataset=dataset, questions=cell("data", dataset),
                    **{"greedy": cell("gen", dataset)}, hidden=cell("hidden", dataset),
                    train_hidden=[cell("hidden", d, "train") for d in train],
                    train_greedy=[cell("gen", d, "train") for d in train], probe=probe, max_questions=None,
                    subset_seed=50, output=out)
        return read_parquet(out)

    for dataset in others:
        rest = [d for d in others if d != dataset]
        expected = ood_score(dataset, rest)
        got = table[table["dataset"] == dataset].drop(columns="dataset").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)
        # The workflow's own OOD score of this dataset learned from the hold-out too: a different probe.
        leaky = ood_score(dataset, [*rest, holdout])
        assert not np.allclose(leaky["confidence"], expected["confidence"])
    with pytest.raises(ValueError, match="boolq: its own train split was given"):
        pooled([*others, holdout])

    # The hold-out calibration set pools exactly these rows.
    out = str(tmp_path / "calibration.parquet")
    analysis.calibration_set(uq=[pool], n_bins=3, fraction=0.5, seeds=[50], output=out)
    expected = build_calibration_set(pool_confidences(
        {d: table[table["dataset"] == d].reset_index(drop=True) for d in others}), n_bins=3, fraction=0.5, seeds=(50,))
    pd.testing.assert_frame_equal(read_parquet(out).drop(columns="seed"), expected)


def test_figure_registry_draws_a_family_and_names_an_unknown_one(grid, tmp_path):
    results, _ = grid
    alignment = paths.results_path(results, "alignment")
    analysis.alignment(uq=uq_paths(results, [(s, d, m) for s in SLMS for d in DATASETS for m in METHODS]),
                       ece_bins=10, bootstrap={"resamples": 100}, power={}, alignment=alignment,
                       comparisons=paths.results_path(results, "comparisons"),
                       resamples=paths.results_path(results, "auroc_resamples"))
    from uqroute.figure_families import figure_family

    png = figure_family("auroc_heatmaps").path(results, "png")
    figures.figure(family="auroc_heatmaps", inputs={"alignment": [alignment]}, png=png)
    assert (tmp_path / "results" / "figures" / "auroc_heatmaps.pdf").stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown figure family 'nope'"):
        figures.figure(family="nope", inputs={}, png=png)


def test_every_figure_family_has_a_drawing_a_report_caption_and_a_path():
    """A family is declared once (uqroute.figure_families): its tables and drawing are in the declaration, its
    path derives from it, and its caption is found by its name."""
    from uqroute import REPO_ROOT
    from uqroute.figure_families import FIGURE_FAMILIES

    for family in FIGURE_FAMILIES.values():
        assert callable(family.draw) and callable(family.tables)
        assert (REPO_ROOT / "workflow" / "report" / f"{family.name}.rst").is_file(), family.name
        fields = {field: f"<{field}>" for field in family.scope}
        stem = "/".join(["figures", family.name, *fields.values()])
        assert family.path("results", "pdf", **fields) == f"results/{stem}.pdf"
        # and a drawing finds its cell back from its own output path, in any results folder
        assert family.cell_of(family.path("some/where", "png", **fields)) == fields
    assert FIGURE_FAMILIES["routing_curves"].report_options() == {
        "labels": {"LLM": "{llm}", "dataset": "{dataset}", "figure": "accuracy vs routing ratio"},
        "subcategory": "{llm}"}
    assert FIGURE_FAMILIES["auroc_heatmaps"].report_options() == {}


def test_a_figure_reads_the_tables_of_the_cells_it_shows():
    """The inputs of a family's own figure (one cell) and of a paper figure (the pairs it names)."""
    from uqroute.figure_families import FIGURE_FAMILIES
    from uqroute.plan import Grid

    grid = Grid({"slms": list(SLMS), "llms": [LLM], "datasets": list(DATASETS), "methods": list(METHODS),
                 "calibration": {"methods": ["perplexity"]}})
    routing = FIGURE_FAMILIES["routing_curves"]
    inputs = routing.inputs(grid, routing.cell_pairs(grid, llm=LLM, dataset="piqa"), "results")
    assert inputs["curves"] == [paths.results_path("results", "routing", slm=slm, llm=LLM, dataset="piqa", method=m)
                                for slm in SLMS for m in METHODS]
    assert inputs["uq"] == [paths.results_path("results", "uq", slm=slm, dataset="piqa", method=m)
                            for slm in SLMS for m in METHODS]
    distributions = FIGURE_FAMILIES["confidence_distributions"]
    assert distributions.cell_pairs(grid, slm="slm-b") == [("slm-b", m) for m in METHODS]
    panels = [("slm-b", "p_true"), ("slm-a", "perplexity")]  # a paper figure's panels, in its order
    assert distributions.inputs(grid, panels, "r")["uq"] == [
        paths.results_path("r", "uq", slm=slm, dataset=d, method=m) for d in DATASETS for slm, m in panels]
    generalization = FIGURE_FAMILIES["generalization"].inputs(grid, [(LLM, "boolq")], "r")
    assert [paths.cell_of(p, "generalization")["method"] for p in generalization["generalization"]] == [
        "perplexity", "perplexity"]  # calibrated methods only, per SLM
    assert FIGURE_FAMILIES["ratio_fidelity"].inputs(grid, [], "r")["generalization"] == [
        paths.results_path("r", "generalization", slm=slm, llm=LLM, method="perplexity", dataset=d)
        for slm in SLMS for d in DATASETS]
    assert FIGURE_FAMILIES["share_control"].inputs(grid, [("slm-b", m) for m in METHODS], "r")["share_control"] == [
        paths.results_path("r", "share_control", slm="slm-b", llm=LLM, method="perplexity", dataset=d)
        for d in DATASETS]  # calibrated methods only
    assert FIGURE_FAMILIES["auroc_heatmaps"].inputs(grid, [], "r") == {
        "alignment": [paths.results_path("r", "alignment")]}


def test_paper_figure_draws_its_family_on_the_cells_it_names(grid, tmp_path, monkeypatch):
    """Figure N by number: the heatmap keeps only its datasets' panels, relative accuracy only its pairs."""
    import uqroute.figures as drawing
    from uqroute.paper_figures import PAPER_FIGURES, PaperFigure, paper_figure

    results, _ = grid
    alignment = paths.results_path(results, "alignment")
    analysis.alignment(uq=uq_paths(results, [(s, d, m) for s in SLMS for d in DATASETS for m in METHODS]),
                       ece_bins=10, bootstrap={"resamples": 100}, power={}, alignment=alignment,
                       comparisons=paths.results_path(results, "comparisons"),
                       resamples=paths.results_path(results, "auroc_resamples"))
    # Fig. 6 (AQuA, BoolQ, CoQA) on a grid that has BoolQ of those: one panel, drawn to results/paper/fig6.
    monkeypatch.setitem(PAPER_FIGURES, 6, PaperFigure("auroc_heatmaps", "test", datasets=("aqua", "boolq")))
    png = paths.results_path(results, "paper_figure", number="6", ext="png")
    figures.paper_figure(number="6", inputs={"alignment": [alignment]}, png=png)
    assert (tmp_path / "results" / "paper" / "fig6.pdf").stat().st_size > 1000

    drawn = {}
    monkeypatch.setattr(drawing, "plot_auroc_heatmaps", lambda table, stem: drawn.update(heatmap=table))
    figures.paper_figure(number="6", inputs={"alignment": [alignment]}, png=png)
    assert set(drawn["heatmap"]["dataset"]) == {"boolq"} and set(drawn["heatmap"]["slm"]) == set(SLMS)

    relative = paths.results_path(results, "relative_accuracy")
    analysis.relative_accuracy(uq=uq_paths(results, [(s, d, m) for s in SLMS for d in DATASETS for m in METHODS]),
                               llm=[llm_path(results, d) for d in DATASETS], step=10, bootstrap={"resamples": 50},
                               output=relative)
    monkeypatch.setitem(PAPER_FIGURES, 3, PaperFigure("relative_accuracy", "test", pairs=((LLM, "piqa"),)))
    monkeypatch.setattr(drawing, "plot_relative_accuracy",
                        lambda table, stem, no_confidence: drawn.update(relative=table))
    figures.paper_figure(number="3", inputs={"relative": [relative], "alignment": [alignment]}, png=png)
    assert set(map(tuple, drawn["relative"][["llm", "dataset"]].drop_duplicates().to_numpy())) == {(LLM, "piqa")}
    # The family's own figure of one cell finds its cell from its output path.
    from uqroute.figure_families import figure_family

    own = figure_family("relative_accuracy").path(results, "png", llm=LLM, dataset=DATASETS[0])
    figures.figure(family="relative_accuracy", inputs={"relative": [relative], "alignment": [alignment]}, png=own)
    assert set(map(tuple, drawn["relative"][["llm", "dataset"]].drop_duplicates().to_numpy())) == {(LLM, DATASETS[0])}
    with pytest.raises(KeyError, match="paper figure '18': the paper has Figures 1-17"):
        paper_figure("18")
