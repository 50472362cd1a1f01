"""The workflow's planning logic (uqroute.plan) as plain functions of a config: the passes a cell needs, the
train splits a probe reads, the settings and resources each job gets. The DAG built from them is checked by
the dry runs of tests/test_paper_grid.py and tests/test_config_validation.py."""

from __future__ import annotations

import copy

import pytest
import yaml

from uqroute import REPO_ROOT
from uqroute.passes import PASS_NAMES
from uqroute.plan import Grid

PAPER = yaml.safe_load((REPO_ROOT / "config" / "paper.yaml").read_text())
EMBEDDED = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())


def grid(base: dict, **changes) -> Grid:
    config = copy.deepcopy(base)
    config.update(changes)
    return Grid(config)


def test_an_slm_test_split_needs_greedy_and_the_passes_its_methods_read():
    assert grid(EMBEDDED).slm_test_passes == list(PASS_NAMES)  # all eight methods read every pass
    assert grid(EMBEDDED, methods=["perplexity"]).slm_test_passes == ["greedy"]
    assert grid(EMBEDDED, methods=["verbal_2s"]).slm_test_passes == ["greedy", "verbal2s"]


def test_a_cell_job_makes_every_test_pass_only_where_it_saves_a_start_up():
    assert grid(EMBEDDED).cell_passes == list(PASS_NAMES)
    assert grid(EMBEDDED, methods=["perplexity"]).cell_passes == []  # one pass: nothing to share
    by_pass = copy.deepcopy(EMBEDDED)
    by_pass["generation"]["one_job_per"] = "pass"
    assert Grid(by_pass).cell_passes == []


def test_cells_make_the_hidden_states_only_where_the_slms_generate_on_the_hidden_state_engine():
    local = Grid(EMBEDDED)
    assert local.hidden_in_cells
    assert local.cell_hidden_passes("test") == local.cell_hidden_passes("train") == ["hidden"]
    assert local.cell_passes_of("train") == ["greedy"] and local.cell_passes_of("test") == local.cell_passes
    # P(IK)'s question pass too; only passes the probes read on a split, and a train cell only for a probe
    # that learns from a train split (the trained probe of BoolQ, the one dataset here, cross-fits).
    assert grid(EMBEDDED, methods=["p_true", "ood_p_ik", "trained_probe"]).cell_hidden_passes("train") == [
        "hidden", "hidden_question"]
    crossfit = grid(EMBEDDED, datasets=["boolq"], methods=["p_true", "trained_probe"],
                    calibration={**EMBEDDED["calibration"], "methods": None})
    assert crossfit.cell_hidden_passes("test") == ["hidden"] and crossfit.cell_passes_of("train") == []
    assert grid(EMBEDDED, methods=["p_true", "verbal_2s"]).cell_hidden_passes("test") == []
    # Generation on vLLM (the paper's SLMs, or one SLM of several) or a job per pass: their own jobs.
    vllm = grid(EMBEDDED, slms=["smollm2-135m", "gemma3-270m"],
                engines={**EMBEDDED["engines"], "gemma3-270m": {"kind": "vllm", "device": "cpu"}})
    paper = grid(PAPER, generation={**PAPER["generation"], "one_job_per": "cell"})
    by_pass = grid(EMBEDDED, generation={**EMBEDDED["generation"], "one_job_per": "pass"})
    for separate in (vllm, paper, by_pass):
        assert not separate.hidden_in_cells and separate.cell_hidden_passes("test") == []
        assert separate.cell_passes_of("train") == []


def test_each_probe_reads_the_train_splits_the_paper_gives_it():
    paper = Grid(PAPER)
    for dataset in paper.datasets:
        others = [other for other in paper.datasets if other != dataset]
        assert paper.train_datasets("ood_probe", dataset) == others  # every other dataset, never its own
        assert paper.train_datasets("trained_probe", dataset) == [dataset]  # its own (hub: every train split)
        assert paper.train_datasets("perplexity", dataset) == []
    local = Grid(EMBEDDED)
    # The local BoolQ train split has no passages: its trained probe cross-fits over the test split instead.
    assert local.probe_training("boolq") == "crossfit" and local.train_datasets("trained_probe", "boolq") == []
    assert local.train_datasets("trained_probe", "piqa") == ["piqa"]


