"""Fast checks of the router's parts: the threshold command, settings, calibration files, drift metrics.

The router itself, with real models and servers, is tested in test_serve_e2e.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from uqroute import REPO_ROOT
from uqroute.jobs import analysis as analysis_jobs
from uqroute.paths import results_path
from uqroute.io import read_parquet, write_parquet
from uqroute.serve.calibration import CalibrationError, calibration_threshold, check_calibration_file
from uqroute.serve.config import ConfigError, load_config
from uqroute.serve.metrics import RouterMetrics

UQROUTE = str(Path(sys.executable).parent / "uqroute")
REQUIRED = {"calibration": "c.parquet", "method": "perplexity", "ratio": 0.3, "slm.model": "smollm2-135m",
            "llm.model": "gemma3-270m", "llm.base_url": "http://127.0.0.1:9/v1"}


def _uq_table(rng: np.random.Generator, n: int, prefix: str) -> pd.DataFrame:
    confidence = rng.beta(2, 2, n)
    confidence[rng.random(n) < 0.1] = np.nan  # invalid rows, as methods leave them
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "confidence": confidence,
                         "prediction": "A", "correct": rng.random(n) < confidence, "valid": np.isfinite(confidence)})


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A release file built by the workflow's job, and a target uq + LLM table for the generalization job."""
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(7)
    sources = ["boolq", "piqa", "commonsenseqa"]
    paths = []
    for source in sources:
        path = results_path(str(root), "uq", slm="smollm2-135m", dataset=source, method="perplexity")
        paths.append(str(write_parquet(_uq_table(rng, 400, source), path)))
    calibration = root / "release" / "smollm2-135m" / "perplexity.parquet"
    analysis_jobs.calibration_set(uq=paths, n_bins=30, fraction=0.1, seeds=[50, 51, 52], output=str(calibration))
    target = _uq_table(rng, 200, "t")
    uq = write_parquet(target, results_path(str(root), "uq", slm="smollm2-135m", dataset="target", method="perplexity"))
    llm = write_parquet(pd.DataFrame({"id": target["id"], "correct": rng.random(200) < 0.7}), root / "llm.parquet")
    return calibration, uq, llm


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run([UQROUTE, *args], capture_output=True, text=True, timeout=300)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The same command in this process (no interpreter start-up: seconds saved per call on a busy machine)."""
    from uqroute.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_threshold_command_equals_generalization_rule(release, tmp_path):
    calibration, uq, llm = release
    output = tmp_path / "generalization.parquet"
    analysis_jobs.generalization(calibration=str(calibration), uq=str(uq), llm=str(llm), step=0.05,
                                 bootstrap={"resamples": 50}, output=str(output))
    table = read_parquet(output)
    expected = table.loc[(table["run"] == 2) & np.isclose(table["target_ratio"], 0.75), "threshold"]
    result = _cli("threshold", "--calibration", str(calibration), "--ratio", "0.75", "--calibration-run", "2")
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == float(expected.iloc[0])
    # The command's function, at every ratio the rule writes.
    for row in table.itertuples():
        assert calibration_threshold(calibration, row.target_ratio, run=row.run) == row.threshold


def test_threshold_reads_config_file_and_cli_wins(release, tmp_path, capsys):
    calibration, _, _ = release
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({"calibration": str(calibration), "ratio": 0.3, "calibration_run": 1}))
    code, from_file, err = _main(capsys, "threshold", "--config", str(config))
    assert code == 0, err
    assert float(from_file) == calibration_threshold(calibration, 0.3, run=1)
    _, overridden, _ = _main(capsys, "threshold", "--config", str(config), "--ratio", "0.6")
    assert float(overridden) == calibration_threshold(calibration, 0.6, run=1)
    assert float(overridden) > float(from_file)


def test_threshold_extremes_and_bad_run(release):
    calibration, _, _ = release
    assert calibration_threshold(calibration, 0.0) == -np.inf
    assert calibration_threshold(calibration, 1.0) == np.inf
    with pytest.raises(CalibrationError, match=r"no calibration run 7; runs in the file: \[0, 1, 2\]"):
        calibration_threshold(calibration, 0.3, run=7)


def test_help_of_every_subcommand():
    for args in (["--help"], ["threshold", "--help"], ["serve", "--help"]):
        result = _cli(*args)
        assert result.returncode == 0 and "usage: uqroute" in result.stdout, result.stderr


def test_a_bad_engine_kind_or_failure_mode_on_the_command_line_names_the_key(release, capsys):
    """argparse lists no choices (the command line imports no registry); the router config refuses the value."""
    calibration, _, _ = release
    common = ["serve", "--calibration", str(calibration), "--method", "perplexity", "--ratio", "0.3", "--slm",
              "smollm2-135m", "--llm", "gemma3-270m", "--llm-base-url", "http://127.0.0.1:9/v1"]
    code, _, err = _main(capsys, *common, "--slm-kind", "nope")
    assert code == 2 and "slm.kind: Input should be 'hf', 'vllm' or 'openai', got 'nope'" in err
    code, _, err = _main(capsys, *common, "--on-llm-failure", "retry")
    assert code == 2 and "llm.on_failure: Input should be 'fallback' or 'error', got 'retry'" in err


def test_mismatched_calibration_file_refuses_to_start_naming_both(release, capsys):
    calibration, _, _ = release
    code, _, err = _main(capsys, "serve", "--calibration", str(calibration), "--method", "p_true", "--ratio", "0.3",
                         "--slm", "smollm2-135m", "--llm", "gemma3-270m", "--llm-base-url", "http://127.0.0.1:9/v1")
    assert code == 2
    assert "calibrates SLM smollm2-135m with method perplexity" in err
    assert "serves SLM smollm2-135m with method p_true" in err
    with pytest.raises(CalibrationError, match="calibrates SLM smollm2-135m .* serves SLM gemma3-270m"):
        check_calibration_file(calibration, "gemma3-270m", "perplexity")
    with pytest.raises(CalibrationError, match="not found; for SLM smollm2-135m and method p_true"):
        check_calibration_file(calibration.with_name("p_true.parquet"), "smollm2-135m", "p_true")


def test_config_errors_name_the_key(tmp_path, monkeypatch):
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({"llm": {"base_url": "http://x/v1", "retries": 3}}))
    with pytest.raises(ConfigError, match=r"router.yaml: unknown key 'llm.retries'"):
        load_config(config, REQUIRED)
    with pytest.raises(ConfigError, match="ratio is required"):
        load_config(None, {**REQUIRED, "ratio": None})
    with pytest.raises(ConfigError, match="ratio: Input should be less than or equal to 1, got 1.5"):
        load_config(None, {**REQUIRED, "ratio": 1.5})
    with pytest.raises(ConfigError, match="method: trained_probe is not served: it learns from one dataset"):
        load_config(None, {**REQUIRED, "method": "trained_probe"})
    with pytest.raises(ConfigError, match="probe is required"):
        load_config(None, {**REQUIRED, "method": "ood_probe"})
    probe = tmp_path / "ood_probe.probe.pt"
    probe.write_bytes(b"")
    with pytest.raises(ConfigError, match="ood_probe reads the SLM's hidden states: slm.kind must be hf"):
        load_config(None, {**REQUIRED, "method": "ood_probe", "probe": str(probe), "slm.kind": "openai",
                           "slm.base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(ConfigError, match="probe file .*absent.pt not found"):
        load_config(None, {**REQUIRED, "method": "ood_probe", "probe": str(tmp_path / "absent.pt")})
    with pytest.raises(ConfigError, match="probe is set but method perplexity reads no probe"):
        load_config(None, {**REQUIRED, "probe": str(probe)})
    monkeypatch.delenv("UQROUTE_TEST_ROUTER_KEY", raising=False)
    with pytest.raises(ConfigError, match="server.api_key_env: environment variable UQROUTE_TEST_ROUTER_KEY is not set"):
        load_config(None, {**REQUIRED, "server.api_key_env": "UQROUTE_TEST_ROUTER_KEY"})
    # Every problem of the file at once, each with its key; YAML's true is no number.
    config.write_text(yaml.safe_dump({"drift": {"window": True}, "generation": {"max_new_tokens": {"mcq": 4}},
                                      "slm": {"kind": "openai"}}))
    with pytest.raises(ConfigError) as excinfo:
        load_config(config, REQUIRED)
    problems = str(excinfo.value).splitlines()
    assert all(problem.startswith(f"{config}: ") for problem in problems)
    assert any("drift.window: Input should be a valid integer, got True" in problem for problem in problems)
    assert any("generation.max_new_tokens: needs a budget for every task type" in problem for problem in problems)
    assert any("slm: base_url is required when kind is openai" in problem for problem in problems)


def test_example_config_documents_every_key():
    from pydantic import BaseModel

    from uqroute.serve.config import RouterConfig

    example = yaml.safe_load((REPO_ROOT / "config" / "router.yaml").read_text())

    def keys(tree, prefix=""):
        out = set()
        for key, value in tree.items():
            nested = isinstance(value, dict) and key not in ("engine_options", "max_new_tokens")
            out |= keys(value, f"{prefix}{key}.") if nested else {f"{prefix}{key}"}
        return out

    def settings_keys(model, stated, prefix=""):
        out = set()
        for key, field in model.model_fields.items():
            # A section that may be null (X | None) is documented with its keys, unless the example leaves it off
            # (null), when its comment shows them.
            args = typing.get_args(field.annotation)
            optional = args if type(None) in args and stated.get(key) is not None else ()
            section = next((t for t in (field.annotation, *optional)
                            if isinstance(t, type) and issubclass(t, BaseModel)), None)
            out |= (settings_keys(section, stated.get(key) or {}, f"{prefix}{key}.") if section
                    else {f"{prefix}{key}"})
        return out

    assert keys(example) == settings_keys(RouterConfig, example)
    text = (REPO_ROOT / "config" / "router.yaml").read_text()
    assert "controller: {window: 200, step: 0.05, reach: 1.0}" in text  # the null section's keys, in its comment
    assert load_config(REPO_ROOT / "config" / "router.yaml").method == "perplexity"


def test_generation_defaults_have_one_home_and_every_config_states_them():
    """The config schema holds the generation defaults; the router takes them from there, and the two files
    that spell them out for readers (the embedded default and the router's example) state the same values."""
    from uqroute.io import load_schema
    from uqroute.serve.config import GenerationSettings

    schema = load_schema("config")["properties"]["generation"]["properties"]
    defaults = {key: schema[key]["default"] for key in ("verbal_max_new_tokens", "n_samples", "sample_temperature",
                                                        "top_p", "seed")}
    budgets = schema["max_new_tokens"]["properties"]
    defaults["max_new_tokens"] = {task: rule["default"] for task, rule in budgets.items()}
    assert GenerationSettings().model_dump() == defaults
    for path in ("config.yaml", "router.yaml"):
        stated = yaml.safe_load((REPO_ROOT / "config" / path).read_text())["generation"]
        assert {key: stated[key] for key in defaults} == defaults, path


@pytest.mark.parametrize("key, value", [("n_samples", 1), ("sample_temperature", 0.0), ("top_p", 0.0),
                                        ("top_p", 1.5), ("seed", -1), ("verbal_max_new_tokens", 0)])
def test_generation_bounds_are_the_study_schemas(key, value):
    """A value the study's config schema refuses, the router refuses too (its bounds are read from the schema)."""
    import jsonschema

    from uqroute.io import load_schema
    from uqroute.serve.config import GenerationSettings

    entry = load_schema("config")["properties"]["generation"]["properties"][key]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, entry)
    with pytest.raises(ValueError, match=key):
        GenerationSettings(**{key: value})
    GenerationSettings(**{key: entry["default"]})


