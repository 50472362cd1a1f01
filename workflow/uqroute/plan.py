"""What the workflow plans from its config, as plain functions of the validated config and the registries.

The grid (SLMs x datasets x methods x LLMs), the passes each cell needs, the train splits each probe reads,
the settings each job gets (only those its output depends on) and the resources it asks for. The Snakefile's
rules and input functions call these and add the results paths; the tests check them without Snakemake.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from .datasets import DATASET_NAMES, data_source, dataset_info
from .datasets import probe_training as dataset_probe_training
from .engines.options import engine_kind, job_engine_options, job_gpus
from .models import model_spec
from .passes import (BUDGET_SETTINGS, GENERATING_PASSES, GRADED_PASSES, HIDDEN_PASSES, PASS_NAMES, pass_settings,
                     pass_spec)
from .uq.registry import METHODS, method_spec

UNGRADED_PASSES = [name for name in PASS_NAMES if name not in GRADED_PASSES]
log = logging.getLogger(__name__)


def _known(key: str, names, known, what: str) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"config key {key}: unknown {what} {unknown}; known: {', '.join(known)}")


class Grid:
    """The experiment a config describes. ``config`` is the workflow's config after schema validation."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.slms = list(config["slms"])
        self.llms = list(config["llms"])
        self.datasets = list(config["datasets"])
        self.methods = list(config["methods"])
        # Calibration data for the listed methods the grid scores (all of them when none are listed).
        self.calibration_methods = [m for m in config["calibration"]["methods"] or self.methods if m in self.methods]
        self.models = list(dict.fromkeys(self.slms + self.llms))

    @cached_property
    def data_dir(self) -> Path | None:
        """Where the datasets load from: the config's ``data_dir`` where that folder exists, else the hub (None)."""
        return data_source(self.config["data_dir"])

    def check_names(self) -> None:
        """Names the config uses must exist in the registries (cheap: no file is read)."""
        config = self.config
        _known("datasets", self.datasets, DATASET_NAMES, "dataset(s)")
        _known("methods", self.methods, METHODS, "UQ method(s)")
        listed = list(self.config["calibration"]["methods"] or [])
        _known("calibration.methods", listed, METHODS, "UQ method(s)")
        left_out = [method for method in listed if method not in self.methods]
        if listed and not self.calibration_methods:
            raise ValueError(f"config key calibration.methods: none of {listed} is among methods {self.methods}; "
                             "list some of those (or null: all of them)")
        if left_out:
            log.warning("calibration.methods: %s not among methods, so no calibration data for them; calibrating %s",
                        left_out, self.calibration_methods)
        for key, names in (("slms", self.slms), ("llms", self.llms), ("engines", list(config["engines"]))):
            for name in names:
                try:
                    model_spec(name)
                except KeyError as error:
                    raise ValueError(f"config key {key}: {error}") from None
        judge = config["judge"]
        if judge["engine"] == "openai":
            if "model" not in judge:
                raise ValueError("config key judge.model is required when judge.engine is openai")
            if not judge.get("base_url"):
                try:
                    model_spec(judge["model"])
                except KeyError as error:
                    raise ValueError(f"config key judge.model: {error} (or give judge.base_url, an endpoint "
                                     "serving it)") from None

    # ---- passes ------------------------------------------------------------------------------------

    @cached_property
    def slm_test_passes(self) -> list[str]:
        """The passes an SLM's test split needs: greedy (hidden states read it) and those the methods read."""
        needed = {"greedy"}.union(*(method_spec(method).passes for method in self.methods))
        return [name for name in PASS_NAMES if name in needed]

    @cached_property
    def cell_passes(self) -> list[str]:
        """The passes one ``generate_cell`` job makes (``generation.one_job_per: cell``); none when each pass
        is a job of its own, or when an SLM's test split needs one pass only."""
        if self.config["generation"]["one_job_per"] != "cell" or len(self.slm_test_passes) < 2:
            return []
        return list(self.slm_test_passes)

    @cached_property
    def hidden_in_cells(self) -> bool:
        """Whether an SLM's cell jobs also make its hidden states, on the engine that made the greedy replies:
        with ``one_job_per: cell``, where every SLM generates on transformers built exactly as its hidden-state
        job's engine (same options, so the same tables); else each hidden-state pass is a job of its own."""
        return bool(self.cell_passes) and all(
            self.engine_options(slm) == self.engine_options(slm, kind="hf") for slm in self.slms)

    def cell_hidden_passes(self, split: str) -> list[str]:
        """The hidden-state passes an SLM's cell job on ``split`` makes: those the probes read on that split
        (on train only where a probe learns from a train split, the released ones from every dataset's)."""
        if not self.hidden_in_cells:
            return []
        probes = [method_spec(method) for method in self.methods if method_spec(method).needs_hidden]
        if split != "test":
            probes = [spec for spec in probes if spec.name in self.released_probe_methods
                      or any(self.train_datasets(spec.name, dataset) for dataset in self.datasets)]
        return [name for name in HIDDEN_PASSES if any(spec.hidden == name for spec in probes)]

    def cell_passes_of(self, split: str) -> list[str]:
        """The model passes an SLM's cell job on ``split`` makes: the test split's :attr:`cell_passes`; on the
        train split, the greedy replies the probes learn from, where its cell also makes hidden states."""
        if split == "test":
            return list(self.cell_passes)
        return ["greedy"] if self.cell_hidden_passes(split) else []

    def subset_size(self, split: str) -> int | None:
        return self.config["subset"]["max_test" if split == "test" else "max_train"]

    def pass_settings(self, dataset: str, pass_name: str) -> dict[str, Any]:
        """The generation settings ``pass_name`` reads, with the token budget of this dataset's task type only."""
        return pass_settings(pass_name, self.config["generation"], [dataset_info(dataset)["task_type"]])

    # ---- probes ------------------------------------------------------------------------------------

    def probe_training(self, dataset: str) -> str:
        """How the trained probe of ``dataset`` learns: ``in_domain`` (its train split) or ``crossfit``."""
        return dataset_probe_training(dataset, local=self.data_dir is not None)

    def other_datasets(self, dataset: str) -> list[str]:
        """The grid's datasets but ``dataset``: what an OOD probe of ``dataset`` learns from, and what the
        calibration data for ``dataset`` as a hold-out pools."""
        return [other for other in self.datasets if other != dataset]

    def train_datasets(self, method: str, dataset: str) -> list[str]:
        """Datasets whose train split a probe of ``method`` learns from when scoring ``dataset``."""
        spec = method_spec(method)
        if spec.needs_train == "in_domain":
            return [dataset] if self.probe_training(dataset) == "in_domain" else []
        if spec.needs_train == "other_datasets":
            return self.other_datasets(dataset)
        return []

    def probe_settings(self, method: str, dataset: str | None = None) -> dict[str, Any]:
        """Probe hyperparameters, for probe methods only; cross-fitting folds only where a probe cross-fits
        (the trained probe of ``dataset``; the OOD probe learns from other datasets, whichever it scores)."""
        if not method_spec(method).needs_hidden:
            return {}
        in_domain = method_spec(method).needs_train == "in_domain"
        settings = dict(self.config["probe"])
        if not (in_domain and self.probe_training(dataset) == "crossfit"):
            settings.pop("crossfit_folds", None)
        settings.pop("ood_lr" if in_domain else "lr", None)
        return settings

    @cached_property
    def released_probe_methods(self) -> list[str]:
        """Released methods the router serves with a probe file: those learned on other datasets (the OOD
        probe)."""
        return [method for method in self.calibration_methods
                if method_spec(method).needs_train == "other_datasets" and method_spec(method).released]

    @cached_property
    def trained_on(self) -> list[str]:
        """Datasets whose train split the grid reads: a released probe learns from every dataset's, the
        workflow's probes from those their methods name."""
        if self.released_probe_methods:
            return list(self.datasets)
        read = {train for method in self.methods for dataset in self.datasets
                for train in self.train_datasets(method, dataset)}
        return [dataset for dataset in self.datasets if dataset in read]

    @cached_property
    def retokenized_slms(self) -> list[str]:
        """SLMs with a pass that stores text only (every pass but greedy): their replies are re-tokenized."""
        text_only = set(GENERATING_PASSES) - {"greedy"}
        return list(self.slms) if set(self.slm_test_passes) & text_only else []

    @cached_property
    def generalization_cells(self) -> list[tuple[str, str, str, str]]:
        """(SLM, LLM, dataset, method) of every generalization table: each calibrated method with each dataset
        as the hold-out its thresholds are applied to."""
        return [(slm, llm, dataset, method) for slm in self.slms for llm in self.llms
                for method in self.calibration_methods for dataset in self.datasets]

    @cached_property
    def generating_pass_tables(self) -> list[tuple[str, str, str, str]]:
        """(model, dataset, split, pass) of every generating pass table the grid makes: the SLMs' test passes, their
        greedy pass on the train splits the grid reads, and each LLM's greedy pass (an LLM that is also an SLM
        shares the SLM's)."""
        slm_passes = [name for name in self.slm_test_passes if name in GENERATING_PASSES]
        tables = [(slm, dataset, "test", name) for slm in self.slms for dataset in self.datasets for name in slm_passes]
        tables += [(slm, dataset, "train", "greedy") for slm in self.slms for dataset in self.trained_on]
        tables += [(llm, dataset, "test", "greedy") for llm in self.llms if llm not in self.slms
                   for dataset in self.datasets]
        return tables

    def budgets(self, dataset: str, pass_name: str) -> dict[str, Any]:
        """The token budgets ``pass_name`` runs under on ``dataset`` (its settings that hold budgets)."""
        return {key: value for key, value in self.pass_settings(dataset, pass_name).items() if key in BUDGET_SETTINGS}

    @property
    def graded_pass_tables(self) -> list[tuple[str, str, str, str]]:
        """(model, dataset, split, pass) of every graded pass table the grid makes (the grading table reads them)."""
        return [table for table in self.generating_pass_tables if table[3] in GRADED_PASSES]

    # ---- engines and resources ---------------------------------------------------------------------

    def configured_engine(self, model: str) -> Mapping[str, Any]:
        return self.config["engines"].get(model, {})

    def engine_kind(self, model: str) -> str:
        return engine_kind(model_spec(model), self.configured_engine(model))

    def engine_options(self, model: str, kind: str | None = None) -> dict[str, Any]:
        """What the job's engine is built with: config ``engines.<model>`` for the kind it runs, on its device."""
        return job_engine_options(model_spec(model), self.configured_engine(model), kind)

    def gpus(self, model: str, kind: str | None = None) -> int:
        return job_gpus(model_spec(model), self.configured_engine(model), kind)

    def gpu_type(self, model: str, kind: str | None = None) -> str:
        """The GPU type a job that reserves GPUs asks SLURM for (``--gpus=<type>:<n>``); none for a CPU job."""
        return self.config["resources"]["gpu_model"] if self.gpus(model, kind) else ""

    def needs_model_dir(self, model: str, kind: str | None = None) -> bool:
        """A GGUF model is converted once to an fp32 folder that every job of that model loads (HF or vLLM)."""
        return (kind or self.engine_kind(model)) != "openai" and model_spec(model).is_gguf

    def model_mem_mb(self, model: str, kind: str | None = None) -> int:
        """Host memory: weights in fp32 plus headroom (vLLM keeps weights on the GPU)."""
        params_b = model_spec(model).params_b or 1.0
        return int(max(4000, params_b * 1000 * (2 if (kind or self.engine_kind(model)) == "vllm" else 6)))

    def model_runtime(self, model: str, pass_name: str = "greedy") -> int:
        """Minutes for one (model, dataset, split) pass on the paper's sizes; sampling costs n_samples greedy
        runs."""
        factor = self.config["generation"]["n_samples"] if pass_spec(pass_name).sampled else 1
        return int(60 + 30 * factor * max(1.0, (model_spec(model).params_b or 1.0) / 8))

    def api_requests(self, model: str) -> int:
        """One slot of the API budget for a job that calls an API model."""
        return 1 if self.engine_kind(model) == "openai" else 0

    def judge_settings(self) -> dict[str, Any]:
        """What the grade jobs build their judge from: the config's judge section, and for a registry model
        behind its usual endpoint the engine options the grid gives it."""
        judge = dict(self.config["judge"])
        if judge["engine"] == "openai" and not judge.get("base_url"):
            judge["engine_options"] = self.engine_options(judge["model"])
        return judge

    def judge_api_requests(self) -> int:
        return 1 if self.config["judge"]["engine"] == "openai" else 0
