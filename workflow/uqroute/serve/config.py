"""Router settings: defaults, a YAML file (``--config``) and command-line overrides, checked once.

Every key is documented in ``config/router.yaml``. The generation defaults are read from the study's
config schema, whose defaults are the embedded default's (``config/config.yaml`` states the same values, a
test holds them equal), so a router scores answers exactly as that study did.
The settings are pydantic models: the types and bounds of a key stand beside its default, and a
mistake is reported with the file and the dotted key (:class:`ConfigError`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from uqroute.analysis.controller import ControllerSettings
from uqroute.datasets import TASK_TYPES
from uqroute.io import load_schema, load_yaml
from uqroute.models import ENGINE_KINDS
from uqroute.uq.registry import METHODS, load_plugins, method_spec



def served_methods() -> list[str]:
    """Methods the router computes per request: every registered one that does not say why it cannot
    (``MethodSpec.not_served``). A probe among them reads the SLM's hidden states: the in-process hf
    engine and a probe file the workflow wrote."""
    return [name for name, spec in METHODS.items() if spec.not_served is None]

ON_FAILURE = ("fallback", "error")

# Strict: YAML's `true` is not the number 1, nor "8000" a port.
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
Share = Annotated[float, Field(strict=True, ge=0, le=1)]
RequiredText = Annotated[str, Field(min_length=1)]


def _names_a_set_variable(name: str | None) -> str | None:
    if name is not None and not os.environ.get(name):
        raise ValueError(f"environment variable {name} is not set or empty")
    return name


# The *name* of an environment variable holding a key (never the key); it must be set when given.
KeyVariable = Annotated[str | None, AfterValidator(_names_a_set_variable)]


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the key (and the file it came from)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Section):
    """USD per million tokens, read (input) and written (output)."""

    input: Annotated[float, Field(strict=False, ge=0)] = 0.0
    output: Annotated[float, Field(strict=False, ge=0)] = 0.0


class SLMSettings(_Section):
    model: RequiredText
    kind: Literal[ENGINE_KINDS] = "hf"  # type: ignore[valid-type]
    model_dir: str | None = None
    # An open mapping, replaced whole; the engine rejects what it does not know.
    engine_options: dict[str, Any] = {"device": "cpu", "dtype": "auto", "batch_size": 16, "threads": 1}
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: KeyVariable = None
    max_concurrency: PositiveInt = 16
    timeout: PositiveFloat = 120.0
    price: Price = Price()

    @model_validator(mode="after")
    def _endpoint_given(self) -> SLMSettings:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("base_url is required when kind is openai (key 'slm.base_url' or --slm-base-url)")
        return self


class LLMSettings(_Section):
    model: RequiredText
    api_model: str | None = None
    base_url: RequiredText
    api_key_env: KeyVariable = None
    max_tokens: PositiveInt = 256
    timeout: PositiveFloat = 60.0
    max_retries: NonNegativeInt = 3
    max_concurrency: PositiveInt = 16
    cache_dir: str | None = None
    on_failure: Literal[ON_FAILURE] = "fallback"  # type: ignore[valid-type]
    price: Price = Price()


# The study's generation settings, their bounds and their defaults: one home, the config schema.
STUDY_GENERATION = load_schema("config")["properties"]["generation"]["properties"]
_SCHEMA_BOUNDS = {"minimum": "ge", "exclusiveMinimum": "gt", "maximum": "le", "exclusiveMaximum": "lt"}


def _study_setting(key: str) -> Any:
    """The pydantic field of a generation key: the default and the bounds the study's config schema gives it."""
    entry = STUDY_GENERATION[key]
    bounds = {bound: entry[word] for word, bound in _SCHEMA_BOUNDS.items() if word in entry}
    return Field(default=entry["default"], strict=True, **bounds)


