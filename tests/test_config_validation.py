"""Bad configuration fails before any job starts, with a message naming the key, value or file.

The dry runs plan the DAG in the test process (Snakemake's API); the checks that need a real start of
Snakemake (the pre-flight file check of a run, `--list`) run it as a user does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import DATA_DIR, LOCAL_ROWS
from workflow_runs import EMBEDDED_CONFIG, SNAKEFILE, SNAKEMAKE, count_rules, lint, plan, plan_error


def override(tmp_path: Path, overrides: dict) -> list[Path]:
    """The embedded config plus ``overrides`` (reading the real data folder unless they say otherwise)."""
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(DATA_DIR), **overrides}))
    return [EMBEDDED_CONFIG, path]


def snakemake(tmp_path: Path, overrides: dict, *args: str, cores: int = 1) -> subprocess.CompletedProcess:
    """The `snakemake` command with the embedded config plus ``overrides``, in an empty working directory."""
    return subprocess.run(
        [str(SNAKEMAKE), *args, "--cores", str(cores), "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
         "--configfile", *map(str, override(tmp_path, overrides))],
        capture_output=True, text=True, timeout=120,
    )


def test_embedded_default_dry_run_plans_jobs(tmp_path):
    rules = count_rules(plan(tmp_path, configfiles=override(tmp_path, {})))
    # generation.one_job_per: cell, one model job per dataset for the SLM's test passes and one for its train
    # split, each making the hidden states too (the SLM generates on transformers)
    assert rules["generate_cell"] == rules["generate_train_cell"] == 4 and rules["all"] == 1
    assert "hidden_states" not in rules


# Where the embedded default departs from the schema's defaults (which are the paper's settings), each with its
# reason beside it in config/config.yaml. Any other key it states must equal the schema's default.
EMBEDDED_CHOICES = {"data_dir", "subset.max_test", "subset.max_train", "engines", "generation.part_size",
                    "generation.one_job_per", "hidden.part_size", "calibration.methods", "calibration.n_bins",
                    "calibration.fraction"}


def test_the_embedded_default_states_the_schema_defaults_but_for_its_own_choices():
    from uqroute.io import load_schema

    def stated(config: dict, schema: dict, prefix: str = ""):
        """(key, stated value, schema default) of every key the config states that has a default."""
        for key, value in config.items():
            rule = schema.get("properties", {}).get(key, {})
            if isinstance(value, dict) and "properties" in rule:
                yield from stated(value, rule, f"{prefix}{key}.")
            elif "default" in rule:
                yield f"{prefix}{key}", value, rule["default"]

    keys = list(stated(yaml.safe_load(EMBEDDED_CONFIG.read_text()), load_schema("config")))
    assert len(keys) > 30
    assert {key for key, value, default in keys if value != default} == EMBEDDED_CHOICES


def test_the_config_schema_takes_the_engine_kinds_and_dtypes_the_engines_know():
    """The engine kinds live in the model registry's schema (uqroute.models.ENGINE_KINDS), which the config schema
    refers to; the dtypes in uqroute.engines.options, which the config schema, a file Snakemake validates with,
    must list."""
    from uqroute.engines.options import AUTO_DTYPE, DTYPES, KIND_ONLY
    from uqroute.io import load_schema
    from uqroute.models import ENGINE_KINDS

    engine = load_schema("config")["properties"]["engines"]["additionalProperties"]["properties"]
    assert engine["kind"] == {"$ref": "models.schema.yaml#/$defs/engine"}
    assert sorted(load_schema("models")["$defs"]["engine"]["enum"]) == sorted(ENGINE_KINDS) == sorted(KIND_ONLY)
    assert sorted(engine["dtype"]["enum"]) == sorted((*DTYPES, AUTO_DTYPE))


def test_the_librarys_validator_resolves_the_references_snakemake_resolves():
    """uqroute.io.schema_validator takes the task types and engine kinds from the registries' schemas, as the
    Snakefile's validate does (the cases above): a config that names neither validates; one that does not fails."""
    import jsonschema

    from uqroute.io import schema_validator

    validator = schema_validator("config")
    embedded = yaml.safe_load(EMBEDDED_CONFIG.read_text())
    validator.validate(embedded)
    for key, bad in (("engines", {"smollm2-135m": {"kind": "vlm"}}), ("generation", {"verbal1s_reasoning": ["essay"]})):
        with pytest.raises(jsonschema.ValidationError, match="vlm|essay"):
            validator.validate({**embedded, key: bad})


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"subsett": {"max_test": 3}}, "subsett"),
        ({"subset": {"max_tset": 3}}, "max_tset"),
        ({"subset": {"max_test": "ten"}}, "ten"),
        ({"methods": ["perplexity", "entropy"]}, "entropy"),
        ({"datasets": ["gsm8k", "squad"]}, "squad"),
        ({"slms": ["no-such-model"]}, "no-such-model"),
        ({"engines": {"smollm2-135m": {"batchsize": 4}}}, "batchsize"),
        ({"engines": {"smollm2-135m": {"dtype": "half"}}}, "half"),
        # the two below are checked through the config schema's references to the registries' schemas
        ({"engines": {"smollm2-135m": {"kind": "vlm"}}}, "vlm"),
        ({"generation": {"verbal1s_reasoning": ["essay"]}}, "essay"),
        ({"judge": {"engine": "openai", "model": "gpt-4o-mnii"}}, "gpt-4o-mnii"),
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path, overrides, named):
    assert named in plan_error(tmp_path, configfiles=override(tmp_path, overrides))


def test_missing_data_file_fails_naming_it_before_any_job(tmp_path):
    data = tmp_path / "data"
    (data / "boolq").mkdir(parents=True)
    result = snakemake(tmp_path, {"data_dir": str(data), "datasets": ["boolq"]})
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "boolq" in output and str(data / "boolq" / "validation.jsonl") in output
    assert not (tmp_path / "results").exists(), "no job ran"


def test_lint_needs_no_data_files(tmp_path, capsys):
    """A fresh clone without its data folder can be read: the file checks run when a run starts."""
    assert not lint(tmp_path, override(tmp_path, {"data_dir": str(tmp_path / "absent")})), capsys.readouterr().out


def test_list_needs_no_data_files(tmp_path):
    result = snakemake(tmp_path, {"data_dir": str(tmp_path / "absent")}, "--list")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "generate" in result.stdout.split()


def test_any_registry_dataset_can_be_built_by_its_file(tmp_path):
    """The data rule is not limited to the config's grid: gsm8k is not in the embedded default."""
    targets = ("results/data/gsm8k/test.parquet", "results/data/truthfulqa/train.parquet")
    jobs = plan(tmp_path, *targets, configfiles=override(tmp_path, {}))
    assert count_rules(jobs) == {"dataset": 2}
    assert sorted(output for job in jobs for output in job["output"]) == sorted(targets)


@pytest.mark.slow
def test_snakemake_builds_every_local_test_split(tmp_path, data_dir):
    """`snakemake results/data/<ds>/test.parquet` for all 13 local datasets, with their files' row counts."""
    targets = [f"results/data/{name}/test.parquet" for name in LOCAL_ROWS]
    result = snakemake(tmp_path, {"data_dir": str(data_dir)}, *targets, cores=2)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, (test_rows, _) in LOCAL_ROWS.items():
        assert len(pd.read_parquet(tmp_path / "results" / "data" / name / "test.parquet")) == test_rows, name
