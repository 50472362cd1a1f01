# Config, pre-flight checks, wildcard constraints, the results paths, the input functions and the warm
# workers; the stage files (data, generate, uq, analysis, figures) hold only rules, as Snakemake's linter
# asks. What the config plans (the grid, the passes of a cell, the train splits of a probe, each job's
# settings and resources) is uqroute.plan.Grid, library code with its own tests: the input functions here
# only turn its plans into paths. Each path is spelled once, in uqroute.paths (a job's log and benchmark
# follow from the name and output of its rule, by job_log and job_benchmark); each setting reaches only
# the jobs whose output depends on it.

from pathlib import Path

from snakemake.logging import logger

from uqroute import paths
from uqroute.datasets import DATASET_NAMES, SPLITS, check_data_files
from uqroute.figure_families import FIGURE_FAMILIES, figure_family
from uqroute.gguf import check_model_files
from uqroute.jobs import run_job
from uqroute.models import model_spec
from uqroute.paper_figures import PAPER_FIGURES, missing_for, paper_figure
from uqroute.passes import BUDGET_SETTINGS, DEFAULT_HIDDEN, GRADED_PASSES, HIDDEN_PASSES, NEEDS_GREEDY
from uqroute.plan import UNGRADED_PASSES, Grid
from uqroute.uq.registry import load_plugins, method_spec
from uqroute.warm import WarmPool, default_workers, plain_job

RESULTS = config["results_dir"]
# A study with a results folder of its own keeps its logs and benchmarks in it, so two studies never share one.
LOGS = "logs" if RESULTS == "results" else f"{RESULTS}/logs"
BENCHMARKS = "benchmarks" if RESULTS == "results" else f"{RESULTS}/benchmarks"

load_plugins(config["plugins"])  # methods of other packages register themselves on import
GRID = Grid(config)
GRID.check_names()
SLMS, LLMS, DATASETS, METHODS = GRID.slms, GRID.llms, GRID.datasets, GRID.methods
CALIBRATION_METHODS, MODELS = GRID.calibration_methods, GRID.models
DATA_DIR = None if GRID.data_dir is None else str(GRID.data_dir)
# generation.one_job_per: cell makes every pass of an SLM's test split (the one cell with several passes)
# in one job, on one engine; each pass file stays a target, whose rebuild reruns its cell.
CELL_PASSES = GRID.cell_passes
# Where each SLM generates on transformers built as its hidden-state jobs' engine, its cells also make the
# hidden states its probes read, on the engine that made the greedy replies: the test cell, and a cell of
# the train split's greedy replies (generate_train_cell); the hidden-state rules then make none of them.
CELL_HIDDEN = {split: GRID.cell_hidden_passes(split) for split in ("test", "train")}


onstart:
    # Files are checked when a run starts (not while --lint or --list read the workflow), before any job.
    for name in MODELS:
        if GRID.engine_kind(name) != "openai" and not Path(path("model_dir", model=name)).exists():
            check_model_files(model_spec(name))
    if DATA_DIR is not None:
        check_data_files(DATASETS, Path(DATA_DIR))
    if workflow.local_exec and not workflow.use_threads:
        logger.warning("uqroute: jobs run without --force-use-threads (profiles/default sets it; was it skipped "
                       "with --workflow-profile?): each table and figure job will start a Snakemake of its own")


wildcard_constraints:
    model="|".join(MODELS),
    slm="|".join(SLMS),
    llm="|".join(LLMS),
    dataset="|".join(DATASETS),
    split="|".join(SPLITS),
    method="|".join(METHODS),
    number="|".join(str(number) for number in PAPER_FIGURES),


# ---- paths -------------------------------------------------------------------------------------


def path(kind, **fields):
    """The results path of ``kind`` (a template of uqroute.paths) with ``fields`` filled in."""
    return paths.results_path(RESULTS, kind, **fields)


def pattern(kind):
    """The same path with each field left as a Snakemake wildcard: a rule's output."""
    return paths.wildcard_path(RESULTS, kind)


def job_log(rule_name, output):
    """Each job's log, named by its rule's name and its output pattern's wildcards (logs/<name>/<wildcards>.log)."""
    return paths.job_record_path(LOGS, rule_name, output, "log")