class GenerationSettings(_Section):
    max_new_tokens: dict[Literal[TASK_TYPES], PositiveInt] = {  # type: ignore[valid-type]
        task: STUDY_GENERATION["max_new_tokens"]["properties"][task]["default"] for task in TASK_TYPES}
    verbal_max_new_tokens: int = _study_setting("verbal_max_new_tokens")
    n_samples: int = _study_setting("n_samples")
    sample_temperature: float = _study_setting("sample_temperature")
    top_p: float = _study_setting("top_p")
    seed: int = _study_setting("seed")

    @field_validator("max_new_tokens")
    @classmethod
    def _every_task_type(cls, budgets: dict[str, int]) -> dict[str, int]:
        # Replaced whole, so a file that sets one budget must set them all.
        lacking = [task for task in TASK_TYPES if task not in budgets]
        if lacking:
            raise ValueError(f"needs a budget for every task type; lacking {lacking}")
        return budgets


class LongLaneSettings(_Section):
    # A request whose prompt or token budget exceeds either goes to the long lane (a second copy of an
    # in-process hf SLM, on its own thread), so it never holds up the short requests' batches.
    prompt_tokens: PositiveInt = 1024
    max_new_tokens: PositiveInt = 128


class BatchingSettings(_Section):
    max_batch_size: PositiveInt = 32
    max_wait_ms: Annotated[float, Field(strict=True, ge=0)] = 10.0
    long_lane: LongLaneSettings | None = LongLaneSettings()


class DriftSettings(_Section):
    window: PositiveInt = 200
    band: Share = 0.1
    min_requests: PositiveInt = 50


class LimitSettings(_Section):
    # A request body over this many bytes gets HTTP 413 before it is parsed.
    max_body_bytes: PositiveInt = 1_000_000
    # Seconds a request may take in all (SLM, scoring, LLM, retries); then HTTP 504 and its work is cancelled.
    request_timeout: PositiveFloat = 300.0
    # A prompt that with its token budget exceeds the SLM's context window: reject (HTTP 400) or llm (routed
    # straight to the LLM, the SLM never reads it).
    over_context: Literal["reject", "llm"] = "reject"
    # SIGTERM: seconds in-flight requests get to finish before the server stops anyway.
    shutdown_grace: Annotated[float, Field(strict=False, ge=0)] = 10.0


_CONTROL = ControllerSettings()


class ControllerConfig(_Section):
    """The share controller's settings (the workflow's ``analysis.controller`` keys, and their defaults)."""

    window: PositiveInt = _CONTROL.window
    step: Annotated[float, Field(strict=False, gt=0, le=1)] = _CONTROL.step
    reach: Annotated[float, Field(strict=False, ge=0)] = _CONTROL.reach

    def settings(self) -> ControllerSettings:
        return ControllerSettings(window=self.window, step=self.step, reach=self.reach)


class AlsoServed(_Section):
    """One more method a client may ask for, with its own calibration file (and probe file)."""

    method: str
    calibration: RequiredText
    probe: str | None = None

    @field_validator("method")
    @classmethod
    def _served(cls, method: str) -> str:
        return _servable(method)


class ServerSettings(_Section):
    host: RequiredText = "127.0.0.1"
    port: PositiveInt = 8000
    api_key_env: KeyVariable = None
    served_model_name: RequiredText = "uqroute"
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"  # uvicorn's


