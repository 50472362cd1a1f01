"""Per-rule time breakdown of a finished run, from the `benchmark:` files of its jobs.

    python bench/summary.py [benchmarks/]

Snakemake writes one TSV per job (wall seconds `s`, peak memory `max_rss`); this sums them per rule.
Sums are CPU-side job times: with --cores 2, jobs overlap and the total exceeds the wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def rule_breakdown(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rule = path.relative_to(root).parts[0]
        table = pd.read_csv(path, sep="\t")
        rows.append({"rule": rule, "job": str(path.relative_to(root).with_suffix("")), "seconds": float(table["s"].iloc[0]),
                     "max_rss_mb": float(pd.to_numeric(table["max_rss"], errors="coerce").iloc[0])})
    if not rows:
        raise SystemExit(f"{root}: no benchmark files (run the workflow first)")
    jobs = pd.DataFrame(rows)
    return (jobs.groupby("rule")
            .agg(jobs=("job", "size"), total_s=("seconds", "sum"), mean_s=("seconds", "mean"),
                 max_s=("seconds", "max"), peak_rss_mb=("max_rss_mb", "max"))
            .sort_values("total_s", ascending=False))


def main(argv: list[str]) -> None:
    root = Path(argv[1]) if len(argv) > 1 else Path("benchmarks")
    table = rule_breakdown(root)
    with pd.option_context("display.float_format", "{:.1f}".format, "display.width", 120):
        print(table.to_string())
    print(f"\nsum of benchmarked job times: {table['total_s'].sum():.1f} s over {int(table['jobs'].sum())} jobs")


if __name__ == "__main__":
    main(sys.argv)
