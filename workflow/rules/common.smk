# Config access, wildcard constraints, pre-flight checks and the input functions that list targets.
# Stage files (data, generate, uq, analysis, figures) hold only rules.

from pathlib import Path

from uqroute.datasets import DATASET_NAMES, check_data_files, dataset_info
from uqroute.models import check_model_files, model_spec
from uqroute.uq.requirements import METHOD_PASSES, PROBE_METHODS

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"
SPLITS = ("test", "train")
PASSES = ("greedy", "sample", "verbal1s", "verbal2s", "ptrue")

SLMS = list(config["slms"])
LLMS = list(config["llms"])
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])
CALIBRATION_METHODS = list(config["calibration"]["methods"] or METHODS)
MODELS = list(dict.fromkeys(SLMS + LLMS))
DATA_DIR = config["data_dir"]


def _preflight():
    """Fail before any job starts: unknown models or methods, missing data files."""
    for name in MODELS:
        spec = model_spec(name)
        kind = config["engines"].get(name, {}).get("kind", spec.engine)
        if kind != "openai" and not Path(RESULTS, "models", name).exists():
            check_model_files(spec)
    for name in config["engines"]:
        # Any registry model may carry settings (config files merge), but a typo fails here.
        try:
            model_spec(name)
        except KeyError as error:
            raise ValueError(f"config key engines.{name}: {error}") from None
    unknown = sorted(set(CALIBRATION_METHODS) - set(METHODS))
    if unknown:
        raise ValueError(f"config key calibration.methods: {unknown} not in methods {METHODS}")
    if config["judge"]["engine"] == "openai":
        if "model" not in config["judge"]:
            raise ValueError("config key judge.model is required when judge.engine is openai")
        try:
            model_spec(config["judge"]["model"])
        except KeyError as error:
            raise ValueError(f"config key judge.model: {error}") from None
    if DATA_DIR is not None:
        check_data_files(DATASETS, Path(DATA_DIR))


_preflight()


wildcard_constraints:
    model="|".join(MODELS),
    slm="|".join(SLMS),
    llm="|".join(LLMS),
    dataset="|".join(DATASETS),
    split="|".join(SPLITS),
    pass_name="|".join(PASSES),
    method="|".join(METHODS),


# ---- paths -------------------------------------------------------------------------------------


def data_path(dataset, split):
    return f"{RESULTS}/data/{dataset}/{split}.parquet"


def gen_path(model, dataset, split, pass_name):
    return f"{RESULTS}/gen/{model}/{dataset}/{split}/{pass_name}.parquet"


def hidden_path(model, dataset, split):
    return f"{RESULTS}/hidden/{model}/{dataset}/{split}.parquet"


def uq_path(slm, dataset, method):
    return f"{RESULTS}/uq/{slm}/{dataset}/{method}.parquet"


def checkpoint_dir(wildcards, stage):
    """Finished batches of a long pass survive a killed job here (not a Snakemake output)."""
    parts = "/".join(str(v) for v in wildcards)
    return f"{RESULTS}/.checkpoints/{stage}/{parts}"


# ---- models, engines, resources ------------------------------------------------------------------


def engine_options(model, kind=None):
    """Registry defaults overridden by config `engines.<model>`; `kind` forces an engine (hidden: hf)."""
    options = dict(config["engines"].get(model, {}))
    if kind is not None:
        options["kind"] = kind
    return options


def engine_kind(model):
    return engine_options(model).get("kind", model_spec(model).engine)


def model_inputs(model, kind=None):
    """A GGUF model is converted once to an fp32 folder that every job of that model loads (HF or vLLM)."""
    kind = kind or engine_kind(model)
    if kind != "openai" and model_spec(model).is_gguf:
        return {"model_dir": f"{RESULTS}/models/{model}"}
    return {}


def gpus(model, kind=None):
    kind = kind or engine_kind(model)
    if kind == "openai" or engine_options(model).get("device", "cuda").startswith("cpu"):
        return 0
    if kind == "vllm":
        return engine_options(model).get("tensor_parallel_size", model_spec(model).tensor_parallel_size)
    return 1


def model_mem_mb(model, kind=None):
    """Host memory: weights in fp32 plus headroom (vLLM keeps weights on the GPU)."""
    params_b = model_spec(model).params_b or 1.0
    return int(max(4000, params_b * 1000 * (2 if (kind or engine_kind(model)) == "vllm" else 6)))


def model_runtime(model, pass_name="greedy"):
    """Minutes for one (model, dataset, split) pass on the paper's sizes; sampling costs n_samples greedy runs."""
    factor = config["generation"]["n_samples"] if pass_name == "sample" else 1
    return int(60 + 30 * factor * max(1.0, (model_spec(model).params_b or 1.0) / 8))


JUDGED_PASSES = ("greedy", "verbal1s")


