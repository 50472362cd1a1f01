"""P2: wall time of `snakemake --cores 2` on the embedded default, from no results at all.

    python bench/embedded_default.py [--keep-models]

Moves an existing `results/` aside (restored afterwards unless the run succeeds), runs the whole
DAG, then prints the wall time and the per-rule breakdown of the benchmark files. `--keep-models`
keeps the converted fp32 model folders (measures the steady state a user sees after the first run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from summary import rule_breakdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-models", action="store_true")
    parser.add_argument("--cores", default="2")
    args = parser.parse_args()

    results, benchmarks = ROOT / "results", ROOT / "benchmarks"
    stash = ROOT / f".results-before-bench-{int(time.time())}"
    if results.exists():
        results.rename(stash)
        if args.keep_models and (stash / "models").exists():
            results.mkdir()
            shutil.copytree(stash / "models", results / "models")
    shutil.rmtree(benchmarks, ignore_errors=True)

    snakemake = Path(sys.executable).with_name("snakemake")
    start = time.perf_counter()
    run = subprocess.run([str(snakemake), "--cores", args.cores, "--quiet"], cwd=ROOT)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        shutil.rmtree(results, ignore_errors=True)
        if stash.exists():
            stash.rename(results)
        raise SystemExit(f"workflow failed (exit {run.returncode}); previous results restored")
    shutil.rmtree(stash, ignore_errors=True)

    table = rule_breakdown(benchmarks)
    print(table.to_string(float_format="{:.1f}".format))
    print(f"\nP2 wall time: {wall:.1f} s ({wall / 60:.2f} min; target <= 10 min) "
          f"{'with' if args.keep_models else 'without'} pre-converted models")


if __name__ == "__main__":
    main()