def test_the_grid_reads_every_train_split_when_an_ood_probe_is_released():
    assert Grid(EMBEDDED).released_probe_methods == ["ood_probe"]
    assert Grid(EMBEDDED).trained_on == EMBEDDED["datasets"]
    config = copy.deepcopy(EMBEDDED)
    config.update(methods=["perplexity", "trained_probe"], calibration={**EMBEDDED["calibration"], "methods": None})
    assert Grid(config).released_probe_methods == []
    # Only the trained probes read train splits, and boolq's cross-fits over its test split instead.
    assert Grid(config).trained_on == [dataset for dataset in EMBEDDED["datasets"] if dataset != "boolq"]


def test_the_truncation_count_reads_every_generating_pass_table_of_the_grid():
    local = Grid(EMBEDDED)
    tables = local.generating_pass_tables
    slm, llm = EMBEDDED["slms"][0], EMBEDDED["llms"][0]
    # ptrue generates no reply; the SLM's greedy pass on every train split (the OOD probe is released).
    assert {t[3] for t in tables if t[:3] == (slm, "boolq", "test")} == {"greedy", "sample", "verbal1s", "verbal2s"}
    assert [t for t in tables if t[2] == "train"] == [(slm, d, "train", "greedy") for d in EMBEDDED["datasets"]]
    assert [t for t in tables if t[0] == llm] == [(llm, d, "test", "greedy") for d in EMBEDDED["datasets"]]
    assert len(tables) == len(set(tables)) == 4 * 4 + 4 + 4
    # An LLM that is also an SLM shares the SLM's greedy pass.
    shared = Grid({**EMBEDDED, "llms": [slm]}).generating_pass_tables
    assert len(shared) == len(set(shared)) == 4 * 4 + 4


def test_the_grading_reads_every_graded_pass_table_and_each_its_own_budgets():
    local = Grid(EMBEDDED)
    assert local.graded_pass_tables == [t for t in local.generating_pass_tables if t[3] in ("greedy", "verbal1s")]
    assert {t[3] for t in local.graded_pass_tables} == {"greedy", "verbal1s"}
    # A grading job reruns only when a budget of its own pass changes.
    assert local.budgets("boolq", "greedy") == {"max_new_tokens": {"tf": EMBEDDED["generation"]["max_new_tokens"]["tf"]}}
    assert set(local.budgets("boolq", "verbal1s")) == {"max_new_tokens", "verbal_max_new_tokens"}


def test_each_figure_family_draws_one_figure_per_value_of_its_scope():
    from uqroute.figure_families import FIGURE_FAMILIES

    paper = Grid(PAPER)
    assert FIGURE_FAMILIES["auroc_heatmaps"].cells(paper) == [{}]
    assert FIGURE_FAMILIES["confidence_distributions"].cells(paper) == [{"slm": slm} for slm in PAPER["slms"]]
    assert FIGURE_FAMILIES["routing_curves"].cells(paper) == [
        {"llm": llm, "dataset": dataset} for llm in PAPER["llms"] for dataset in PAPER["datasets"]]


def test_probe_settings_reach_probe_jobs_only_with_what_their_probe_reads():
    local = Grid(EMBEDDED)
    assert local.probe_settings("perplexity", "piqa") == {}
    trained = local.probe_settings("trained_probe", "piqa")
    assert "lr" in trained and "ood_lr" not in trained and "crossfit_folds" not in trained
    assert "crossfit_folds" in local.probe_settings("trained_probe", "boolq")
    ood = local.probe_settings("ood_probe", "piqa")
    assert "ood_lr" in ood and "lr" not in ood and "crossfit_folds" not in ood


def test_each_job_gets_the_budget_of_its_datasets_task_type_only():
    settings = Grid(EMBEDDED).pass_settings("boolq", "greedy")
    assert settings["max_new_tokens"] == {"tf": EMBEDDED["generation"]["max_new_tokens"]["tf"]}
    assert Grid(EMBEDDED).subset_size("test") == EMBEDDED["subset"]["max_test"]
    assert Grid(EMBEDDED).subset_size("train") == EMBEDDED["subset"]["max_train"]


