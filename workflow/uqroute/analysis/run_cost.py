"""What a run cost, read back from the files it leaves: the job times of its ``benchmark:`` files and the
engines its job logs name (model, dtype, and the machine: the CPU, on a CPU).

A run built in pieces (resumed after a stop, one dataset at a time) keeps one benchmark file per job, that of
the job's last attempt: time spent by attempts that were stopped and resumed is not in it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..engines.options import parse_engine_line

JOB_COLUMNS = ["rule", "job", "seconds", "max_rss_mb"]
ENGINE_COLUMNS = ["model", "kind", "dtype", "where", "jobs"]


def job_times(benchmarks: str | Path) -> pd.DataFrame:
    """One row per benchmark file under ``benchmarks`` (``<rule>/<job...>.tsv``, Snakemake's format): the rule,
    the job (its path below the rule), its wall seconds (column ``s``) and peak resident memory in MB (of the
    main Snakemake's process tree for a job run in a warm worker, see :mod:`uqroute.warm`)."""
    root = Path(benchmarks)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        try:
            last = pd.read_csv(path, sep="\t").iloc[-1]
            seconds, rss = float(last["s"]), float(pd.to_numeric(last.get("max_rss"), errors="coerce"))
        except (KeyError, IndexError, ValueError, pd.errors.ParserError) as err:
            raise ValueError(f"{path}: not a Snakemake benchmark file (a header with column 's' and a row): {err}") \
                from None
        relative = path.relative_to(root)
        rows.append({"rule": relative.parts[0], "job": str(Path(*relative.parts[1:]).with_suffix("")),
                     "seconds": seconds, "max_rss_mb": rss})
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def rule_times(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule, most job time first: ``jobs``, ``total_s``, ``mean_s``, ``max_s``, ``peak_rss_mb``."""
    if jobs.empty:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "mean_s", "max_s", "peak_rss_mb"])
    table = jobs.groupby("rule").agg(jobs=("seconds", "size"), total_s=("seconds", "sum"),
                                     mean_s=("seconds", "mean"), max_s=("seconds", "max"),
                                     peak_rss_mb=("max_rss_mb", "max"))
    return table.sort_values(["total_s", "rule"], ascending=[False, True]).reset_index()


def engine_runs(logs: str | Path) -> pd.DataFrame:
    """Which engines the run's jobs started, from the first engine line of each job log under ``logs``: one row
    per (model, kind, dtype, where) with the number of job logs that name it."""
    rows = []
    for path in sorted(Path(logs).rglob("*.log")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            found = next((fields for fields in map(parse_engine_line, handle) if fields), None)
        if found:
            rows.append({key: found[key] for key in ENGINE_COLUMNS[:-1]})
    if not rows:
        return pd.DataFrame(columns=ENGINE_COLUMNS)
    return (pd.DataFrame(rows).groupby(ENGINE_COLUMNS[:-1]).size().rename("jobs").reset_index()
            .sort_values(["model", "jobs"], ascending=[True, False], ignore_index=True))
