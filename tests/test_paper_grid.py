"""The paper's grid (config/paper.yaml) planned on the SLURM profile, checked by dry runs.

No SLURM, GPU or hub is needed: a dry run plans every job and prints its resources without
submitting anything. The expected job counts are derived from the config, the method -> pass
table and the dataset registry, so they follow the grid when the config changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from uqroute import REPO_ROOT
from uqroute.models import model_spec
from uqroute.paper_figures import PAPER_FIGURES
from uqroute.plan import Grid
from uqroute.passes import GRADED_PASSES
from uqroute.uq import pass_requirements, probe_methods
from workflow_runs import EMBEDDED_CONFIG, count_rules, lint, plan, plan_error, printed_job_counts, printed_jobs

# The paper grid's dry runs through the SLURM profile (a CLI feature) run as subprocesses: slow.
slow = pytest.mark.slow

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PAPER = REPO_ROOT / "config" / "paper.yaml"
PROFILE = REPO_ROOT / "profiles" / "slurm"
GPU_RULES = frozenset({"generate", "generate_replies", "generate_cell", "hidden_states"})
# Rules that load a model or download data: the reviewer's figure path must schedule none of them.
MODEL_RULES = frozenset({"dataset", "prepare_model", "generate", "generate_replies", "generate_cell", "hidden_states"})
OLD_MTIME = 1_600_000_000  # 2020: older than any checkout, like Parquet files copied in after a fresh clone


def paper_config() -> dict:
    return yaml.safe_load(PAPER.read_text())


def deployment_override() -> list[str]:
    """The profile deploys conda envs, and even a dry run asks `conda info`; this CPU test machine has no
    conda, so the dry run swaps in a deployment method no rule uses. With conda installed, none is swapped."""
    return [] if shutil.which("conda") else ["--software-deployment-method", "env-modules"]


def snakemake(args: list[str], workdir: Path, *, profile: bool = False) -> subprocess.CompletedProcess:
    """Targets must come first in `args`: options such as --quiet and --rerun-triggers take several values."""
    command = [str(SNAKEMAKE), *args, "-n", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(PAPER), "--replace-workflow-config"]
    if profile:
        command += ["--profile", str(PROFILE), *deployment_override()]
    else:
        command += ["--cores", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def expected_counts(config: dict) -> dict[str, int]:
    """Jobs per rule for the whole grid, from the paper's design."""
    slms, llms, datasets, methods = config["slms"], config["llms"], config["datasets"], config["methods"]
    calibration = config["calibration"]["methods"] or methods
    assert not set(slms) & set(llms), "an LLM that is also an SLM would share its greedy pass"
    test_passes = set().union(*(pass_requirements(method) for method in methods))
    graded = test_passes & set(GRADED_PASSES)
    # The train splits the probes read (uqroute.plan, checked against the paper's rules in tests/test_plan.py).
    train = Grid(config).trained_on
    probes_read_test = bool(probe_methods() & set(methods))
    # Hidden states always run transformers, which needs a converted copy of a GGUF model.
    gguf_slms = [slm for slm in slms if model_spec(slm).source.startswith("gguf")]
    n_slm, n_llm, n_data, n_method, n_calib = len(slms), len(llms), len(datasets), len(methods), len(calibration)
    counts = {
        "dataset": n_data + len(train),
        "prepare_model": len(gguf_slms),
        # each SLM: every test pass its methods read + greedy on each train split; each LLM: greedy on test.
        # A graded pass is a model job writing replies and a grading job.
        "generate": n_slm * n_data * len(test_passes - graded),
        "generate_replies": n_slm * (n_data * len(graded) + len(train)) + n_llm * n_data,
        "grade": n_slm * (n_data * len(graded) + len(train)) + n_llm * n_data,
        "hidden_states": n_slm * (n_data * probes_read_test + len(train)),
        "uq": n_slm * n_data * n_method,
        "routing_curve": n_slm * n_llm * n_data * n_method,
        "alignment": 1,
        "routing_metrics": 1,
        "relative_accuracy": 1,
        "findings": 1,
        "truncation": 1,  # how often each pass's replies used their whole budget
        "grading": 1,  # how each graded pass's replies were read and graded
        "calibration_set": n_slm * n_calib * n_data,  # leave-one-dataset-out, per SLM and method
        # the OOD probe's pool for each hold-out, from probes that never saw it
        "holdout_uq": n_slm * n_data * ("ood_probe" in calibration),
        "generalization": n_slm * n_llm * n_calib * n_data,
        "share_control": n_slm * n_llm * n_calib * n_data,  # the static threshold against the share controller
        "release_calibration": n_slm * n_calib,
        "release_card": n_slm * n_calib,  # beside each release file, what its thresholds did on held-out data
        "release_probe": n_slm * ("ood_probe" in calibration),  # the OOD probe on every dataset, for the router
        "figure_auroc_heatmaps": 1,
        "figure_ratio_fidelity": 1,
        "figure_share_control": n_slm,
        "figure_routing_curves": n_llm * n_data,
        "figure_relative_accuracy": n_llm * n_data,
        "figure_generalization": n_llm * n_data,
        "figure_confidence_distributions": n_slm,
        "all": 1,
    }
    return {rule: n for rule, n in counts.items() if n}


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, float]:
    """`snakemake -n --profile profiles/slurm --configfile config/paper.yaml` in an empty results folder."""
    started = time.perf_counter()
    result = snakemake([], tmp_path_factory.mktemp("paper"), profile=True)
    return result, time.perf_counter() - started