def job_benchmark(rule_name, output):
    """The same for its benchmark: benchmarks/<rule>/<wildcards>.tsv."""
    return paths.job_record_path(BENCHMARKS, rule_name, output, "tsv")


def checkpoint_dir(wildcards, stage):
    """Finished batches of a long pass survive a killed job here (not a Snakemake output)."""
    return paths.checkpoint_path(RESULTS, stage, wildcards)

def pass_output(model, dataset, split, pass_name):
    """The pass table the analysis reads (a graded pass: after grading)."""
    return path("gen", model=model, dataset=dataset, split=split, pass_name=pass_name)


def llm_greedy(llm, dataset):
    return pass_output(llm, dataset, "test", "greedy")


def uq_file(slm, dataset, method):
    return path("uq", slm=slm, dataset=dataset, method=method)


def routing_file(slm, llm, dataset, method):
    return path("routing", slm=slm, llm=llm, dataset=dataset, method=method)


# ---- input functions of the model passes ---------------------------------------------------------


def model_inputs(model, kind=None):
    """A GGUF model is converted once to an fp32 folder that every job of that model loads (HF or vLLM)."""
    return {"model_dir": path("model_dir", model=model)} if GRID.needs_model_dir(model, kind) else {}


def greedy_replies(model, dataset, split):
    """The greedy replies, which the follow-up passes and hidden states read (a judge change leaves them)."""
    return path("replies", model=model, dataset=dataset, split=split, pass_name="greedy")


def cell_inputs(wildcards):
    """What every model pass of a (model, dataset, split) reads: its questions and the model's weights."""
    inputs = {"questions": path("data", dataset=wildcards.dataset, split=wildcards.split)}
    inputs.update(model_inputs(wildcards.model))
    return inputs


def generate_inputs(wildcards):
    inputs = cell_inputs(wildcards)
    if wildcards.pass_name in NEEDS_GREEDY:
        inputs["greedy"] = greedy_replies(wildcards.model, wildcards.dataset, wildcards.split)
    return inputs


def model_pass_kind(pass_name):
    """What a pass's model job writes: a graded pass's replies (rule grade makes its table), else the table."""
    return "replies" if pass_name in GRADED_PASSES else "gen"


def cell_outputs(split="test"):
    """What the cell job of ``split`` writes: each of its model passes (by pass name) and hidden-state passes."""
    outputs = {name: paths.wildcard_path(RESULTS, model_pass_kind(name), pass_name=name)
               for name in GRID.cell_passes_of(split)}
    return {**outputs, **{name: pattern(name) for name in CELL_HIDDEN[split]}}


def cell_pattern():
    """One of a cell's outputs: its wildcards are the cell's."""
    return next(iter(cell_outputs().values()))


def cell_settings(wildcards):
    return {name: GRID.pass_settings(wildcards.dataset, name) for name in GRID.cell_passes_of(wildcards.split)}


def cell_hidden_settings():
    """The hidden-state settings of the cell jobs that make hidden states (none for the others, whose params
    stay as they were)."""
    if not any(CELL_HIDDEN.values()):
        return {}
    return {"layer": config["hidden"]["layer"], "hidden_part_size": config["hidden"]["part_size"]}


def cell_checkpoint_dirs(wildcards):
    """The folders the per-pass and hidden-state jobs would use, so a cell job and those jobs resume each
    other's parts."""
    cell = [wildcards.model, wildcards.dataset, wildcards.split]
    dirs = {name: paths.checkpoint_path(RESULTS, "gen", cell + [name]) for name in GRID.cell_passes_of(wildcards.split)}
    return {**dirs, **{name: paths.checkpoint_path(RESULTS, name, cell) for name in CELL_HIDDEN[wildcards.split]}}


def cell_runtime(wildcards):
    """Minutes: those of the cell's passes, each hidden-state pass as many as its own job asks for."""
    model, split = wildcards.model, wildcards.split
    passes = sum(GRID.model_runtime(model, name) for name in GRID.cell_passes_of(split))
    return passes + len(CELL_HIDDEN[split]) * GRID.model_runtime(model)


def hidden_rule(name):
    """The name of the hidden-state pass rule for ``name``; hidden_states for the answered conversation."""
    return "hidden_states" if name == DEFAULT_HIDDEN else f"hidden_states_{name.removeprefix('hidden_')}"


