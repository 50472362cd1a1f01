"""Per-rule time breakdown of a finished run, from the `benchmark:` files of its jobs.

    python bench/summary.py [benchmarks/]

Snakemake writes one TSV per job (wall seconds `s`, peak memory `max_rss`); this sums them per rule.
Sums are CPU-side job times: with --cores 2, jobs overlap and the total exceeds the wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from uqroute.analysis.run_cost import job_times, rule_times


def main(argv: list[str]) -> None:
    root = Path(argv[1]) if len(argv) > 1 else Path("benchmarks")
    table = rule_times(job_times(root))
    if table.empty:
        raise SystemExit(f"{root}: no benchmark files (run the workflow first)")
    with pd.option_context("display.float_format", "{:.1f}".format, "display.width", 120):
        print(table.set_index("rule").to_string())
    print(f"\nsum of benchmarked job times: {table['total_s'].sum():.1f} s over {int(table['jobs'].sum())} jobs")


if __name__ == "__main__":
    main(sys.argv)