@pytest.fixture(scope="module")
def passes_present(tmp_path_factory) -> Path:
    """A results folder holding every model output of the grid (data, graded passes, hidden states) and nothing else,
    all older than the checkout: the state after copying the Parquet files into a fresh clone."""
    workdir = tmp_path_factory.mktemp("reviewer")
    # An empty workdir has no config/config.yaml for paper.yaml to be merged over (the CLI's
    # --replace-workflow-config); so do the reviewer tests' plans in `workdir`.
    for job in plan(tmp_path_factory.mktemp("grid"), configfiles=[PAPER]):
        if job["rule"] in MODEL_RULES | {"grade"}:  # the pass tables, graded
            for output in job["output"]:
                path = workdir / output
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                os.utime(path, (OLD_MTIME, OLD_MTIME))
    return workdir


def test_paper_config_is_the_papers_grid():
    config = paper_config()
    assert len(config["slms"]) == 8 and len(config["llms"]) == 2
    assert len(config["datasets"]) == 14 and len(config["methods"]) == 8
    assert config["data_dir"] is None and config["subset"]["max_test"] is None
    # Probes learn from an equal, seeded subsample of each train split (the paper: "a fixed subsample").
    assert config["subset"]["max_train"] == 2000 and config["subset"]["seed"] == 50
    generation = config["generation"]
    assert (generation["seed"], generation["top_p"], generation["n_samples"], generation["sample_temperature"]) == (
        50, 1.0, 5, 1.0)
    assert (config["calibration"]["n_bins"], config["calibration"]["fraction"]) == (30, 0.1)
    assert config["calibration"]["seeds"] == [50, 51, 52]
    assert config["judge"] == {"engine": "openai", "model": "gpt-4o-mini"}
    for name in config["slms"] + config["llms"]:
        model_spec(name)  # KeyError naming the model if the registry lacks it


@slow
def test_dry_run_plans_the_whole_grid(paper_dry_run):
    result, seconds = paper_dry_run
    print(f"paper dry run: {seconds:.1f} s wall")
    assert printed_job_counts(result.stdout) == expected_counts(paper_config())


@slow
def test_no_calibration_set_learns_from_its_holdout_dataset(paper_dry_run):
    """Follow each hold-out calibration set's inputs back to the files they were made from
    (down to train splits); none belongs to the hold-out dataset."""
    jobs = printed_jobs(paper_dry_run[0].stdout)
    made_by = {output: job for job in jobs for output in job["output"]}

    def sources(path, seen):
        if path in seen:
            return
        seen.add(path)
        for upstream in made_by[path]["input"] if path in made_by else []:
            sources(upstream, seen)

    checked = 0
    for job in jobs:
        if job["rule"] != "calibration_set":
            continue
        holdout, seen = job["wildcards"]["dataset"], set()
        for path in job["input"]:
            sources(path, seen)
        leaked = sorted(p for p in seen if f"/{holdout}/" in p or p.endswith(f"/{holdout}.parquet"))
        assert not leaked, (job["wildcards"], leaked[:5])
        if job["wildcards"]["method"] == "ood_probe":
            assert any("/train.parquet" in p for p in seen), "the probes' training data was traced"
        checked += 1
    assert checked == expected_counts(paper_config())["calibration_set"]