def hidden_inputs(hidden):
    """The input function of a hidden-state pass's rule: questions, model, and the greedy reply it quotes (if so)."""

    def inputs(wildcards):
        found = {"questions": path("data", dataset=wildcards.dataset, split=wildcards.split)}
        if hidden.follows_greedy:
            found["greedy"] = greedy_replies(wildcards.model, wildcards.dataset, wildcards.split)
        found.update(model_inputs(wildcards.model, kind="hf"))
        return found

    return inputs


# ---- input functions of the UQ stage -------------------------------------------------------------


def probe_training_inputs(slm, method, datasets):
    """The train splits a probe of ``method`` learns from: its hidden states and graded greedy answers of each
    dataset."""
    hidden = method_spec(method).hidden
    return {
        "train_hidden": [path(hidden, model=slm, dataset=dataset, split="train") for dataset in datasets],
        "train_greedy": [pass_output(slm, dataset, "train", "greedy") for dataset in datasets],
    }


def uq_inputs(wildcards):
    slm, dataset, method = wildcards.slm, wildcards.dataset, wildcards.method
    spec = method_spec(method)
    inputs = {"questions": path("data", dataset=dataset, split="test")}
    for pass_name in spec.passes:
        inputs[pass_name] = pass_output(slm, dataset, "test", pass_name)
    if spec.needs_hidden:
        inputs["hidden"] = path(spec.hidden, model=slm, dataset=dataset, split="test")
        inputs.update(probe_training_inputs(slm, method, GRID.train_datasets(method, dataset)))
    return inputs


def holdout_uq_inputs(wildcards):
    """Test cells of every dataset but the hold-out, and the train splits of the same datasets (never the hold-out's)."""
    slm, method, others = wildcards.slm, wildcards.method, GRID.other_datasets(wildcards.dataset)
    return {
        "questions": [path("data", dataset=other, split="test") for other in others],
        "greedy": [pass_output(slm, other, "test", "greedy") for other in others],
        "hidden": [path(method_spec(method).hidden, model=slm, dataset=other, split="test") for other in others],
        **probe_training_inputs(slm, method, others),
    }


def all_uq():
    return [uq_file(slm, dataset, method) for slm in SLMS for dataset in DATASETS for method in METHODS]


def all_release_probes():
    return [path("release_probe", slm=slm, method=method) for slm in SLMS for method in GRID.released_probe_methods]


# ---- input functions of the analysis -------------------------------------------------------------


def all_routing():
    return [
        routing_file(slm, llm, dataset, method)
        for slm in SLMS
        for llm in LLMS
        for dataset in DATASETS
        for method in METHODS
    ]


def all_generalization():
    return [path("generalization", slm=slm, llm=llm, method=method, dataset=dataset)
            for slm, llm, dataset, method in GRID.generalization_cells]


def all_share_control():
    return [path("share_control", slm=slm, llm=llm, method=method, dataset=dataset)
            for slm, llm, dataset, method in GRID.generalization_cells]


def all_release():
    return [path("release", slm=slm, method=method) for slm in SLMS for method in CALIBRATION_METHODS]


def all_release_cards():
    return [path("release_card", slm=slm, method=method) for slm in SLMS for method in CALIBRATION_METHODS]


def release_card_inputs(wildcards):
    """A release file, the (SLM, method)'s generalization tables, and the SLM's pass tables the method reads
    (their dtype goes on the card; the UQ tables were made from them)."""
    slm, method = wildcards.slm, wildcards.method
    spec = method_spec(method)
    passes = [pass_output(slm, dataset, "test", name) for dataset in DATASETS for name in spec.passes]
    if spec.needs_hidden:
        passes += [path(spec.hidden, model=slm, dataset=dataset, split="test") for dataset in DATASETS]
    return {
        "calibration": path("release", slm=slm, method=method),
        "generalization": [path("generalization", slm=slm, llm=llm, method=method, dataset=dataset)
                           for cell_slm, llm, dataset, cell_method in GRID.generalization_cells
                           if (cell_slm, cell_method) == (slm, method)],
        "passes": passes,
    }