def test_drift_warning_when_routed_share_leaves_the_band(caplog):
    metrics = RouterMetrics(0.3, window=10, band=0.1, min_requests=5)
    with caplog.at_level(logging.WARNING, logger="uqroute.serve"):
        for routed in [True, False, False, True]:
            metrics.observe("llm" if routed else "slm", 0.2, routed)
        assert not caplog.records  # fewer than min_requests answers: no verdict yet
        metrics.observe("llm", 0.3, True)
        assert len(caplog.records) == 1 and "routing drift: 0.600 of the last 5 requests" in caplog.text
        for routed in [False] * 7 + [True] * 3:  # the window ends on target: 3 of 10 routed
            metrics.observe("llm" if routed else "slm", 0.1, routed)
        assert "back within 0.300 ± 0.100" in caplog.records[-1].getMessage()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}
    assert samples[("uqroute_routed_share", ())] == pytest.approx(0.3)
    assert samples[("uqroute_target_ratio", ())] == 0.3
    assert samples[("uqroute_drift_alert", ())] == 0
    assert samples[("uqroute_requests_total", (("path", "llm"),))] == 6
    assert samples[("uqroute_request_seconds_count", (("path", "slm"),))] == 9
    assert samples[("uqroute_requests_total", (("path", "fallback"),))] == 0


