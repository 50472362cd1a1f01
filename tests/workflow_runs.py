"""What the test modules share: Snakemake runs of tiny slices of the real data with the real tiny models
(a subprocess, as a user runs them), plans of the DAG made in the test process through Snakemake's API,
the jobs a printed dry run lists, the contract checks of a finished run, and docs/contracts.md read as data.

The slice's two runs are session fixtures (conftest.py): one local run, and a second from scratch (through the
test SLURM cluster where one answers), which both the determinism check and the SLURM check compare with it.
No test module imports another: what two of them need lives here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import pyarrow.parquet as pq
import yaml

from uqroute import REPO_ROOT
from uqroute.analysis.card import card_path_for, load_card
from uqroute.paths import model_folder
from uqroute.engines.options import resolve_dtype
from uqroute.io import table_metadata
from uqroute.uq.registry import method_spec

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SNAKEFILE = REPO_ROOT / "Snakefile"
EMBEDDED_CONFIG = REPO_ROOT / "config" / "config.yaml"
# One dataset of each answer type the embedded default holds (free-form numeric, multiple choice, true/false):
# three are the fewest that calibrate every method, the OOD probe included.
DATASETS = ["multiarith", "commonsenseqa", "boolq"]
METHODS = ["avg_token_prob", "p_true", "perplexity", "jaccard_degree", "verbal_1s", "verbal_2s",
           "trained_probe", "ood_probe"]
SLM, LLM = "smollm2-135m", "gemma3-270m"


def tiny_config(data_dir: Path, datasets: list[str] | None = None) -> dict:
    """The embedded default on ten test questions per dataset, with short budgets."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["data_dir"] = str(data_dir)
    config["datasets"] = list(datasets or DATASETS)
    config["subset"] = {"max_test": 10, "max_train": 12, "seed": 50}
    config["generation"]["max_new_tokens"] = {"mcq": 8, "tf": 6, "ff_num": 40, "ff_text": 16}
    config["generation"]["verbal_max_new_tokens"] = 10
    config["calibration"].update(n_bins=5, fraction=0.5, methods=None)  # every method's calibration data
    # One job per pass: the rerun-scope tests check that a setting reruns exactly the passes it changes.
    config["generation"]["one_job_per"] = "pass"
    return config


def slice_config(data_dir: Path) -> dict:
    """Two datasets with short answers, six questions, three methods: every kind of job, in minutes."""
    config = tiny_config(data_dir, ["commonsenseqa", "boolq"])
    config["methods"] = ["avg_token_prob", "p_true", "trained_probe"]
    config["subset"].update(max_test=6, max_train=6)
    return config


