# Config access, wildcard constraints, pre-flight checks, the results paths and the input functions.
# Stage files (data, generate, uq, analysis, figures) hold only rules. Each path is spelled once, in
# uqroute.paths; each setting reaches only the jobs whose output depends on it.

from pathlib import Path

from snakemake.logging import logger

from uqroute import paths
from uqroute.datasets import DATASET_NAMES, SPLITS, check_data_files, dataset_info
from uqroute.datasets import probe_training as dataset_probe_training
from uqroute.engines.options import job_engine_options, job_gpus
from uqroute.gguf import check_model_files
from uqroute.models import model_spec
from uqroute.paper_figures import PAPER_FIGURES, missing_for, paper_figure
from uqroute.passes import GENERATING_PASSES, GRADED_PASSES, NEEDS_GREEDY, PASS_NAMES, pass_settings
from uqroute.uq.registry import METHOD_NAMES, PROBE_METHODS, method_spec
from uqroute.jobs import run_job
from uqroute.warm import WarmPool, default_workers

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"

SLMS = list(config["slms"])
LLMS = list(config["llms"])
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])
CALIBRATION_METHODS = list(config["calibration"]["methods"] or METHODS)
MODELS = list(dict.fromkeys(SLMS + LLMS))
DATA_DIR = config["data_dir"]
UNGRADED_PASSES = [name for name in PASS_NAMES if name not in GRADED_PASSES]


def _slm_test_passes():
    """The passes an SLM's test split needs: greedy (hidden states read it) and those the methods read."""
    needed = {"greedy"}.union(*(method_spec(method).passes for method in METHODS))
    return [name for name in PASS_NAMES if name in needed]


# generation.one_job_per: cell makes every pass of an SLM's test split (the one cell with several passes)
# in one job, on one engine; each pass file stays a target, whose rebuild reruns its cell.
CELL_PASSES = _slm_test_passes() if config["generation"]["one_job_per"] == "cell" else []
if len(CELL_PASSES) < 2:
    CELL_PASSES = []


def _known(key, names, known, what):
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"config key {key}: unknown {what} {unknown}; known: {', '.join(known)}")


def _check_names():
    """Names the config uses must exist in the registries (cheap: no file is read)."""
    _known("datasets", DATASETS, DATASET_NAMES, "dataset(s)")
    _known("methods", METHODS, METHOD_NAMES, "UQ method(s)")
    _known("calibration.methods", CALIBRATION_METHODS, METHODS, "method(s), not in methods")
    for key, names in (("slms", SLMS), ("llms", LLMS), ("engines", list(config["engines"]))):
        for name in names:
            try:
                model_spec(name)
            except KeyError as error:
                raise ValueError(f"config key {key}: {error}") from None
    if config["judge"]["engine"] == "openai":
        if "model" not in config["judge"]:
            raise ValueError("config key judge.model is required when judge.engine is openai")
        try:
            model_spec(config["judge"]["model"])
        except KeyError as error:
            raise ValueError(f"config key judge.model: {error}") from None


_check_names()


onstart:
    # Files are checked when a run starts (not while --lint or --list read the workflow), before any job.
    for name in MODELS:
        if engine_kind(name) != "openai" and not Path(path("model_dir", model=name)).exists():
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


def checkpoint_dir(wildcards, stage):
    """Finished batches of a long pass survive a killed job here (not a Snakemake output)."""
    return paths.checkpoint_path(RESULTS, stage, wildcards)


# ---- models, engines, resources ------------------------------------------------------------------


def configured_engine(model):
    return config["engines"].get(model, {})


def engine_kind(model):
    return configured_engine(model).get("kind", model_spec(model).engine)


def engine_options(model, kind=None):
    """What the job's engine is built with: config `engines.<model>` for the kind it runs, on its device."""
    return job_engine_options(model_spec(model), configured_engine(model), kind)


def gpus(model, kind=None):
    return job_gpus(model_spec(model), configured_engine(model), kind)


def gpu_type(model, kind=None):
    """The GPU type a job that reserves GPUs asks SLURM for (`--gpus=<type>:<n>`); none for a CPU job."""
    return config["resources"]["gpu_model"] if gpus(model, kind) else ""