@slow
def test_model_jobs_request_their_gpus_and_nothing_else_does(paper_dry_run):
    config = paper_config()
    jobs = printed_jobs(paper_dry_run[0].stdout)
    assert len(jobs) == sum(expected_counts(config).values())
    for job in jobs:
        resources, where = job["resources"], f"{job['rule']} {job['wildcards']}"
        gpus = int(resources.get("gpu", 0))
        if job["rule"] in GPU_RULES:
            model = job["wildcards"]["model"]
            engine = config["engines"][model]
            if job["rule"] == "hidden_states":
                expected = 1  # transformers on one GPU, whatever the generation engine
            elif engine["kind"] == "openai":
                expected = 0
            else:
                expected = engine.get("tensor_parallel_size", model_spec(model).tensor_parallel_size)
            assert gpus == expected, where
            if job["rule"] in ("generate", "generate_replies"):
                # A model pass calls the API only for an API model; grading has its own jobs.
                assert int(resources["openai_requests"]) == (engine["kind"] == "openai"), where
            assert resources["nodes"] == "1", where  # tensor-parallel GPUs must share a node
            assert resources["gpu_model"] == "", where  # paper.yaml asks for no GPU type
        else:
            assert gpus == 0, where
            if job["rule"] == "grade":
                # GPT-4o-mini judges the free-form answers (paper.yaml): each grading job takes an API slot.
                assert int(resources["openai_requests"]) == 1, where
        # The SLURM plugin picks the partition from profiles/slurm/partitions.yaml by the GPU count
        # (tests/test_slurm.py checks its choices): neither the workflow nor the profile names one.
        assert "slurm_partition" not in resources, where
    tensor_parallel = {int(job["resources"]["gpu"]) for job in jobs
                       if job["rule"] == "generate_replies" and job["wildcards"]["model"] == "llama-3.1-70b"}
    assert tensor_parallel == {4}


def test_every_job_that_reserves_a_gpu_runs_its_model_there():
    """The engine options each model rule passes under config/paper.yaml (uqroute.plan, which the rules call)."""
    grid = Grid(paper_config())
    for slm in grid.slms:
        # hidden_states: transformers on the reserved GPU, in the checkpoint's dtype (bf16 for these models)
        assert grid.gpus(slm, kind="hf") == 1
        assert grid.engine_options(slm, kind="hf") == {"kind": "hf", "device": "cuda", "dtype": "auto"}
        # generate: vLLM on its one GPU
        assert grid.gpus(slm) == 1
        assert grid.engine_options(slm) == {
            "kind": "vllm", "tensor_parallel_size": 1, "dtype": "auto", "gpu_memory_utilization": 0.9}
    assert grid.gpus("llama-3.1-70b") == 4 == grid.engine_options("llama-3.1-70b")["tensor_parallel_size"]
    assert grid.gpus("gpt-4o-mini") == 0 and grid.engine_options("gpt-4o-mini") == {"kind": "openai"}


def test_lint_is_clean(tmp_path, capsys):
    assert not lint(tmp_path, [PAPER]), capsys.readouterr().out[-3000:]


def test_one_cell_builds_only_what_it_needs(tmp_path):
    config = paper_config()
    slm, dataset = config["slms"][0], config["datasets"][0]
    jobs = plan(tmp_path, f"results/uq/{slm}/{dataset}/perplexity.parquet", configfiles=[PAPER])
    assert count_rules(jobs) == {"dataset": 1, "generate_replies": 1, "grade": 1, "uq": 1}


@slow
def test_reviewer_rebuilds_figures_without_a_model(passes_present):
    config = paper_config()
    n_slm, n_llm, n_data = len(config["slms"]), len(config["llms"]), len(config["datasets"])
    # The model scripts of a fresh clone are newer than the copied Parquet files, and Snakemake's code trigger
    # compares them: with the default triggers every model job is planned again. (Table rules run their script
    # in a warm worker from a `run:` block, whose code is what the trigger compares.)
    default = count_rules(plan(passes_present, "figures", configfiles=[PAPER]))
    assert default.get("generate") and default.get("generate_replies"), default
    planned = count_rules(plan(passes_present, "figures", configfiles=[PAPER], rerun_triggers=["mtime"]))
    assert not MODEL_RULES & set(planned), planned
    assert planned["figure_routing_curves"] == n_llm * n_data
    assert planned["figure_confidence_distributions"] == n_slm
    assert planned["figures"] == 1


