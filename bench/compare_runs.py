"""Per-cell ROC AUC of two finished runs side by side (e.g. generation on transformers vs on vLLM).

    .venv/bin/python bench/compare_runs.py RESULTS_A RESULTS_B [--names hf vllm]

Reads each run's ``metrics/alignment.parquet`` and prints, for every (SLM, dataset, method) cell the two
runs share, both AUROCs, their difference and each run's SLM accuracy, then how many cells differ at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

CELL = ["slm", "dataset", "method"]


def compare(a: Path, b: Path, names: tuple[str, str]) -> pd.DataFrame:
    left, right = (pd.read_parquet(root / "metrics" / "alignment.parquet")[[*CELL, "accuracy", "auroc"]]
                   for root in (a, b))
    table = left.merge(right, on=CELL, suffixes=tuple(f" {name}" for name in names))
    table["auroc diff"] = table[f"auroc {names[1]}"] - table[f"auroc {names[0]}"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs=2)
    parser.add_argument("--names", nargs=2, default=["a", "b"])
    args = parser.parse_args()
    table = compare(*args.results, tuple(args.names))
    print(table.to_markdown(index=False, floatfmt=".3f"))
    differ = (table["auroc diff"].abs() > 1e-9).sum()
    print(f"\n{len(table)} shared cells; AUROC differs in {differ}; max |diff| {table['auroc diff'].abs().max():.3f}")


if __name__ == "__main__":
    main()
