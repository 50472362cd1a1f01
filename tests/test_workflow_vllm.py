"""The embedded DAG with generation on vLLM's CPU build (config/vllm-cpu.yaml), to the same contracts.

Same checks as tests/test_workflow_e2e.py on a smaller slice: two datasets instead of three, six questions
instead of ten, and the six methods that read the model's replies only. The SLM's cell job per dataset starts a
vLLM engine (6-13 s on an idle 2-core machine, its core in the job's process, plus the job's imports). The LLM
answers on transformers here (a third config file over the overlay): its greedy pass is the same rule on the same
engine code as the SLM's, and a grid that mixes engines is shown on the way. Two datasets still cover
leave-one-dataset-out calibration and a free-form numeric and a multiple-choice dataset.

Left out, and where they are shown: the two probes would add each dataset's train split (its greedy replies, one
more vLLM start-up per dataset) and the hidden-state jobs, which run on transformers whatever engine generates:
those jobs run in tests/test_workflow_e2e.py, and tests/test_job_granularity.py plans them for an SLM on vLLM.
"""

from __future__ import annotations

import pytest
import yaml

from workflow_runs import (LLM, METHODS, SLM, check_contracts, check_figures, check_model_passes_ran_once,
                           check_tables_match_contracts, run_workflow, tiny_config)
from uqroute import REPO_ROOT
from uqroute.uq.registry import method_spec

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.vllm]

DATASETS = ["multiarith", "commonsenseqa"]
OVERLAY = REPO_ROOT / "config" / "vllm-cpu.yaml"
# The methods that read the replies only: no train split, no hidden states.
REPLY_METHODS = [method for method in METHODS if method_spec(method).hidden is None]


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory, data_dir, smollm2_dir, gemma3_dir):
    workdir = tmp_path_factory.mktemp("e2e-vllm")
    config = tiny_config(data_dir, DATASETS)
    config["methods"] = REPLY_METHODS
    # Six questions a split and a shorter numeric budget: each engine's decoding (the multiarith cell's samples,
    # 5 per question, above all) shrinks; the start-ups, which no slice size changes, stay.
    config["subset"].update(max_test=6, max_train=6)
    config["generation"]["max_new_tokens"]["ff_num"] = 24
    llm_on_transformers = workdir / "config" / "llm-on-transformers.yaml"
    llm_on_transformers.parent.mkdir(parents=True, exist_ok=True)
    llm_on_transformers.write_text(yaml.safe_dump({"engines": {LLM: {"kind": "hf"}}}))
    result = run_workflow(workdir, data_dir, {SLM: smollm2_dir, LLM: gemma3_dir},
                          "--configfile", str(workdir / "config" / "config.yaml"), str(OVERLAY),
                          str(llm_on_transformers), config=config)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, result


def test_generation_ran_on_vllm_and_the_llm_on_transformers(vllm_run):
    workdir, _ = vllm_run
    # The overlay makes the SLM's test passes in one job per dataset (one engine start-up, not five).
    cell_logs = sorted((workdir / "logs" / "generate_cell").rglob("*.log"))
    assert len(cell_logs) == len(DATASETS)
    assert all(p.read_text().count("vLLM engine started") == 1 for p in cell_logs)
    generate_logs = sorted((workdir / "logs" / "generate").rglob("*.log"))
    assert len(generate_logs) == len(DATASETS) and all(LLM in p.parts for p in generate_logs)
    assert not any("vLLM engine started" in p.read_text() for p in generate_logs)
    # No train split and no hidden states: the methods run read the replies only.
    assert not (workdir / "results" / "hidden").exists() and not list((workdir / "results" / "gen").rglob("train"))


def test_every_contract_table_exists(vllm_run):
    check_contracts(vllm_run[0])


def test_every_table_matches_docs_contracts(vllm_run):
    check_tables_match_contracts(vllm_run[0] / "results", absent={
        "holdout-uq/{slm}/{method}/without-{dataset}.parquet": "the OOD probe's scores; this run holds no probe",
        "hidden/{model}/{dataset}/{split}.parquet": "the probes' pass; this run holds no probe",
        "hidden/{model}/{dataset}/{split}.question.parquet": "P(IK)'s pass; this run's methods hold no P(IK)"})


def test_every_figure_family_is_drawn(vllm_run):
    check_figures(vllm_run[0])


def test_no_model_pass_runs_twice(vllm_run):
    workdir, result = vllm_run
    check_model_passes_ran_once(workdir, result.stdout + result.stderr)