def test_resources_follow_the_model_and_the_engine_it_runs_on():
    paper = Grid(PAPER)
    slm = paper.slms[0]
    assert paper.gpus(slm) == 1 and paper.gpus(slm, kind="hf") == 1
    assert paper.gpus("llama-3.1-70b") == 4 and paper.gpus("gpt-4o-mini") == 0
    assert paper.api_requests("gpt-4o-mini") == 1 and paper.api_requests(slm) == 0
    assert paper.gpu_type("gpt-4o-mini") == "" and paper.judge_api_requests() == 1
    assert paper.judge_settings()["engine_options"] == {"kind": "openai"}
    # vLLM keeps the weights on the GPU: less host memory than transformers for the same model.
    assert paper.model_mem_mb("llama-3.1-70b") < paper.model_mem_mb("llama-3.1-70b", kind="hf")
    assert paper.model_runtime(slm, "sample") > paper.model_runtime(slm, "greedy")
    local = Grid(EMBEDDED)
    assert local.gpus("smollm2-135m") == 0 and local.needs_model_dir("smollm2-135m")
    assert not paper.needs_model_dir("gpt-4o-mini")


@pytest.mark.parametrize("key, value, message", [
    ("datasets", ["piqa", "nope"], r"config key datasets: unknown dataset\(s\) \['nope'\]"),
    ("methods", ["perplexity", "vibes"], r"config key methods: unknown UQ method\(s\) \['vibes'\]"),
    ("slms", ["no-such-model"], r"config key slms: .*no-such-model"),
])
def test_unknown_names_fail_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        grid(EMBEDDED, **{key: value}).check_names()


def test_calibration_keeps_the_listed_methods_the_grid_scores(caplog):
    """Narrowing ``methods`` leaves calibration data for the listed methods still scored, and says what it left
    out; only a list with nothing left, or an unknown name, is an error."""
    narrowed = grid(EMBEDDED, methods=["perplexity", "avg_token_prob"],
                    calibration={**EMBEDDED["calibration"], "methods": ["perplexity", "ood_probe"]})
    with caplog.at_level("WARNING", logger="uqroute.plan"):
        narrowed.check_names()
    assert narrowed.calibration_methods == ["perplexity"]
    assert "['ood_probe'] not among methods" in caplog.text
    with pytest.raises(ValueError, match=r"calibration.methods: none of \['ood_probe'\] is among methods"):
        grid(EMBEDDED, methods=["perplexity"],
             calibration={**EMBEDDED["calibration"], "methods": ["ood_probe"]}).check_names()
    with pytest.raises(ValueError, match=r"calibration.methods: unknown UQ method\(s\) \['vibes'\]"):
        grid(EMBEDDED, calibration={**EMBEDDED["calibration"], "methods": ["vibes"]}).check_names()
    assert grid(EMBEDDED, calibration={**EMBEDDED["calibration"], "methods": None}).calibration_methods == \
        EMBEDDED["methods"]


def test_the_data_comes_from_the_local_folder_where_it_exists_else_from_the_hub(tmp_path, caplog):
    """Offline: no hub is reached here; the choice of source is what is tested (the hub loader itself is tested
    with a faked ``datasets.load_dataset`` in tests/test_datasets.py)."""
    with caplog.at_level("INFO", logger="uqroute.datasets.registry"):
        assert grid(EMBEDDED, data_dir=str(tmp_path)).data_dir == tmp_path
        assert f"reading the local files under {tmp_path}" in caplog.text
        missing = tmp_path / "nowhere"
        assert grid(EMBEDDED, data_dir=str(missing)).data_dir is None
        assert f"data_dir {missing} does not exist; loading from the Hugging Face hub" in caplog.text
        assert grid(EMBEDDED, data_dir=None).data_dir is None
    # Where the folder is missing the probes learn as on the hub's splits (BoolQ's hub train split has passages).
    hub = grid(EMBEDDED, data_dir=None).probe_training("boolq")
    assert grid(EMBEDDED, data_dir=str(missing)).probe_training("boolq") == hub