def model_inputs(model, kind=None):
    """A GGUF model is converted once to an fp32 folder that every job of that model loads (HF or vLLM)."""
    kind = kind or engine_kind(model)
    if kind != "openai" and model_spec(model).is_gguf:
        return {"model_dir": path("model_dir", model=model)}
    return {}


def model_mem_mb(model, kind=None):
    """Host memory: weights in fp32 plus headroom (vLLM keeps weights on the GPU)."""
    params_b = model_spec(model).params_b or 1.0
    return int(max(4000, params_b * 1000 * (2 if (kind or engine_kind(model)) == "vllm" else 6)))


def model_runtime(model, pass_name="greedy"):
    """Minutes for one (model, dataset, split) pass on the paper's sizes; sampling costs n_samples greedy runs."""
    factor = config["generation"]["n_samples"] if pass_name == "sample" else 1
    return int(60 + 30 * factor * max(1.0, (model_spec(model).params_b or 1.0) / 8))


def api_requests(model):
    """One slot of the API budget for a job that calls an API model."""
    return 1 if engine_kind(model) == "openai" else 0


def judge_api_requests():
    return 1 if config["judge"]["engine"] == "openai" else 0


# ---- settings handed to jobs (only what their outputs depend on) --------------------------------


def subset_size(split):
    return config["subset"]["max_test" if split == "test" else "max_train"]


def dataset_pass_settings(dataset, pass_name):
    """The generation settings ``pass_name`` reads, with the token budget of this dataset's task type only."""
    return pass_settings(pass_name, config["generation"], [dataset_info(dataset)["task_type"]])


def generation_settings(wildcards):
    return dataset_pass_settings(wildcards.dataset, wildcards.pass_name)


def judge_settings():
    judge = dict(config["judge"])
    if judge["engine"] == "openai":
        judge["engine_options"] = engine_options(judge["model"])
    return judge


def probe_settings(wildcards):
    """Probe hyperparameters, for probe methods only; cross-fitting folds only where a probe cross-fits."""
    if wildcards.method not in PROBE_METHODS:
        return {}
    settings = dict(config["probe"])
    if not (wildcards.method == "trained_probe" and probe_training(wildcards.dataset) == "crossfit"):
        settings.pop("crossfit_folds", None)
    if wildcards.method == "trained_probe":
        settings.pop("ood_lr", None)
    else:
        settings.pop("lr", None)
    return settings


def probe_training(dataset):
    return dataset_probe_training(dataset, local=DATA_DIR is not None)


# ---- input functions ---------------------------------------------------------------------------


def pass_output(model, dataset, split, pass_name):
    """The pass table the analysis reads (a graded pass: after grading)."""
    return path("gen", model=model, dataset=dataset, split=split, pass_name=pass_name)


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


def cell_outputs():
    return {name: paths.wildcard_path(RESULTS, model_pass_kind(name), pass_name=name) for name in CELL_PASSES}


def cell_settings(wildcards):
    return {name: dataset_pass_settings(wildcards.dataset, name) for name in CELL_PASSES}


def cell_checkpoint_dirs(wildcards):
    """The folders the per-pass jobs would use, so a cell job and a pass job resume each other's parts."""
    cell = [wildcards.model, wildcards.dataset, wildcards.split]
    return {name: paths.checkpoint_path(RESULTS, "gen", cell + [name]) for name in CELL_PASSES}


def hidden_inputs(wildcards):
    inputs = {
        "questions": path("data", dataset=wildcards.dataset, split=wildcards.split),
        "greedy": greedy_replies(wildcards.model, wildcards.dataset, wildcards.split),
    }
    inputs.update(model_inputs(wildcards.model, kind="hf"))
    return inputs


def _train_datasets(method, dataset):
    """Datasets whose train split a probe of ``method`` learns from when scoring ``dataset``."""
    spec = method_spec(method)
    if spec.needs_train == "in_domain":
        return [dataset] if probe_training(dataset) == "in_domain" else []
    if spec.needs_train == "other_datasets":
        return [other for other in DATASETS if other != dataset]
    return []


def probe_training_inputs(slm, datasets):
    """The train splits a probe learns from: hidden states and graded greedy answers of each dataset."""
    return {
        "train_hidden": [path("hidden", model=slm, dataset=dataset, split="train") for dataset in datasets],
        "train_greedy": [pass_output(slm, dataset, "train", "greedy") for dataset in datasets],
    }