def calibration_uq(wildcards):
    """What the calibration set for a hold-out dataset pools: the other datasets' UQ tables, or for a method
    that learns from other datasets (the OOD probe) its scores from probes that never saw the hold-out."""
    if method_spec(wildcards.method).needs_train == "other_datasets":
        return [path("holdout_uq", slm=wildcards.slm, method=wildcards.method, dataset=wildcards.dataset)]
    return [uq_file(wildcards.slm, other, wildcards.method) for other in GRID.other_datasets(wildcards.dataset)]


def truncation_inputs():
    """Every generating pass table the analysis reads, and the model folders that hold their tokenizers."""
    gen = [pass_output(*table) for table in GRID.generating_pass_tables]
    folders = [path("model_dir", model=slm) for slm in GRID.retokenized_slms if model_spec(slm).is_gguf]
    return {"gen": gen, "models": folders}


def grading_inputs():
    """Every graded pass table the analysis reads."""
    return [pass_output(*table) for table in GRID.graded_pass_tables]


def tokenizer_sources():
    """Where each re-tokenized SLM's tokenizer loads from: a GGUF model's fp32 folder, else its hub id (None
    for an API-only model: the job then reports its text-only replies as uncounted)."""
    return {slm: path("model_dir", model=slm) if model_spec(slm).is_gguf else model_spec(slm).hub_id
            for slm in GRID.retokenized_slms}


def all_tables():
    return [
        path("alignment"),
        path("comparisons"),
        path("truncation"),
        path("grading"),
        path("routing_metrics"),
        path("relative_accuracy"),
        path("findings"),
        *all_share_control(),
        *all_generalization(),
        *all_release(),
        *all_release_cards(),
        *all_release_probes(),
        *([config["findings_doc"]] if config.get("findings_doc") else []),
    ]


# ---- input functions of the figures --------------------------------------------------------------


FIGURE_FORMATS = ("pdf", "png")


def all_figures():
    """Every figure of every family: one per value of the family's scope (e.g. per LLM and dataset)."""
    return [family.path(RESULTS, ext, **cell) for family in FIGURE_FAMILIES.values() for cell in family.cells(GRID)
            for ext in FIGURE_FORMATS]


def figure_inputs(family):
    """The input function of ``family``'s rule: the tables of the one figure its wildcards name."""

    def inputs(wildcards):
        cell = {field: getattr(wildcards, field) for field in family.scope}
        return family.inputs(GRID, family.cell_pairs(GRID, **cell), RESULTS)

    return inputs


def paper_figure_inputs(wildcards):
    """The tables of the cells the paper's Figure N shows."""
    figure = paper_figure(wildcards.number)
    missing = missing_for(figure, slms=SLMS, llms=LLMS, datasets=DATASETS, methods=METHODS)
    if missing:
        raise ValueError(f"paper figure {wildcards.number} ({figure.caption}) needs {', '.join(missing)}, which "
                         "the config does not list; build it with --configfile config/paper.yaml")
    return figure_family(figure.family).inputs(GRID, figure.pairs, RESULTS)


def all_paper_figures():
    return [path("paper_figure", number=number, ext="pdf") for number in PAPER_FIGURES]


# Table, figure and UQ jobs (everything but a model pass) run their job function in a warm worker of the
# main Snakemake process: each would otherwise spend most of its time starting Python and importing its
# libraries. That needs the jobs in threads of this process, which profiles/default asks for
# (force-use-threads); without it Snakemake starts a whole Snakemake for each job. Model jobs run the same
# entry, workflow/scripts/job.py, in a process of their own (their engines spawn, and take conda envs).
# One worker per core the run may fill: --cores, or --local-cores where jobs go to a cluster (both unset in a
# plan or a lint).
WARM = WarmPool(default_workers(workflow.resource_settings.local_cores if workflow.non_local_exec
                                else workflow.resource_settings.cores), preload=config["plugins"])


def warm_job(input, output, params, wildcards, threads, resources, log, rule):
    """Run the job function the rule names (params.job) on what a script directive would hand it (in plain
    values: uqroute.warm.plain_job), in a warm worker from the main process, in this process where Snakemake
    runs the job alone (a cluster node). The rules hand over every argument of their run block; a job reads
    no resources."""
    job = plain_job(rule=rule, input=input, output=output, params=params, wildcards=wildcards, threads=threads,
                    log=log)
    if workflow.is_main_process:
        WARM.run(run_job, job)
    else:
        run_job(job)