def test_probe_file_for_another_slm_or_method_refuses_to_start_naming_both(tmp_path):
    """A probe file keeps what it was trained for; the router checks it against what it serves."""
    from uqroute.serve.router import load_served_probe
    from uqroute.uq.probes import ProbeSettings, load_probe, save_probe, train_probe

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), rng.random(40) < 0.5
    settings = ProbeSettings(epochs=2)
    model = train_probe(X, y, settings)
    path = tmp_path / "ood_probe.probe.pt"
    save_probe(model, path, slm="gemma3-270m", method="ood_probe", layer=-8, settings=settings,
               datasets=["boolq", "piqa"])
    loaded, record = load_probe(path)
    assert record["datasets"] == ["boolq", "piqa"] and record["layer"] == -8
    from uqroute.uq.probes import probe_confidence

    np.testing.assert_array_equal(probe_confidence(loaded, X), probe_confidence(model, X))
    config = load_config(None, {**REQUIRED, "method": "ood_probe", "probe": str(path)})
    with pytest.raises(ValueError, match="trained for SLM gemma3-270m with method ood_probe, but the router serves "
                                         "SLM smollm2-135m with method ood_probe"):
        load_served_probe(config.slm.model, config.method, config.probe)
    path.write_bytes(b"not a probe")
    with pytest.raises(ValueError, match="not a probe file the workflow wrote"):
        load_probe(path)
