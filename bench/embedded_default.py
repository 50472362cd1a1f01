"""P2: wall time of `snakemake --cores 2` on the embedded default, from no results at all.

    python bench/embedded_default.py [--keep-models] [--overlay config/vllm-cpu.yaml]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/embedded_default.py   # as on an AVX2-only CPU

Moves an existing `results/` aside (restored afterwards unless the run succeeds), runs the whole
DAG, then prints the wall time and the per-rule breakdown of the benchmark files. `--keep-models`
keeps the converted fp32 model folders (measures the steady state a user sees after the first run);
without it the run also gets an empty model store (`$UQROUTE_MODEL_STORE`, a temp folder), so that it
converts the models as on a new machine instead of linking the store's copies.
`--overlay` adds config files over config/config.yaml (config/vllm-cpu.yaml: generation on vLLM);
the time vLLM engines took to start is summed from the generate job logs. Prints the CPU (model,
PyTorch's capability, native bf16 or not, cores) and the dtype ``auto`` chose beside the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from uqroute.analysis.run_cost import job_times, rule_times
from uqroute.engines.options import resolve_dtype
from uqroute.gguf import MODEL_STORE_ENV
from uqroute.machine import cpu_description
from uqroute.paths import model_folder

ROOT = Path(__file__).resolve().parents[1]
# uqroute.engines.vllm_engine.STARTUP_MESSAGE as it appears in a log.
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
STARTUP_LINE = re.compile(r"vLLM engine started in ([0-9.]+) s")


def capped() -> str:
    """The PyTorch back-end caps in force (an AMX or AVX-512 BF16 CPU standing in for an AVX2-only one)."""
    caps = [f"{name}={os.environ[name]}" for name in CAPS if os.environ.get(name)]
    return f" capped by {' '.join(caps)}" if caps else ""


def engine_startup_seconds(logs: Path) -> tuple[int, float]:
    """(vLLM engines started, seconds they took) over every job log under ``logs``."""
    times = [float(m.group(1)) for path in logs.rglob("*.log") for m in STARTUP_LINE.finditer(path.read_text())]
    return len(times), sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-models", action="store_true")
    parser.add_argument("--cores", default="2")
    parser.add_argument("--overlay", nargs="*", default=[], help="config files applied over config/config.yaml")
    args = parser.parse_args()

    results, benchmarks = ROOT / "results", ROOT / "benchmarks"
    stash = ROOT / f".results-before-bench-{int(time.time())}"
    if results.exists():
        results.rename(stash)
        # The workflow's fp32 model folders (uqroute.paths), kept when asked: the run then skips the conversion.
        kept = model_folder(stash, "")
        if args.keep_models and kept.exists():
            results.mkdir()
            shutil.copytree(kept, model_folder(results, ""))
    shutil.rmtree(benchmarks, ignore_errors=True)
    shutil.rmtree(ROOT / "logs", ignore_errors=True)
    configs = ["--configfile", "config/config.yaml", *args.overlay] if args.overlay else []

    snakemake = Path(sys.executable).with_name("snakemake")
    with tempfile.TemporaryDirectory(prefix="uqroute-model-store-") as empty_store:
        env = dict(os.environ) if args.keep_models else {**os.environ, MODEL_STORE_ENV: empty_store}
        start = time.perf_counter()
        run = subprocess.run([str(snakemake), "--cores", args.cores, "--quiet", *configs], cwd=ROOT, env=env)
        wall = time.perf_counter() - start
    if run.returncode != 0:
        shutil.rmtree(results, ignore_errors=True)
        if stash.exists():
            stash.rename(results)
        raise SystemExit(f"workflow failed (exit {run.returncode}); previous results restored")
    shutil.rmtree(stash, ignore_errors=True)

    table = rule_times(job_times(benchmarks))
    print(table.to_string(index=False, float_format="{:.1f}".format))
    started, startup = engine_startup_seconds(ROOT / "logs")
    print(f"\njobs: {int(table['jobs'].sum())}; sum of job times {table['total_s'].sum():.1f} s; "
          f"{started} vLLM engine start-ups took {startup:.1f} s of it")
    print(f"CPU: {cpu_description()}{capped()}; dtype auto -> {resolve_dtype('auto', 'cpu')}")
    print(f"P2 wall time: {wall:.1f} s ({wall / 60:.2f} min; target <= 5 min) "
          f"{'with' if args.keep_models else 'without'} pre-converted models, "
          f"config {' + '.join(['config/config.yaml', *args.overlay])}")


if __name__ == "__main__":
    main()