class RouterConfig(_Section):
    """Checked settings, the keys of ``config/router.yaml``."""

    calibration: RequiredText
    plugins: list[str] = []
    method: str
    probe: str | None = None
    # More methods served beside `method`, each with its own calibration file; a request picks one by name.
    also_serve: list[AlsoServed] = []
    # The router card the workflow wrote beside the calibration file: auto = <calibration stem>.card.json if it
    # exists; a path = that file, which must exist; null = none.
    card: str | None = "auto"
    ratio: Share
    calibration_run: NonNegativeInt = 0
    # The two models have required keys: an absent section is an empty one, so the error names those keys.
    slm: SLMSettings = Field(default_factory=dict, validate_default=True)
    llm: LLMSettings = Field(default_factory=dict, validate_default=True)
    generation: GenerationSettings = GenerationSettings()
    default_task_type: Literal[TASK_TYPES] = "ff_text"  # type: ignore[valid-type]
    batching: BatchingSettings = BatchingSettings()
    drift: DriftSettings = DriftSettings()
    # Opt-in: hold the routed share on `ratio` on live traffic, without labels (null: the calibration threshold).
    controller: ControllerConfig | None = None
    limits: LimitSettings = LimitSettings()
    server: ServerSettings = ServerSettings()

    @field_validator("method")
    @classmethod
    def _served(cls, method: str) -> str:
        return _servable(method)

    @model_validator(mode="after")
    def _method_fits(self) -> RouterConfig:
        names = [self.method] + [extra.method for extra in self.also_serve]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"also_serve: method {repeated[0]} is served twice; one calibration file a method")
        for key, method, probe in [("", self.method, self.probe)] + [
                (f"also_serve.{i}.", extra.method, extra.probe) for i, extra in enumerate(self.also_serve)]:
            _check_probe(key, method, probe, self.slm.kind)
        return self

    def served(self) -> list[AlsoServed]:
        """Every served method with its files, the default (``method``) first."""
        return [AlsoServed(method=self.method, calibration=self.calibration, probe=self.probe), *self.also_serve]


def _servable(method: str) -> str:
    served = ", ".join(served_methods())
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; served: {served}")
    if method_spec(method).not_served:
        raise ValueError(f"{method} is not served: {method_spec(method).not_served}; served: {served}")
    return method


def _check_probe(key: str, method: str, probe: str | None, slm_kind: str) -> None:
    """A probe method needs its probe file and the in-process hf SLM; any other method takes no probe file."""
    if method_spec(method).needs_hidden:
        if probe is None:
            raise ValueError(f"{key}probe is required for method {method} (key '{key}probe' or --probe)")
        if slm_kind != "hf":
            raise ValueError(f"method {method} reads the SLM's hidden states: slm.kind must be hf "
                             f"(in process), got {slm_kind!r}")
        if not Path(probe).is_file():
            raise ValueError(f"{key}probe: probe file {probe} not found (the workflow writes "
                             f"results/release/<slm>/{method}.probe.pt)")
    elif probe is not None:
        raise ValueError(f"{key}probe is set but method {method} reads no probe")


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RouterConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (dotted keys, None = not given)."""
    tree: dict[str, Any] = {}
    where = "router settings"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: router config file not found")
        tree = load_yaml(path)
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: must be a mapping of router settings")
        where = str(path)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    try:
        load_plugins(tree.get("plugins"))  # their methods register before the method is checked
    except ImportError as err:
        raise ConfigError(f"{where}: {err}") from None
    try:
        return RouterConfig.model_validate(tree)
    except ValidationError as err:
        # One line a problem, each naming the file and the key.
        raise ConfigError("\n".join(_describe(problem, where) for problem in err.errors())) from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    for name in sections:
        tree = tree.setdefault(name, {})
        if not isinstance(tree, dict):
            return  # the file set this section to a non-mapping, which validation reports
    tree[leaf] = value


def _describe(problem: Mapping[str, Any], where: str) -> str:
    """One pydantic error as ``<file>: <dotted key>: <what is wrong>``."""
    key = ".".join(str(part) for part in problem["loc"] if part != "[key]")
    if problem["type"] == "extra_forbidden":
        section, _, _ = key.rpartition(".")
        return f"{where}: unknown key {key!r}; known here: {sorted(_section_model(section).model_fields)}"
    if problem["type"] == "missing":
        return f"{where}: {key} is required (key {key!r} or its command-line flag)"
    if problem["type"] == "value_error":
        # Our own validators' messages, without pydantic's "Value error, " prefix.
        message = str(problem["ctx"]["error"])
        return f"{where}: {key}: {message}" if key else f"{where}: {message}"
    return f"{where}: {key}: {problem['msg']}, got {problem['input']!r}"


def _section_model(dotted: str) -> type[BaseModel]:
    model: type[BaseModel] = RouterConfig
    for name in filter(None, dotted.split(".")):
        model = model.model_fields[name].annotation
    return model