def run_workflow(workdir: Path, data_dir: Path, model_dirs: dict[str, Path], *extra: str,
                 config: dict | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` with ``config`` (default: the tiny config) as its config/config.yaml;
    ``env``: variables set over this process's environment."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config or tiny_config(data_dir)))
    for name, folder in model_dirs.items():
        link = model_folder(workdir / "results", name)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folder, target_is_directory=True)
    return subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
         "--cores", "2", *extra],
        capture_output=True, text=True, timeout=3000, env={**os.environ, "TQDM_DISABLE": "1", **(env or {})},
    )


def parquet_bytes(results: Path) -> dict[str, bytes]:
    """Every result table's bytes by relative path (checkpoints and model folders left out)."""
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*.parquet"))
            if ".checkpoints" not in path.parts and "models" not in path.parts}


def assert_same_tables(first: Path, second: Path) -> None:
    """The runs in workdirs ``first`` and ``second`` wrote the same result tables (over 40), byte for byte."""
    tables, again = parquet_bytes(first / "results"), parquet_bytes(second / "results")
    assert tables.keys() == again.keys() and len(tables) > 40
    differing = [name for name in tables if tables[name] != again[name]]
    assert not differing, f"Parquet bytes differ: {differing}"


# --------------------------------------------------------------------------- SLURM (tests/test_slurm.py)

SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"
SLURM_OVERLAY = REPO_ROOT / "tests" / "slurm" / "profile" / "config.yaml"
# A real cluster's partition for the test jobs (default: that of tests/slurm/slurm.conf.template) and account.
SLURM_PARTITION = os.environ.get("UQROUTE_SLURM_PARTITION", "cpu")
SLURM_ACCOUNT = os.environ.get("UQROUTE_SLURM_ACCOUNT")  # the test cluster takes none
# Jobs run with the PATH they are submitted with (sbatch --export=ALL): this interpreter's folder first.
SLURM_JOB_PATH = f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"


def slurm_answers() -> str | None:
    """None when a controller answers `sinfo` with the test partition up, else why not."""
    if shutil.which("sinfo") is None:
        return "no SLURM client commands on PATH (CI starts a cluster with tests/slurm/cluster.sh start)"
    try:
        probe = subprocess.run(["sinfo", "--noheader", "--partition", SLURM_PARTITION, "--format=%a"],
                               capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "sinfo found no SLURM controller within 60 s (CI starts one with tests/slurm/cluster.sh start)"
    if probe.returncode != 0 or "up" not in probe.stdout:
        return (f"no SLURM controller answers with partition {SLURM_PARTITION!r} up ({probe.stderr.strip()}); "
                "start one with tests/slurm/cluster.sh start (root, apt) or set UQROUTE_SLURM_PARTITION")
    return None


def with_slurm_account(profile: dict) -> dict:
    if SLURM_ACCOUNT:
        profile["default-resources"]["slurm_account"] = SLURM_ACCOUNT
        profile.pop("slurm-no-account", None)
    return profile


def slurm_options(folder: Path) -> list[str]:
    """Snakemake's options for the test cluster: profiles/slurm, then tests/slurm/profile with this run's partition
    (and account), written to ``folder``. `--opt=value` forms: --profile takes several values and would swallow
    the targets."""
    profile = with_slurm_account(yaml.safe_load(SLURM_OVERLAY.read_text()))
    profile["default-resources"]["slurm_partition"] = SLURM_PARTITION
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return [f"--profile={SLURM_PROFILE}", f"--profile={folder}"]


# --------------------------------------------------------------------------- plans, in the test process


def _dry_run(workdir: Path, targets: Iterable[str], configfiles: Iterable[Path], config: dict | None,
             forcerun: Iterable[str], collect, rerun_triggers: Iterable[str] | None = None):
    """``collect`` applied to every job a dry run of ``targets`` plans, inside the API's context;
    ``rerun_triggers``: names as ``--rerun-triggers`` takes them (default: Snakemake's)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, Quietness, RerunTrigger,
                                          ResourceSettings)

    if config is not None:
        (workdir / "config").mkdir(parents=True, exist_ok=True)
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(configfiles=[Path(p) for p in configfiles]),
                                snakefile=SNAKEFILE, workdir=workdir)
        triggers = {} if rerun_triggers is None else {
            "rerun_triggers": frozenset(RerunTrigger[name.upper()] for name in rerun_triggers)}
        workflow.dag(DAGSettings(targets=frozenset(targets), forcerun=frozenset(forcerun), **triggers)
                     ).execute_workflow(executor="dryrun")
        # The API hands out no DAG; its workflow object (private) holds the one the dry run built.
        return [collect(job) for job in workflow._workflow.dag.needrun_jobs(exclude_finished=False)]


def plan(workdir: Path, *targets: str, configfiles: Iterable[Path] = (), config: dict | None = None,
         forcerun: Iterable[str] = (), rerun_triggers: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every job a dry run of ``targets`` (default: the default target) plans in ``workdir``, through
    Snakemake's API in this process: no interpreter start-up, no printed output to parse.

    ``configfiles`` go over the workdir's config/config.yaml (as ``--configfile``); ``config`` is written
    to ``workdir/config/config.yaml`` first. Each job is a dict with ``rule``, ``input``, ``output``
    (lists of paths), ``wildcards`` and ``resources``. A config or data error raises (see :func:`plan_error`).
    ``rerun_triggers`` as ``--rerun-triggers`` (e.g. ``["mtime"]``)."""
    jobs = _dry_run(workdir, targets, configfiles, config, forcerun, lambda job: {
        "rule": job.rule.name, "input": [str(p) for p in job.input], "output": [str(p) for p in job.output],
        "wildcards": dict(job.wildcards), "resources": dict(job.resources)}, rerun_triggers)
    return sorted(jobs, key=lambda job: (job["rule"], job["output"]))


def planned_job_calls(workdir: Path, *targets: str, configfiles: Iterable[Path] = (),
                      config: dict | None = None) -> list[tuple[str, str | None, dict[str, Any]]]:
    """``(rule, job function, its arguments)`` of every job a dry run plans: what ``uqroute.jobs.run_job``
    would call it with (no function and no arguments for a rule that runs none, such as ``all``)."""
    from uqroute.jobs import JOB_PARAM, job_arguments, job_function

    def call(job):
        name = dict(job.params.items()).get(JOB_PARAM)
        if name is None:
            return job.rule.name, None, {}
        return job.rule.name, name, job_arguments(job_function(name), rule=job.rule.name, input=job.input,
                                                  output=job.output, params=job.params,
                                                  wildcards=job.wildcards, threads=job.threads)

    return _dry_run(workdir, targets, configfiles, config, (), call)


def lint(workdir: Path, configfiles: Iterable[Path]) -> bool:
    """``snakemake --lint`` in this process: True when Snakemake printed any suggestion (the CLI exits 1)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(configfiles=[Path(p) for p in configfiles]),
                                snakefile=SNAKEFILE, workdir=workdir)
        return bool(workflow.lint())


def plan_error(workdir: Path, *targets: str, **settings) -> str:
    """The message (with its causes) of a plan that must fail: :func:`plan` with the same arguments."""
    try:
        plan(workdir, *targets, **settings)
    except Exception as error:  # Snakemake wraps what the Snakefile raised; the causes name the key
        messages = []
        while error is not None and len(messages) < 10:
            messages.append(f"{type(error).__name__}: {error}")
            error = error.__cause__ or error.__context__
        return "\n".join(messages)
    raise AssertionError(f"planning {targets or 'the default target'} in {workdir} succeeded; it should fail")


def count_rules(jobs: Iterable[dict]) -> dict[str, int]:
    """Rule -> number of jobs."""
    return dict(Counter(job["rule"] for job in jobs))


def outputs(jobs: Iterable[dict]) -> set[str]:
    return {output for job in jobs for output in job["output"]}


# --------------------------------------------------------------------------- printed dry runs (CLI, profiles)


def printed_job_counts(stdout: str) -> dict[str, int]:
    """The first 'Job stats' table of a dry run's output: rule -> number of jobs."""
    if "Job stats:" not in stdout:
        return {}
    lines = stdout.split("Job stats:", 1)[1].strip().splitlines()[2:]
    counts = {}
    for line in lines:
        name, count = line.split()
        if name == "total":
            break
        counts[name] = int(count)
    return counts


def printed_jobs(stdout: str) -> list[dict]:
    """Every job block of a verbose dry run's output: rule, input, output, wildcards and resources (as printed)."""
    jobs, job = [], None
    for line in stdout.splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        if header:
            job = {"rule": header.group(1), "input": [], "output": [], "wildcards": {}, "resources": {}}
            jobs.append(job)
            continue
        if job is None or not line.startswith("    "):
            continue
        key, _, value = line.strip().partition(": ")
        if key in ("input", "output"):
            job[key] = value.split(", ")
        elif key in ("wildcards", "resources"):
            job[key] = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


# --------------------------------------------------------------------------- contracts of a finished run


def run_grid(workdir: Path) -> tuple[list[str], list[str], list[str], int]:
    """Datasets, methods, calibration methods and test questions per dataset of the run in ``workdir`` (its
    config/config.yaml)."""
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    return (config["datasets"], config["methods"], config["calibration"]["methods"] or config["methods"],
            config["subset"]["max_test"])


def check_contracts(workdir: Path) -> None:
    """Every table of the run's grid exists with its contract's columns and rows."""
    results = workdir / "results"
    datasets, methods, calibrated, n_test = run_grid(workdir)
    expected_columns = {
        "greedy": {"id", "prompt", "response", "token_logprobs", "prediction", "correct"},
        "sample": {"id", "sample_idx", "response", "prediction"},
        "verbal1s": {"id", "response", "prediction", "correct", "verbal_confidence"},
        "verbal2s": {"id", "response", "verbal_confidence"},
        "ptrue": {"id", "p_true"},
    }
    for dataset in datasets:
        questions = pd.read_parquet(results / "data" / dataset / "test.parquet")
        assert len(questions) > 10, "data files hold the whole split"
        tables = {pass_name: pd.read_parquet(results / "gen" / SLM / dataset / "test" / f"{pass_name}.parquet")
                  for pass_name in expected_columns}
        for pass_name, columns in expected_columns.items():
            assert columns <= set(tables[pass_name].columns), (dataset, pass_name)
            assert tables[pass_name]["id"].nunique() == n_test
        answered = set(tables["greedy"]["id"])
        if any(method_spec(method).hidden == "hidden" for method in methods):  # the probes read them
            hidden = pd.read_parquet(results / "hidden" / SLM / dataset / "test.parquet")
            assert {"id", "layer", "vector"} <= set(hidden.columns) and len(hidden) == n_test
            assert set(hidden["id"]) == answered
        llm = pd.read_parquet(results / "gen" / LLM / dataset / "test" / "greedy.parquet")
        assert set(llm["id"]) == answered, "SLM and LLM answer the same questions"
        for method in methods:
            uq = pd.read_parquet(results / "uq" / SLM / dataset / f"{method}.parquet")
            assert list(uq.columns[:5]) == ["id", "confidence", "prediction", "correct", "valid"]
            assert len(uq) == n_test, "rows a method cannot score are kept, marked invalid"
            routing = pd.read_parquet(results / "routing" / SLM / LLM / dataset / f"{method}.parquet")
            assert list(routing.columns[:4]) == ["ratio", "accuracy", "random_accuracy", "oracle_accuracy"]
            assert len(routing) == 101
            if method not in calibrated:
                continue
            calibration = pd.read_parquet(results / "calibration" / SLM / method / f"holdout-{dataset}.parquet")
            assert dataset not in set(calibration["source_dataset"])
            generalization = pd.read_parquet(results / "generalization" / SLM / LLM / method / f"{dataset}.parquet")
            assert {"run", "target_ratio", "threshold", "achieved_ratio", "accuracy",
                    "oracle_threshold_accuracy"} <= set(generalization.columns)
            share = pd.read_parquet(results / "share-control" / SLM / LLM / method / f"{dataset}.parquet")
            assert {"run", "target_ratio", "router", "checkpoint", "requests", "abs_error",
                    "accuracy"} <= set(share.columns)
            if len(generalization):  # the same thresholds, held fixed and controlled
                assert set(share["router"]) == {"static", "controller"}
                assert set(share["threshold"]) == set(generalization["threshold"])
    for dataset in datasets if "ood_probe" in calibrated else []:
        # The OOD probe's calibration pool for each hold-out, scored by probes that never saw it.
        pool = pd.read_parquet(results / "holdout-uq" / SLM / "ood_probe" / f"without-{dataset}.parquet")
        assert set(pool["dataset"]) == set(datasets) - {dataset} and len(pool) == n_test * (len(datasets) - 1)
    alignment = pd.read_parquet(results / "metrics" / "alignment.parquet")
    assert len(alignment) == len(datasets) * len(methods)
    assert {"slm", "dataset", "method", "n", "n_valid", "accuracy", "auroc", "prr", "aurc", "ece",
            "brier"} <= set(alignment.columns)
    routing = pd.read_parquet(results / "metrics" / "routing.parquet")
    assert {"apgr", "cpt20", "cpt50", "cpt80", "area"} <= set(routing.columns)
    assert len(pd.read_parquet(results / "metrics" / "findings.parquet")) > 0
    check_truncation(workdir)
    check_dtypes(workdir)
    from uqroute.uq.probes import load_probe

    if "ood_probe" in calibrated:
        _, probe = load_probe(results / "release" / SLM / "ood_probe.probe.pt")
        assert (probe["slm"], probe["method"], probe["layer"], probe["datasets"]) == (SLM, "ood_probe", -8, datasets)
    for method in calibrated:
        release_file = results / "release" / SLM / f"{method}.parquet"
        release = pd.read_parquet(release_file)
        assert set(release["source_dataset"]) <= set(datasets)
        assert set(zip(release["run"], release["seed"])) <= {(0, 50), (1, 51), (2, 52)}
        # Its router card describes this very file (load_card checks its bytes) and every held-out dataset.
        card = load_card(card_path_for(release_file), release_file, SLM, method)
        assert (card["datasets"], card["llms"], card["dtype"]) == (datasets, [LLM], resolve_dtype("auto", "cpu"))
        assert card["ratios"][0]["target_ratio"] == 0 and card["ratios"][-1]["target_ratio"] == 1
        assert all(block["n_datasets"] <= len(datasets) for entry in card["ratios"]
                   for block in entry["expected_on_unseen"])


def check_dtypes(workdir: Path) -> None:
    """The config pins no dtype: every table a model wrote names the dtype its job chose on this machine,
    and every model job's log says what ``auto`` became."""
    expected = resolve_dtype("auto", "cpu")
    tables = [path for folder in ("gen", "hidden") for path in (workdir / "results" / folder).rglob("*.parquet")]
    assert tables
    for path in tables:
        assert table_metadata(path) == {"uqroute.dtype": expected}, path
    logs = [path for rule in ("generate_replies", "generate", "generate_cell", "hidden_states")
            for path in (workdir / "logs" / rule).rglob("*.log")]
    assert logs
    for path in logs:
        assert f"dtype auto -> {expected} on cpu (" in path.read_text(), path


def check_truncation(workdir: Path) -> None:
    """One row per generating pass table of the run, each under the budget its config gave that pass."""
    results = workdir / "results"
    generation = yaml.safe_load((workdir / "config" / "config.yaml").read_text())["generation"]
    answer, verbal = generation["max_new_tokens"], generation["verbal_max_new_tokens"]
    truncation = pd.read_parquet(results / "metrics" / "truncation.parquet")
    tables = {path.relative_to(results / "gen").with_suffix("").parts for path in (results / "gen").rglob("*.parquet")
              if not path.name.endswith(".replies.parquet") and path.stem != "ptrue"}
    assert set(truncation[["model", "dataset", "split", "pass_name"]].itertuples(index=False, name=None)) == tables
    for row in truncation.itertuples():
        expected = {"greedy": answer[row.task_type], "sample": answer[row.task_type],
                    "verbal1s": answer[row.task_type] + verbal, "verbal2s": verbal}[row.pass_name]
        # Text-only passes are re-tokenized, which can differ from the generated ids at the edges; a sampled
        # reply can differ by more (2026-12-04: 40 sampled ids re-tokenized to 42, "Eerily" sampled in
        # fewer pieces than its canonical ones), so only the greedy count is bounded by its budget.
        assert row.budget == expected and (row.pass_name != "greedy" or row.max_tokens <= expected), row
        assert row.uncounted == 0, row  # every engine here stores tokens or has a tokenizer
        if row.pass_name == "greedy":  # counted exactly from the stored token ids
            tokens = pd.read_parquet(results / "gen" / row.model / row.dataset / row.split / "greedy.parquet")["tokens"]
            assert (row.replies, row.at_budget) == (len(tokens), sum(len(t) == expected for t in tokens)), row


def check_figures(workdir: Path) -> None:
    figures = workdir / "results" / "figures"
    datasets, *_ = run_grid(workdir)
    stems = [figures / "auroc_heatmaps", figures / "ratio_fidelity", figures / "confidence_distributions" / SLM,
             figures / "share_control" / SLM]
    for family in ("routing_curves", "relative_accuracy", "generalization"):
        stems += [figures / family / LLM / dataset for dataset in datasets]
    for stem in stems:
        for suffix in (".pdf", ".png"):
            path = stem.with_suffix(suffix)
            assert path.stat().st_size > 1000, path


def check_model_passes_ran_once(workdir: Path, log: str) -> None:
    """Eight methods read five passes: each model pass is made by exactly one job, and grading is no model pass.
    ``log``: what the run's Snakemake printed."""
    gen_files = sorted((workdir / "results" / "gen").rglob("*.parquet"))
    replies = [path for path in gen_files if path.name.endswith(".replies.parquet")]
    graded = [path for path in gen_files if path.name in ("greedy.parquet", "verbal1s.parquet")]
    model_outputs = [path for path in gen_files if path not in graded]
    # Under generation.one_job_per: cell, one generate_cell job makes every pass file of its cell.
    cell_benchmarks = workdir / "benchmarks" / "generate_cell"
    cells = {workdir / "results" / "gen" / p.relative_to(cell_benchmarks).with_suffix("")
             for p in cell_benchmarks.rglob("*.tsv")}
    in_cells = [path for path in model_outputs if path.parent in cells]
    assert log.count("rule generate_cell:") == len(cells)
    assert all(sum(path.parent == cell for path in in_cells) >= 2 for cell in cells)
    model_jobs = log.count("rule generate:") + log.count("rule generate_replies:")
    assert model_jobs == len(model_outputs) - len(in_cells), (model_jobs, len(model_outputs), len(in_cells))
    assert log.count("rule grade:") == len(graded) == len(replies)
    benchmarks = list((workdir / "benchmarks" / "generate").rglob("*.tsv"))
    assert len(benchmarks) == model_jobs
    # Hidden states are a model call too: one job per (model, dataset, split) file.
    hidden_files = sorted((workdir / "results" / "hidden").rglob("*.parquet"))
    hidden_jobs = log.count("rule hidden_states:")
    assert hidden_jobs == len(hidden_files) == len(list((workdir / "benchmarks" / "hidden_states").rglob("*.tsv")))


# --------------------------------------------------------------------------- docs/contracts.md

CONTRACTS_DOC = REPO_ROOT / "docs" / "contracts.md"
_TABLE_HEADING = re.compile(r"^## `([^`]+\.parquet)`$")
_COLUMN_ROW = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \| ([^|]+) \|$")
_METADATA_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \|$")


@dataclass(frozen=True)
class TableContract:
    """One table of docs/contracts.md: its path pattern (relative to results/, ``{name}`` one path segment),
    its columns as (name, Arrow type) in order, and the ``uqroute.*`` metadata keys it carries."""

    pattern: str
    columns: tuple[tuple[str, str], ...]
    metadata_keys: frozenset[str]

    def matches(self, relative_path: str) -> bool:
        regex = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                        for part in re.split(r"(\{\w+\})", self.pattern) if part)
        return re.fullmatch(regex, relative_path) is not None


def documented_contracts(doc: Path = CONTRACTS_DOC) -> dict[str, TableContract]:
    """Pattern -> contract of every table section of ``doc``: a level-2 heading holding the pattern in backticks,
    then a ``column | type | meaning`` table and optionally a ``metadata key | meaning`` table. A malformed row
    is an error naming its line, so the page stays regular enough to check runs against."""
    sections: dict[str, dict[str, list]] = {}
    section = table = None
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if line.startswith("## "):
            heading = _TABLE_HEADING.match(line)
            section = sections.setdefault(heading.group(1), {"columns": [], "metadata": []}) if heading else None
            table = None
        elif section is None or not line.startswith("|"):
            table = None
        elif line in ("| column | type | meaning |", "| metadata key | meaning |"):
            table = "columns" if line.startswith("| column") else "metadata"
        elif not set(line) <= set("|-"):  # the row under the header is dashes only
            row = (_COLUMN_ROW if table == "columns" else _METADATA_ROW).match(line) if table else None
            if row is None:
                raise ValueError(f"{doc}:{number}: not a row of a column or metadata table: {line}")
            section[table].append(row.group(1, 2) if table == "columns" else row.group(1))
    empty = [pattern for pattern, found in sections.items() if not found["columns"]]
    if empty:
        raise ValueError(f"{doc}: no column table under {empty}")
    return {pattern: TableContract(pattern, tuple(found["columns"]), frozenset(found["metadata"]))
            for pattern, found in sections.items()}


def _stored_columns(path: Path, contract: TableContract) -> list[tuple[str, str]]:
    """(name, Arrow type) of each column of ``path``. A column of type null (which holds no value) counts as
    the documented type, as docs/contracts.md allows: pandas cannot tell a type from missing values alone."""
    documented = dict(contract.columns)
    return [(field.name, documented.get(field.name, "null") if str(field.type) == "null" else str(field.type))
            for field in pq.read_schema(path)]


def check_tables_match_contracts(results: Path, absent: Mapping[str, str] | None = None) -> None:
    """Every Parquet file under ``results`` (model folders aside) matches exactly one table of docs/contracts.md
    and has its columns in order, with their Arrow types and its ``uqroute.*`` metadata keys; every documented
    table has a file. ``absent``: documented patterns this run makes no file of -> why. Every model of the runs
    checked runs here (none behind an API), so each table a model writes carries every key documented."""
    contracts = documented_contracts()
    absent = dict(absent or {})
    assert set(absent) <= set(contracts), f"not documented: {sorted(set(absent) - set(contracts))}"
    files = Counter()
    for path in sorted(results.rglob("*.parquet")):
        relative = path.relative_to(results).as_posix()
        if relative.startswith("models/"):  # the converted weights, not a table of the workflow
            continue
        matching = [contract for contract in contracts.values() if contract.matches(relative)]
        assert len(matching) == 1, f"{relative} matches {[c.pattern for c in matching]} in {CONTRACTS_DOC.name}"
        contract = matching[0]
        files[contract.pattern] += 1
        columns = _stored_columns(path, contract)
        assert columns == list(contract.columns), f"{relative}: columns {columns}, documented {list(contract.columns)}"
        metadata_keys = {key.decode() for key in pq.read_schema(path).metadata or {}}
        assert {key for key in metadata_keys if key.startswith("uqroute.")} == contract.metadata_keys, (
            f"{relative}: metadata keys {sorted(metadata_keys)}, documented {sorted(contract.metadata_keys)}")
    missing = [pattern for pattern in contracts if not files[pattern] and pattern not in absent]
    assert not missing, f"documented tables without a file in {results}: {missing}"