def holdout_uq_inputs(wildcards):
    """Test cells of every dataset but the hold-out, and the train splits of the same datasets (never the hold-out's)."""
    slm, others = wildcards.slm, [other for other in DATASETS if other != wildcards.dataset]
    return {
        "questions": [path("data", dataset=other, split="test") for other in others],
        "greedy": [pass_output(slm, other, "test", "greedy") for other in others],
        "hidden": [path("hidden", model=slm, dataset=other, split="test") for other in others],
        **probe_training_inputs(slm, others),
    }


def uq_inputs(wildcards):
    slm, dataset, method = wildcards.slm, wildcards.dataset, wildcards.method
    spec = method_spec(method)
    inputs = {"questions": path("data", dataset=dataset, split="test")}
    for pass_name in spec.passes:
        inputs[pass_name] = pass_output(slm, dataset, "test", pass_name)
    if spec.needs_hidden:
        inputs["hidden"] = path("hidden", model=slm, dataset=dataset, split="test")
        inputs.update(probe_training_inputs(slm, _train_datasets(method, dataset)))
    return inputs


def uq_file(slm, dataset, method):
    return path("uq", slm=slm, dataset=dataset, method=method)


def all_uq():
    return [uq_file(slm, dataset, method) for slm in SLMS for dataset in DATASETS for method in METHODS]


def llm_greedy(llm, dataset):
    return pass_output(llm, dataset, "test", "greedy")


def routing_file(slm, llm, dataset, method):
    return path("routing", slm=slm, llm=llm, dataset=dataset, method=method)


def all_routing():
    return [
        routing_file(slm, llm, dataset, method)
        for slm in SLMS
        for llm in LLMS
        for dataset in DATASETS
        for method in METHODS
    ]


def all_generalization():
    return [
        path("generalization", slm=slm, llm=llm, method=method, dataset=dataset)
        for slm in SLMS
        for llm in LLMS
        for method in CALIBRATION_METHODS
        for dataset in DATASETS
    ]


def all_release():
    return [path("release", slm=slm, method=method) for slm in SLMS for method in CALIBRATION_METHODS]


def released_probe_methods():
    """Released methods the router serves with a probe file: those learned on other datasets (the OOD probe)."""
    return [method for method in CALIBRATION_METHODS if method_spec(method).needs_train == "other_datasets"]


def all_release_probes():
    return [path("release_probe", slm=slm, method=method) for slm in SLMS for method in released_probe_methods()]


def release_probe_inputs(wildcards):
    return probe_training_inputs(wildcards.slm, DATASETS)


def calibration_uq(wildcards):
    """What the calibration set for a hold-out dataset pools: the other datasets' UQ tables, or for a method
    that learns from other datasets (the OOD probe) its scores from probes that never saw the hold-out."""
    if method_spec(wildcards.method).needs_train == "other_datasets":
        return [path("holdout_uq", slm=wildcards.slm, method=wildcards.method, dataset=wildcards.dataset)]
    return [uq_file(wildcards.slm, other, wildcards.method) for other in DATASETS if other != wildcards.dataset]


FIGURE_FORMATS = ("pdf", "png")


def figure_files(kind, **fields):
    return [path(kind, ext=ext, **fields) for ext in FIGURE_FORMATS]


def figure_output(kind, ext):
    """A figure rule's output pattern for one format."""
    return pattern(kind).replace("{ext}", ext)


def all_figures():
    figures = figure_files("figure_auroc_heatmaps") + figure_files("figure_ratio_fidelity")
    for llm in LLMS:
        for dataset in DATASETS:
            for kind in ("figure_routing_curves", "figure_relative_accuracy", "figure_generalization"):
                figures += figure_files(kind, llm=llm, dataset=dataset)
    for slm in SLMS:
        figures += figure_files("figure_confidence_distributions", slm=slm)
    return figures


def _paper_routing_inputs(figure):
    return {
        "curves": [routing_file(slm, llm, dataset, method)
                   for llm, dataset in figure.pairs for slm in SLMS for method in METHODS],
        "uq": [uq_file(slm, dataset, method) for _, dataset in figure.pairs for slm in SLMS for method in METHODS],
    }


