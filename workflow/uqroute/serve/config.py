"""Router settings: defaults, a YAML file (``--config``) and command-line overrides, checked once.

Every key is documented in ``config/router.yaml``. The generation defaults are those of the
embedded default (``config/config.yaml``), so a router scores answers exactly as that study did.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from uqroute.datasets import TASK_TYPES
from uqroute.io import load_yaml

# Methods the router computes per request, and why the others are not served (yet).
SERVED_METHODS = ("perplexity", "avg_token_prob", "p_true", "verbal_2s", "jaccard_degree", "ood_probe")
# Methods that read the SLM's hidden states: the in-process hf engine and a probe file the workflow wrote.
PROBE_SERVED = ("ood_probe",)
NOT_SERVED = {
    "verbal_1s": "its confidence comes with an answer to a different prompt (the one-step format), "
                 "not to the user's own messages",
    "trained_probe": "it learns from one dataset's own split (or cross-fits over its test questions); serve "
                     "ood_probe, learned on every dataset (results/release/<slm>/ood_probe.probe.pt)",
}
SLM_KINDS = ("hf", "vllm", "openai")
ON_FAILURE = ("fallback", "error")

DEFAULTS: dict[str, Any] = {
    "calibration": None,
    "method": None,
    "probe": None,
    "ratio": None,
    "calibration_run": 0,
    "slm": {
        "model": None,
        "kind": "hf",
        "model_dir": None,
        "engine_options": {"device": "cpu", "dtype": "auto", "batch_size": 16, "threads": 1},
        "base_url": None,
        "api_model": None,
        "api_key_env": None,
        "max_concurrency": 16,
        "timeout": 120.0,
    },
    "llm": {
        "model": None,
        "api_model": None,
        "base_url": None,
        "api_key_env": None,
        "max_tokens": 256,
        "timeout": 60.0,
        "max_retries": 3,
        "backoff_base": 0.5,
        "max_concurrency": 16,
        "cache_dir": None,
        "on_failure": "fallback",
    },
    "generation": {
        "max_new_tokens": {"mcq": 12, "tf": 8, "ff_num": 64, "ff_text": 32},
        "verbal_max_new_tokens": 16,
        "n_samples": 5,
        "sample_temperature": 1.0,
        "top_p": 1.0,
        "seed": 50,
    },
    "default_task_type": "ff_text",
    "batching": {"max_batch_size": 32, "max_wait_ms": 10.0},
    "drift": {"window": 200, "band": 0.1, "min_requests": 50},
    "server": {
        "host": "127.0.0.1",
        "port": 8000,
        "api_key_env": None,
        "served_model_name": "uqroute",
        "log_level": "info",
    },
}


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the key (and the file it came from)."""


def _merge(base: dict, update: Mapping, where: str, prefix: str = "") -> None:
    for key, value in update.items():
        label = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key {label!r}; known here: {sorted(base)}")
        # engine_options and max_new_tokens are open mappings: replaced whole, checked by their users.
        if isinstance(base[key], dict) and label not in ("slm.engine_options", "generation.max_new_tokens"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {label} must be a mapping, got {value!r}")
            _merge(base[key], value, where, f"{label}.")
        else:
            base[key] = value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        tree = tree.setdefault(name, {})
    tree[leaf] = value


@dataclass(frozen=True)
class RouterConfig:
    """Checked settings; ``raw`` keeps the merged tree (the keys of ``config/router.yaml``)."""

    raw: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @property
    def slm(self) -> Mapping[str, Any]:
        return self.raw["slm"]

    @property
    def llm(self) -> Mapping[str, Any]:
        return self.raw["llm"]


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RouterConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (dotted keys, None = not given)."""
    tree = copy.deepcopy(DEFAULTS)
    where = "router settings"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: router config file not found")
        raw = load_yaml(path)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: must be a mapping of router settings")
        where = str(path)
        _merge(tree, raw, where)
    update: dict = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(update, dotted, value)
    _merge(tree, update, "command line")
    _check(tree, where)
    return RouterConfig(tree)


def _require(tree: Mapping, dotted: str, where: str) -> Any:
    value: Any = tree
    for name in dotted.split("."):
        value = value[name]
    if value is None or value == "":
        raise ConfigError(f"{where}: {dotted} is required (key {dotted!r} or its command-line flag)")
    return value


def _check(tree: dict, where: str) -> None:
    for key in ("calibration", "method", "ratio", "slm.model", "llm.model", "llm.base_url"):
        _require(tree, key, where)
    method = tree["method"]
    if method in NOT_SERVED:
        raise ConfigError(f"{where}: method {method!r} is not served: {NOT_SERVED[method]}; "
                          f"served: {', '.join(SERVED_METHODS)}")
    if method not in SERVED_METHODS:
        raise ConfigError(f"{where}: unknown method {method!r}; served: {', '.join(SERVED_METHODS)}")
    ratio = tree["ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ConfigError(f"{where}: ratio must be a number in [0, 1] (share of questions sent to the LLM), "
                          f"got {ratio!r}")
    slm, llm, server = tree["slm"], tree["llm"], tree["server"]
    if slm["kind"] not in SLM_KINDS:
        raise ConfigError(f"{where}: slm.kind must be one of {SLM_KINDS}, got {slm['kind']!r}")
    if slm["kind"] == "openai":
        _require(tree, "slm.base_url", where)
    if method in PROBE_SERVED:
        probe = _require(tree, "probe", where)
        if slm["kind"] != "hf":
            raise ConfigError(f"{where}: method {method} reads the SLM's hidden states: slm.kind must be hf "
                              f"(in process), got {slm['kind']!r}")
        if not Path(probe).is_file():
            raise ConfigError(f"{where}: probe file {probe} not found (the workflow writes "
                              f"results/release/<slm>/{method}.probe.pt)")
    elif tree["probe"] is not None:
        raise ConfigError(f"{where}: probe is set but method {method} reads no probe")
    if llm["on_failure"] not in ON_FAILURE:
        raise ConfigError(f"{where}: llm.on_failure must be one of {ON_FAILURE}, got {llm['on_failure']!r}")
    if tree["default_task_type"] not in TASK_TYPES:
        raise ConfigError(f"{where}: default_task_type must be one of {TASK_TYPES}, "
                          f"got {tree['default_task_type']!r}")
    budgets = tree["generation"]["max_new_tokens"]
    lacking = [t for t in TASK_TYPES if not isinstance(budgets.get(t), int) or budgets[t] < 1]
    if lacking:
        raise ConfigError(f"{where}: generation.max_new_tokens needs a positive integer for {lacking}")
    for dotted in ("batching.max_batch_size", "drift.window", "drift.min_requests", "server.port",
                   "generation.n_samples", "llm.max_tokens"):
        value = _require(tree, dotted, where)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {dotted} must be a positive integer, got {value!r}")
    if tree["method"] == "jaccard_degree" and tree["generation"]["n_samples"] < 2:
        raise ConfigError(f"{where}: jaccard_degree compares samples: generation.n_samples must be >= 2")
    if not 0 <= tree["drift"]["band"] <= 1:
        raise ConfigError(f"{where}: drift.band must be in [0, 1], got {tree['drift']['band']!r}")
    for dotted in ("server.api_key_env", "llm.api_key_env", "slm.api_key_env"):
        name = dotted.split(".")
        env = tree[name[0]][name[1]]
        if env is not None and not os.environ.get(env):
            raise ConfigError(f"{where}: {dotted} names environment variable {env}, which is not set or empty")
