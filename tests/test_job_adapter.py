"""One entry for every job (uqroute.jobs.run_job): a rule names its job function once, in params.job, and the
rule's named inputs, outputs, params, wildcards and threads reach the function's arguments of the same names.

The plans are Snakemake's own (its API, in this process): every job of the embedded default and of the
paper's grid is mapped onto its function exactly as the job would be run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.iocontainers import InputFiles, Namedlist, OutputFiles, Params, Wildcards

from conftest import DATA_DIR
from uqroute import REPO_ROOT
from uqroute.jobs import job_arguments, job_function, run_job
from workflow_runs import EMBEDDED_CONFIG, planned_job_calls

# Rules that only gather targets: they run nothing.
TARGET_RULES = {"all", "tables", "figures", "paper_figures"}


def embedded(tmp_path: Path) -> list[Path]:
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"data_dir": str(DATA_DIR)}))
    return [EMBEDDED_CONFIG, override]


def test_every_job_of_the_embedded_default_maps_onto_the_function_its_rule_names(tmp_path):
    calls = planned_job_calls(tmp_path, configfiles=embedded(tmp_path))
    assert {rule for rule, name, _ in calls if name is None} == {"all"}
    by_rule = {}
    for rule, name, arguments in calls:
        by_rule.setdefault(rule, []).append((name, arguments))
    assert set(by_rule) >= {"dataset", "prepare_model", "generate_cell", "generate_train_cell", "grade", "uq",
                            "holdout_uq", "release_probe", "alignment", "truncation", "findings",
                            "figure_routing_curves"}
    # A model job: the cell's passes and hidden states as named outputs, engine options, settings and the
    # hidden-state settings from params, the model from its wildcard, threads from the rule.
    name, cell = by_rule["generate_cell"][0]
    assert name == "generate.generate_cell"
    assert cell["model"] == "smollm2-135m" and cell["threads"] >= 1
    assert set(cell["outputs"]) == set(cell["settings"]) | {"hidden"} and set(cell["settings"]) >= {"greedy", "ptrue"}
    assert (cell["layer"], cell["hidden_part_size"]) == (-8, 16)
    assert cell["questions"].endswith("test.parquet") and cell["model_dir"].endswith("smollm2-135m")
    name, train = by_rule["generate_train_cell"][0]
    assert name == "generate.generate_cell" and set(train["outputs"]) == {"greedy", "hidden"}
    assert train["questions"].endswith("train.parquet") and set(train["settings"]) == {"greedy"}
    # A UQ job: its pass tables by pass name (the function's **passes), its wildcards method and dataset.
    for name, arguments in by_rule["uq"]:
        assert name == "uq.uq_score"
        from uqroute.uq.registry import method_spec

        spec = method_spec(arguments["method"])
        assert set(spec.passes) <= set(arguments) and arguments["output"].endswith(f"{arguments['method']}.parquet")
        assert f"/{arguments['dataset']}/" in arguments["output"]
        if spec.needs_train == "other_datasets":
            assert isinstance(arguments["train_hidden"], list) and len(arguments["train_hidden"]) == 3
    # A figure: every named input as a list, the PNG and PDF outputs by name.
    name, figure = by_rule["figure_routing_curves"][0]
    assert name == "figures.figure" and figure["family"] == "routing_curves"
    assert set(figure["inputs"]) == {"curves", "uq"} and all(isinstance(v, list) for v in figure["inputs"].values())
    assert figure["png"].endswith(".png") and figure["pdf"] == figure["png"][:-4] + ".pdf"
    # A table job with a single input file given where the function takes a list of them.
    (name, release), *_ = by_rule["release_probe"]
    assert name == "uq.release_probe" and release["slm"] == "smollm2-135m" and len(release["train_greedy"]) == 4


def test_every_job_of_the_paper_grid_maps_onto_its_function(tmp_path):
    """Every rule of the paper's grid (per-pass model jobs, LLMs behind the API, paper figures): no job needs an
    argument its rule does not give, and no rule gives one its function does not take."""
    paper = REPO_ROOT / "config" / "paper.yaml"
    calls = planned_job_calls(tmp_path, "all", "paper_figures", configfiles=[paper])
    rules = {rule for rule, name, _ in calls if name is not None}
    assert {"generate", "generate_replies", "paper_figure", "grade"} <= rules
    assert {rule for rule, name, _ in calls if name is None} <= TARGET_RULES


def _job(function_params: dict, inputs: dict, outputs, wildcards: dict | None = None):
    output = OutputFiles(outputs) if isinstance(outputs, list) else OutputFiles(fromdict=outputs)
    return dict(input=InputFiles(fromdict=inputs), output=output, params=Params(fromdict=function_params),
                wildcards=Wildcards(fromdict=wildcards or {}))


def test_a_key_the_function_does_not_take_is_an_error_naming_rule_and_key():
    function = job_function("analysis.routing_metrics")
    job = _job({"job": "analysis.routing_metrics", "step": 0.1}, {"curves": ["a.parquet"]}, ["out.parquet"])
    with pytest.raises(ValueError, match=r"rule routing_metrics \(job analysis.routing_metrics\).*'step'"):
        job_arguments(function, rule="routing_metrics", **job)


def test_an_argument_nothing_gives_is_an_error_naming_it():
    function = job_function("analysis.generalization")
    job = _job({"job": "analysis.generalization", "step": 0.1, "bootstrap": {}},
               {"uq": "u.parquet", "llm": "l.parquet"},
               ["out.parquet"])
    with pytest.raises(ValueError, match=r"rule generalization .*\['calibration'\]"):
        job_arguments(function, rule="generalization", **job)


def test_a_single_file_becomes_a_list_where_the_function_takes_several_and_wildcards_it_lacks_are_left_out():
    function = job_function("analysis.routing_metrics")
    job = _job({"job": "analysis.routing_metrics"}, {"curves": "one.parquet"}, ["out.parquet"],
               wildcards={"slm": "s"})
    assert job_arguments(function, rule="routing_metrics", **job) == {"curves": ["one.parquet"],
                                                                      "output": "out.parquet"}


def test_an_unknown_job_name_and_a_rule_without_one_say_so(tmp_path):
    with pytest.raises(ValueError, match="no job function 'analysis.nope'"):
        job_function("analysis.nope")

    class Job:
        rule, params, log = "mine", Params(fromdict={}), Namedlist([str(tmp_path / "mine.log")])

    with pytest.raises(ValueError, match="rule mine: params.job must name its job function"):
        run_job(Job())


def test_run_job_runs_the_named_function_and_logs_to_the_job_log(tmp_path):
    """A real job through the entry: a calibration set from two UQ tables, its log written."""
    import numpy as np
    import pandas as pd

    from uqroute.io import read_parquet, write_parquet
    from uqroute.paths import results_path

    rng = np.random.default_rng(0)
    uq = []
    for dataset in ("boolq", "piqa"):
        path = results_path(str(tmp_path / "results"), "uq", slm="s", dataset=dataset, method="perplexity")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_parquet(pd.DataFrame({"id": [f"{dataset}-{i}" for i in range(40)], "confidence": rng.random(40),
                                    "correct": rng.random(40) > 0.5, "valid": True}), path)
        uq.append(path)
    output = str(tmp_path / "calibration.parquet")

    class Job:
        rule = "calibration_set"
        input = InputFiles(fromdict={"uq": uq})
        output_ = OutputFiles([output])
        params = Params(fromdict={"job": "analysis.calibration_set", "n_bins": 4, "fraction": 0.5, "seeds": [50]})
        wildcards = Wildcards(fromdict={"slm": "s", "method": "perplexity", "dataset": "arc_easy"})
        threads = 1
        log = Namedlist([str(tmp_path / "calibration.log")])

    Job.output = Job.output_
    run_job(Job())
    table = read_parquet(output)
    assert len(table) > 0 and (table["seed"] == 50).all()
    assert Path(tmp_path / "calibration.log").exists()