@slow
def test_reviewer_names_a_figure_by_its_number(passes_present):
    """`snakemake paper_figures` draws results/paper/fig1.pdf ... fig17.pdf from the tables, without a model."""
    planned_jobs = plan(passes_present, "paper_figures", configfiles=[PAPER], rerun_triggers=["mtime"])
    planned = count_rules(planned_jobs)
    assert not MODEL_RULES & set(planned), planned
    assert planned["paper_figure"] == len(PAPER_FIGURES) == 17 and planned["paper_figures"] == 1
    jobs = {job["wildcards"]["number"]: job for job in planned_jobs if job["rule"] == "paper_figure"}
    assert sorted(jobs, key=int) == [str(n) for n in range(1, 18)]
    assert jobs["2"]["output"] == ["results/paper/fig2.pdf", "results/paper/fig2.png"]
    # Fig. 2 reads only the routing curves of its two (LLM, dataset) pairs: every SLM and method of each.
    config = paper_config()
    curves = [p for p in jobs["2"]["input"] if p.startswith("results/routing/")]
    pairs = {tuple(p.split("/")[3:5]) for p in curves}
    assert pairs == {("llama-3.1-70b", "openbookqa"), ("gpt-4o-mini", "social_iqa")}
    assert len(curves) == 2 * len(config["slms"]) * len(config["methods"])


def test_a_paper_figure_outside_the_paper_grid_names_what_is_missing(tmp_path):
    """The embedded default has neither Llama-3.1-70B nor GPT-4o-mini: asking for Fig. 2 says so."""
    log = plan_error(tmp_path, "results/paper/fig2.pdf", configfiles=[EMBEDDED_CONFIG])
    assert "paper figure 2" in log and "needs LLM gpt-4o-mini, LLM llama-3.1-70b" in log and "config/paper.yaml" in log


@slow
def test_forcerun_on_a_pass_reruns_it_and_what_reads_it(passes_present):
    config = paper_config()
    slm, dataset = config["slms"][0], config["datasets"][0]
    target = f"results/uq/{slm}/{dataset}/p_true.parquet"
    unforced = count_rules(plan(passes_present, target, configfiles=[PAPER], rerun_triggers=["mtime"]))
    assert unforced == {"uq": 1}
    forced = count_rules(plan(passes_present, target, configfiles=[PAPER], rerun_triggers=["mtime"],
                              forcerun=["generate", "generate_replies"]))
    # p(True) reads the greedy pass (replies, then grading) and the ptrue pass.
    assert forced == {"generate": 1, "generate_replies": 1, "grade": 1, "uq": 1}


@slow
def test_a_cell_job_reserves_its_models_gpu(tmp_path):
    """generation.one_job_per: cell on the SLURM profile: the job making an SLM's test passes asks for one
    GPU on one node, like the pass jobs it replaces, and runs long enough for all five passes."""
    config = paper_config()
    slm, dataset = config["slms"][0], config["datasets"][0]
    target = f"results/gen/{slm}/{dataset}/test/sample.parquet"
    result = snakemake([target, "--config", "generation={one_job_per: cell}"], tmp_path, profile=True)
    jobs = [job for job in printed_jobs(result.stdout) if job["rule"] in GPU_RULES]
    assert [job["rule"] for job in jobs] == ["generate_cell"]
    resources = jobs[0]["resources"]
    assert (resources["gpu"], resources["nodes"]) == ("1", "1")
    per_pass = printed_jobs(snakemake([target], tmp_path / "per-pass", profile=True).stdout)
    sample_job = next(job for job in per_pass if job["rule"] == "generate")
    assert int(resources["runtime"]) > int(sample_job["resources"]["runtime"])
    assert {output.rsplit("/", 1)[1] for output in jobs[0]["output"]} == {
        "greedy.replies.parquet", "verbal1s.replies.parquet", "sample.parquet", "verbal2s.parquet", "ptrue.parquet"}