def api_requests(model, pass_name=None):
    """One slot of the API budget for jobs that call an API: an API model, or the API judge grading a pass."""
    judged = pass_name in JUDGED_PASSES and config["judge"]["engine"] == "openai"
    return 1 if engine_kind(model) == "openai" or judged else 0


# ---- settings handed to scripts ----------------------------------------------------------------


def subset_size(split):
    return config["subset"]["max_test" if split == "test" else "max_train"]


def generation_settings():
    return dict(config["generation"])


def judge_settings():
    judge = dict(config["judge"])
    if judge["engine"] == "openai":
        judge["engine_options"] = engine_options(judge["model"])
    return judge


def probe_settings():
    return dict(config["probe"])


def probe_training(dataset):
    return dataset_info(dataset)["probe_training"]


# ---- input functions ---------------------------------------------------------------------------


def generate_inputs(wildcards):
    inputs = {"questions": data_path(wildcards.dataset, wildcards.split)}
    inputs.update(model_inputs(wildcards.model))
    if wildcards.pass_name in ("verbal2s", "ptrue"):
        inputs["greedy"] = gen_path(wildcards.model, wildcards.dataset, wildcards.split, "greedy")
    return inputs


def hidden_inputs(wildcards):
    inputs = {
        "questions": data_path(wildcards.dataset, wildcards.split),
        "greedy": gen_path(wildcards.model, wildcards.dataset, wildcards.split, "greedy"),
    }
    inputs.update(model_inputs(wildcards.model, kind="hf"))
    return inputs


def _train_inputs(slm, dataset):
    return [hidden_path(slm, dataset, "train"), gen_path(slm, dataset, "train", "greedy")]


def uq_inputs(wildcards):
    slm, dataset, method = wildcards.slm, wildcards.dataset, wildcards.method
    inputs = {"questions": data_path(dataset, "test")}
    for pass_name in METHOD_PASSES[method]:
        inputs[pass_name] = gen_path(slm, dataset, "test", pass_name)
    if method in PROBE_METHODS:
        inputs["hidden"] = hidden_path(slm, dataset, "test")
    if method == "trained_probe" and probe_training(dataset) == "in_domain":
        inputs["train"] = _train_inputs(slm, dataset)
    if method == "ood_probe":
        inputs["ood_train"] = [path for other in DATASETS if other != dataset for path in _train_inputs(slm, other)]
    return inputs


def all_uq():
    return [uq_path(slm, dataset, method) for slm in SLMS for dataset in DATASETS for method in METHODS]


def llm_greedy(llm, dataset):
    return gen_path(llm, dataset, "test", "greedy")


def routing_path(slm, llm, dataset, method):
    return f"{RESULTS}/routing/{slm}/{llm}/{dataset}/{method}.parquet"


def all_routing():
    return [
        routing_path(slm, llm, dataset, method)
        for slm in SLMS
        for llm in LLMS
        for dataset in DATASETS
        for method in METHODS
    ]


def calibration_path(slm, method, dataset):
    return f"{RESULTS}/calibration/{slm}/{method}/holdout-{dataset}.parquet"


def generalization_path(slm, llm, method, dataset):
    return f"{RESULTS}/generalization/{slm}/{llm}/{method}/{dataset}.parquet"


def generalization_cells():
    return [
        (slm, llm, method, dataset)
        for slm in SLMS
        for llm in LLMS
        for method in CALIBRATION_METHODS
        for dataset in DATASETS
    ]


def all_generalization():
    return [generalization_path(*cell) for cell in generalization_cells()]


def all_release():
    return [f"{RESULTS}/release/{slm}/{method}.parquet" for slm in SLMS for method in CALIBRATION_METHODS]


def other_uq(wildcards):
    return [uq_path(wildcards.slm, other, wildcards.method) for other in DATASETS if other != wildcards.dataset]


FIGURE_FORMATS = ("pdf", "png")


def figure_files(stem):
    return [f"{stem}.{ext}" for ext in FIGURE_FORMATS]


def all_figures():
    figures = figure_files(f"{RESULTS}/figures/auroc_heatmaps")
    figures += figure_files(f"{RESULTS}/figures/ratio_fidelity")
    for llm in LLMS:
        for dataset in DATASETS:
            figures += figure_files(f"{RESULTS}/figures/routing_curves/{llm}/{dataset}")
            figures += figure_files(f"{RESULTS}/figures/relative_accuracy/{llm}/{dataset}")
            figures += figure_files(f"{RESULTS}/figures/generalization/{llm}/{dataset}")
    for slm in SLMS:
        figures += figure_files(f"{RESULTS}/figures/confidence_distributions/{slm}")
    return figures


def all_tables():
    return [
        f"{RESULTS}/metrics/alignment.parquet",
        f"{RESULTS}/metrics/routing.parquet",
        f"{RESULTS}/metrics/relative_accuracy.parquet",
        f"{RESULTS}/metrics/findings.parquet",
        *all_generalization(),
        *all_release(),
    ]