def _paper_generalization_inputs(figure):
    cells = [(slm, llm, dataset, method)
             for llm, dataset in figure.pairs for slm in SLMS for method in CALIBRATION_METHODS]
    return {
        "generalization": [path("generalization", slm=s, llm=l, method=m, dataset=d) for s, l, d, m in cells],
        "routing": [routing_file(s, l, d, m) for s, l, d, m in cells],
    }


# A paper figure's inputs by family, named as the family's own rule names them.
PAPER_FIGURE_INPUTS = {
    "auroc_heatmaps": lambda figure: {"alignment": path("alignment")},
    "relative_accuracy": lambda figure: {"relative": path("relative_accuracy"), "alignment": path("alignment")},
    "confidence_distributions": lambda figure: {
        "uq": [uq_file(slm, dataset, method) for slm, method in figure.pairs for dataset in DATASETS]},
    "routing_curves": _paper_routing_inputs,
    "generalization": _paper_generalization_inputs,
}


def paper_figure_inputs(wildcards):
    """The tables of the cells the paper's Figure N shows."""
    figure = paper_figure(wildcards.number)
    missing = missing_for(figure, slms=SLMS, llms=LLMS, datasets=DATASETS, methods=METHODS)
    if missing:
        raise ValueError(f"paper figure {wildcards.number} ({figure.caption}) needs {', '.join(missing)}, which "
                         "the config does not list; build it with --configfile config/paper.yaml")
    return PAPER_FIGURE_INPUTS[figure.family](figure)


def all_paper_figures():
    return [path("paper_figure", number=number, ext="pdf") for number in PAPER_FIGURES]


def truncation_inputs():
    """Every generating pass table the analysis reads, and the model folders that hold their tokenizers."""
    slm_passes = [name for name in _slm_test_passes() if name in GENERATING_PASSES]
    # A released probe learns from the train split of every dataset; the others from those their methods name.
    trained_on = set(DATASETS) if released_probe_methods() else {
        d for method in METHODS for dataset in DATASETS for d in _train_datasets(method, dataset)}
    gen = [pass_output(slm, dataset, "test", name) for slm in SLMS for dataset in DATASETS for name in slm_passes]
    gen += [pass_output(slm, dataset, "train", "greedy") for slm in SLMS for dataset in DATASETS if dataset in trained_on]
    gen += [llm_greedy(llm, dataset) for llm in LLMS if llm not in SLMS for dataset in DATASETS]
    folders = [path("model_dir", model=slm) for slm in _retokenized_slms() if model_spec(slm).is_gguf]
    return {"gen": gen, "models": folders}


def _retokenized_slms():
    """SLMs with a pass that stores text only (every pass but greedy): their replies are re-tokenized."""
    return SLMS if set(_slm_test_passes()) & (set(GENERATING_PASSES) - {"greedy"}) else []


def tokenizer_sources():
    """Where each re-tokenized SLM's tokenizer loads from: a GGUF model's fp32 folder, else its hub id (None
    for an API-only model: the job then reports its text-only replies as uncounted)."""
    return {slm: path("model_dir", model=slm) if model_spec(slm).is_gguf else model_spec(slm).hub_id
            for slm in _retokenized_slms()}


def all_tables():
    return [
        path("alignment"),
        path("truncation"),
        path("routing_metrics"),
        path("relative_accuracy"),
        path("findings"),
        *all_generalization(),
        *all_release(),
        *all_release_probes(),
    ]


# Table, figure and UQ jobs (everything but a model pass) run their job function in a warm worker of the
# main Snakemake process: each would otherwise spend most of its time starting Python and importing its
# libraries. That needs the jobs in threads of this process, which profiles/default asks for
# (force-use-threads); without it Snakemake starts a whole Snakemake for each job. Model jobs run the same
# entry, workflow/scripts/job.py, in a process of their own (their engines spawn, and take conda envs).
WARM = WarmPool(default_workers(workflow.resource_settings.local_cores if workflow.non_local_exec else workflow._cores))


def warm_job(input, output, params, wildcards, threads, resources, log, rule):
    """Run the job function the rule names (params.job) with the `snakemake` object a script directive would
    hand it: in a warm worker from the main process, in this process where Snakemake runs the job alone (a
    cluster node)."""
    from snakemake.iocontainers import Snakemake

    job = Snakemake(input, output, params, wildcards, threads, resources, log, config, rule, None, workflow.basedir)
    if workflow.is_main_process:
        WARM.run(run_job, job)
    else:
        run_job(job)
