"""Cost model: seconds per question per pass, measured from a run's own job logs, and what the paper grid costs in
GPU hours by a stated roofline over the tokens that run's tables hold.

    .venv/bin/python bench/cost_model.py [--run results-cpu-study] [--config config/cpu-study.yaml] ...

1. Per pass, from each model job's log: the seconds of the pass's batch loop (its progress bar's elapsed time, the
   same on every engine) over the questions it computed (batches resumed from a checkpoint are left out), with the
   job's CPU share (benchmark file: cpu_time / wall seconds; 1.0 = the one thread it was given ran all the time).
2. Per pass, from the run's tables: prompt tokens (prefill) and generated tokens (decode) per question, counted
   with the model's own tokenizer on the prompts the passes render.
3. A roofline over those tokens: prefill costs 2 x params FLOPs a token at a stated share of peak; a decoding step
   of a batch reads every weight once (bf16: 2 bytes a parameter) or does 2 x params x batch FLOPs, whichever
   takes longer, and serves one token to every sequence of the batch. Applied to this CPU (its copy bandwidth and
   bf16 GEMM rate measured here on one thread, as the jobs ran) it gives the efficiency the run reached; applied
   to an A100 and the paper grid's models and question counts it gives GPU hours, an estimate and no measurement.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from uqroute import REPO_ROOT
from uqroute.engines.options import parse_engine_line
from uqroute.paths import results_path

# ----------------------------------------------------------------------------------------------- the arithmetic


@dataclass(frozen=True)
class Hardware:
    """One device of a roofline: memory bandwidth (bytes/s), dense bf16 peak (FLOP/s), the share of that peak a
    prefill reaches, and how many sequences a decoding step serves at once."""

    name: str
    bandwidth: float
    peak_flops: float
    prefill_utilisation: float
    decode_batch: int


# A100 80GB SXM: HBM2e ~2.0 TB/s, 312 TFLOP/s dense bf16 (NVIDIA's data sheet).
A100 = Hardware("A100 80GB", bandwidth=2.0e12, peak_flops=312e12, prefill_utilisation=0.5, decode_batch=64)
BF16_BYTES = 2


def prefill_seconds(params: float, tokens: float, hardware: Hardware, devices: int = 1) -> float:
    """Compute-bound prefill: 2 FLOPs per parameter per prompt token, at the hardware's prefill utilisation."""
    return 2.0 * params * tokens / (hardware.peak_flops * hardware.prefill_utilisation * devices)


def decode_step_seconds(params: float, batch: int, hardware: Hardware, devices: int = 1,
                        bytes_per_param: float = BF16_BYTES) -> float:
    """One decoding step of ``batch`` sequences: every weight read once, or the batch's FLOPs, whichever is slower
    (KV-cache reads are left out: a lower bound that grows less tight with long contexts)."""
    memory = params * bytes_per_param / (hardware.bandwidth * devices)
    compute = 2.0 * params * batch / (hardware.peak_flops * hardware.prefill_utilisation * devices)
    return max(memory, compute)


def roofline_seconds(params: float, prompt_tokens: float, generated_tokens: float, hardware: Hardware,
                     batch: int | None = None, devices: int = 1, bytes_per_param: float = BF16_BYTES) -> float:
    """Seconds for one question: its prefill, plus its share of the decoding steps it takes part in (a step serves
    ``batch`` sequences, so a generated token costs a step over ``batch``)."""
    batch = batch or hardware.decode_batch
    step = decode_step_seconds(params, batch, hardware, devices, bytes_per_param)
    return prefill_seconds(params, prompt_tokens, hardware, devices) + generated_tokens * step / batch


def startup_gpu_hours(devices_per_job: Iterable[int], seconds_per_job: float) -> float:
    """GPU hours the jobs spend before their first token: each job holds all its GPUs while it starts."""
    return sum(int(d) for d in devices_per_job) * seconds_per_job / 3600


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median and range of per-dataset values, and how many there are."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not len(values):
        return {"n": 0, "median": math.nan, "min": math.nan, "max": math.nan}
    return {"n": len(values), "median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


def bootstrap_mean_interval(values: Sequence[float], resamples: int = 2000, seed: int = 50,
                            level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over datasets, resampling the datasets."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


# ----------------------------------------------------------------------------------------------- the job logs

# The last 100 % frame of a pass's batch loop (uqroute.passes): "<model> <pass>: 100%|...| 16/16 [01:34<00:00, ...".
BAR_DONE = re.compile(r"^(\S+) (\w+):\s+100%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<")
# A finished batch read back from a checkpoint instead of computed; its key starts with the pass name.
ENGINE_STARTED = re.compile(r"engine started in ([\d.]+) s")
RESUMED = re.compile(r"resumed batch ([a-z0-9_]+)-[a-z_]+-\d+-[0-9a-f]+ \((\d+) rows\)")


def clock_seconds(elapsed: str) -> int:
    """``mm:ss`` or ``h:mm:ss`` as seconds."""
    seconds = 0
    for part in elapsed.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def parse_job_log(text: str) -> dict:
    """What a model job's log says: its engine, dtype and CPU (the engine's first line), and per pass the seconds
    of its batch loop, its batches and the rows resumed from a checkpoint (computed by no engine in this job)."""
    engine = dtype = device = cpu = startup = None
    passes: dict[str, dict] = {}
    resumed: dict[str, int] = defaultdict(int)
    for line in re.split(r"[\r\n]+", text):
        if engine is None and (fields := parse_engine_line(line)):
            engine, dtype = fields["kind"], fields["dtype"]
            device, _, cpu = fields["where"].partition(" (")  # "cpu (<the CPU>)"; a GPU's names no CPU
            cpu = cpu.removesuffix(")") or None
        elif found := BAR_DONE.match(line):
            _, name, done, total, elapsed = found.groups()
            if done == total:
                passes[name] = {"seconds": clock_seconds(elapsed), "batches": int(total)}
        if found := ENGINE_STARTED.search(line):
            startup = float(found.group(1))
        for name, rows in RESUMED.findall(line):
            resumed[name] += int(rows)
    for name, timing in passes.items():
        timing["resumed_rows"] = resumed.get(name, 0)
    return {"engine": engine, "dtype": dtype, "device": device, "cpu": cpu, "startup": startup, "passes": passes}


def job_cpu_share(benchmark: Path) -> float:
    """CPU seconds over wall seconds of a job (its process tree), from its Snakemake benchmark file; NaN where
    absent."""
    if not benchmark.is_file():
        return math.nan
    row = pd.read_csv(benchmark, sep="\t").iloc[0]
    wall, cpu = float(row["s"]), pd.to_numeric(row.get("cpu_time"), errors="coerce")
    return float(cpu) / wall if wall > 0 else math.nan


def pass_table_path(run: Path, model: str, dataset: str, split: str, name: str) -> Path | None:
    """The table a pass wrote: a graded pass's replies (or, once graded, its table), or a hidden-state table."""
    from uqroute.passes import HIDDEN_PASSES

    hidden = name in HIDDEN_PASSES
    for kind in [name] if hidden else ["replies", "gen"]:
        fields = {"model": model, "dataset": dataset, "split": split}
        if not hidden:
            fields["pass_name"] = name
        path = Path(results_path(str(run), kind, **fields))
        if path.is_file():
            return path
    return None


def job_coordinates(log: Path, logs: Path) -> tuple[str, str, str, str]:
    """(rule, model, dataset, split) of a model job's log: logs/<rule>/<model>/<dataset>/<split>[/<pass>].log."""
    parts = log.relative_to(logs).with_suffix("").parts
    return parts[0], parts[1], parts[2], parts[3]


MODEL_RULES = ("generate", "generate_cell", "generate_train_cell", "hidden_states", "hidden_states_question")


def measured_passes(run: Path) -> pd.DataFrame:
    """One row per (model, dataset, split, pass) a finished job of ``run`` computed: seconds, questions, seconds
    per question, the job's CPU share, and the engine/dtype/CPU its log names."""
    rows = []
    logs = run / "logs"
    for rule in MODEL_RULES:
        for log in sorted((logs / rule).rglob("*.log")):
            parsed = parse_job_log(log.read_text(errors="replace"))
            _, model, dataset, split = job_coordinates(log, logs)
            share = job_cpu_share((run / "benchmarks" / log.relative_to(logs)).with_suffix(".tsv"))
            for name, timing in parsed["passes"].items():
                table = pass_table_path(run, model, dataset, split, name)
                if table is None:  # a later job replaced it, or it is being rebuilt
                    continue
                ids = pd.read_parquet(table, columns=["id"])["id"]
                questions = ids.nunique()
                rows_per_question = len(ids) / questions
                computed = questions - timing["resumed_rows"] / rows_per_question
                if computed < 1:
                    continue
                rows.append({"model": model, "dataset": dataset, "split": split, "pass": name, "rule": rule,
                             "engine": parsed["engine"], "startup": parsed["startup"], "dtype": parsed["dtype"],
                             "cpu": parsed["cpu"],
                             "seconds": timing["seconds"], "questions": questions, "computed": computed,
                             "s_per_question": timing["seconds"] / computed, "cpu_share": share})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- the tokens


def pass_tokens(run: Path, model: str, dataset: str, split: str, name: str, generation: Mapping) -> dict | None:
    """Mean prompt tokens (prefilled once per question) and generated tokens (all samples) per question of one
    pass, counted with the model's tokenizer on the prompts the pass renders from the run's tables."""
    from uqroute.engines.rendering import encode_prompt, render_prompt
    from uqroute.models import model_spec
    from uqroute.passes import HIDDEN_PASSES, pass_spec
    from uqroute.prompts import PromptSet

    table_path = pass_table_path(run, model, dataset, split, name)
    greedy_path = pass_table_path(run, model, dataset, split, "greedy")
    model_dir = run / "models" / model
    if table_path is None or greedy_path is None or not model_dir.is_dir():
        return None
    spec = model_spec(model)
    tokenizer = model_tokenizer(model_dir)
    table = pd.read_parquet(table_path)
    greedy = pd.read_parquet(greedy_path).set_index("id")
    ids = list(dict.fromkeys(table["id"]))

    def count(texts: Sequence[str]) -> list[int]:
        return [len(t) for t in tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if len(texts) else []

    if name == "greedy":
        prompts = [len(encode_prompt(tokenizer, greedy.at[i, "prompt"], spec)) for i in ids]
        replies = [len(greedy.at[i, "tokens"]) for i in ids]
        return {"prompt": float(np.mean(prompts)), "generated": float(np.mean(replies))}
    questions = pd.read_parquet(Path(results_path(str(run), "data", dataset=dataset, split=split))).set_index("id")
    prompt_set = PromptSet.load()
    items = [{**questions.loc[i].to_dict(), "id": i} for i in ids]
    replies = [greedy.at[i, "response"] for i in ids]
    if name in HIDDEN_PASSES:
        conversations = [HIDDEN_PASSES[name].prompt(prompt_set, item, reply) for item, reply in zip(items, replies)]
        generated = [0] * len(ids)
    else:
        spec_pass = pass_spec(name)
        settings = {"verbal1s_reasoning": generation.get("verbal1s_reasoning") or []}
        conversations = [spec_pass.conversation(prompt_set, item, reply, settings)
                         for item, reply in zip(items, replies)]
        if spec_pass.generates:
            per_row = pd.Series(count(table["response"].fillna("").tolist()), index=table.index)
            generated = per_row.groupby(table["id"]).sum().reindex(ids).tolist()
        else:
            generated = [1] * len(ids)  # p(True): one decoding step reads the candidates' probabilities
    prompts = [len(encode_prompt(tokenizer, render_prompt(tokenizer, c, spec), spec)) for c in conversations]
    return {"prompt": float(np.mean(prompts)), "generated": float(np.mean(generated))}


@functools.lru_cache(maxsize=None)
def model_tokenizer(model_dir: Path):
    """The tokenizer of a run's model folder, loaded once for all its tables."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


# ----------------------------------------------------------------------------------------------- this CPU's roofline


def measure_cpu(threads: int = 1, megabytes: int = 256, repeats: int = 10) -> Hardware:
    """This CPU on ``threads`` threads, as the jobs ran: copy bandwidth (read + write of a ``megabytes`` buffer) and
    the bf16 GEMM rate of a prefill-sized product; best of ``repeats``."""
    import torch

    torch.set_num_threads(threads)
    source = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    target = torch.empty_like(source)
    target.copy_(source)  # first touch of the pages is no bandwidth
    copy = min(_timed(lambda: target.copy_(source)) for _ in range(repeats))
    a = torch.randn(512, 576, dtype=torch.bfloat16)
    b = torch.randn(576, 1536, dtype=torch.bfloat16)
    gemm = min(_timed(lambda: a @ b) for _ in range(repeats * 3))
    return Hardware("this CPU", bandwidth=2 * source.numel() * 4 / copy, peak_flops=2 * 512 * 576 * 1536 / gemm,
                    prefill_utilisation=1.0, decode_batch=16)


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- the paper grid


def paper_grid_tables(config: Mapping) -> list[tuple[str, str, str, str, int]]:
    """(model, dataset, split, pass, questions) of every model pass the paper grid plans: the planner's generating
    pass tables, and the hidden-state tables its probes read (test splits, and the train splits probes learn from)."""
    from uqroute.datasets import dataset_info
    from uqroute.passes import GENERATING_PASSES
    from uqroute.plan import Grid
    from uqroute.uq.registry import method_spec

    grid = Grid(config)
    max_test, max_train = config["subset"]["max_test"], config["subset"]["max_train"]

    def questions(dataset: str, split: str) -> int:
        size, cap = dataset_info(dataset)["paper"][split], max_test if split == "test" else max_train
        return min(size, cap) if cap else size

    tables = [(m, d, s, p, questions(d, s)) for m, d, s, p in grid.generating_pass_tables]
    # p(True) generates nothing, so the planner's generating tables leave it out; it is a model job all the same.
    reading = [name for name in grid.slm_test_passes if name not in GENERATING_PASSES]
    tables += [(slm, d, "test", p, questions(d, "test")) for slm in grid.slms for d in grid.datasets for p in reading]
    hidden = sorted({method_spec(m).hidden for m in grid.methods if method_spec(m).needs_hidden})
    for name in hidden:
        tables += [(slm, d, "test", name, questions(d, "test")) for slm in grid.slms for d in grid.datasets]
        tables += [(slm, d, "train", name, questions(d, "train")) for slm in grid.slms for d in grid.trained_on]
    return tables


def tokens_for(measured: Mapping[tuple[str, str, str], dict], dataset: str, split: str, name: str,
               task_types: Mapping[str, str]) -> dict:
    """Measured tokens of (dataset, split, pass); else the same pass on the test split; else the median of the
    datasets of the same task type (a dataset the run did not have)."""
    for key in ((dataset, split, name), (dataset, "test", name)):
        if key in measured:
            return measured[key]
    alike = [v for (d, s, p), v in measured.items()
             if p == name and s == "test" and task_types.get(d) == task_types[dataset]]
    alike = alike or [v for (d, s, p), v in measured.items() if p == name and s == "test"]
    if not alike:
        raise LookupError(f"the run measured no {name} pass")
    return {key: float(np.median([v[key] for v in alike])) for key in ("prompt", "generated")}


def grid_gpu_hours(tables, slm_tokens, llm_tokens, config: Mapping, hardware: Hardware,
                   full_budgets: bool) -> pd.DataFrame:
    """GPU hours of every pass table of the paper grid by the roofline; ``full_budgets``: every reply fills its token
    budget (the upper scenario), else replies are as long as the run measured (the lower one). API models: tokens
    only."""
    from uqroute.datasets import dataset_info
    from uqroute.models import model_spec
    from uqroute.passes import HIDDEN_PASSES, pass_spec, token_budget
    from uqroute.plan import Grid

    grid = Grid(config)
    task_types = {d: dataset_info(d)["task_type"] for d in {t[1] for t in tables} | {k[0] for k in slm_tokens}}
    n_samples = int(config["generation"]["n_samples"])
    rows = []
    for model, dataset, split, name, questions in tables:
        measured = llm_tokens if model in grid.llms and (dataset, "test", name) in llm_tokens else slm_tokens
        tokens = dict(tokens_for(measured, dataset, split, name, task_types))
        task = task_types[dataset]
        if full_budgets:
            answer = token_budget("greedy", grid.pass_settings(dataset, "greedy"), task)
            quoted = tokens_for(slm_tokens, dataset, split, "greedy", task_types)["generated"]
            quotes_reply = (HIDDEN_PASSES[name] if name in HIDDEN_PASSES else pass_spec(name)).follows_greedy
            if quotes_reply:
                tokens["prompt"] += max(0.0, answer - quoted)
            if name not in HIDDEN_PASSES and pass_spec(name).generates:
                per_reply = token_budget(name, grid.pass_settings(dataset, name), task)
                tokens["generated"] = per_reply * (n_samples if pass_spec(name).sampled else 1)
        spec = model_spec(model)
        api = grid.engine_kind(model) == "openai" and name not in HIDDEN_PASSES
        devices = max(1, grid.gpus(model)) if not api else 0
        seconds = math.nan if api else roofline_seconds(spec.params_b * 1e9, tokens["prompt"], tokens["generated"],
                                                         hardware, devices=devices)
        rows.append({"model": model, "dataset": dataset, "split": split, "pass": name, "questions": questions,
                     "prompt_tokens": tokens["prompt"] * questions, "generated_tokens": tokens["generated"] * questions,
                     "devices": devices, "gpu_hours": seconds * questions * devices / 3600 if not api else 0.0,
                     "api": api})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- the report


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def fmt(value: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}g}"


def bracket(centre: float, low: float, high: float, digits: int = 3) -> str:
    return f"{fmt(centre, digits)} [{fmt(low, digits)}-{fmt(high, digits)}]"


def with_roofline(passes: pd.DataFrame, tokens: pd.DataFrame, cpu: Hardware, n_samples: int) -> pd.DataFrame:
    """The measured passes with their tokens and what the roofline of ``cpu`` predicts for each (``roofline_s``),
    decoding as the run did: a part's questions at once, times the samples of each in a sampled pass."""
    from uqroute.models import model_spec
    from uqroute.passes import PASSES

    merged = passes.merge(tokens, on=["model", "dataset", "split", "pass"], how="left")

    def predicted(row) -> float:
        rows = cpu.decode_batch * (n_samples if row["pass"] in PASSES and PASSES[row["pass"]].sampled else 1)
        return roofline_seconds(model_spec(row["model"]).params_b * 1e9, row["prompt"], row["generated"], cpu,
                                batch=rows)

    merged["roofline_s"] = merged.apply(predicted, axis=1) if len(merged) else []
    merged["roofline_share"] = merged["roofline_s"] / merged["s_per_question"]
    return merged


def per_pass_report(passes: pd.DataFrame) -> pd.DataFrame:
    """Per (model, engine, split, pass): seconds per question over datasets, tokens, CPU share, roofline share."""
    from uqroute.passes import HIDDEN_PASSES, PASS_NAMES

    order = {name: k for k, name in enumerate([*PASS_NAMES, *HIDDEN_PASSES])}
    passes = passes.sort_values(["model", "split", "pass"], key=lambda c: c.map(order) if c.name == "pass" else
                                (c == "train") if c.name == "split" else c)
    rows = []
    for (model, engine, split, name), group in passes.groupby(["model", "engine", "split", "pass"], sort=False):
        seconds = spread(group["s_per_question"])
        interval = bootstrap_mean_interval(group["s_per_question"].tolist())
        share = spread(group["roofline_share"])
        rows.append({"model (engine)": f"{model} ({engine})", "split": split, "pass": name,
                     "datasets": seconds["n"], "questions": int(group["computed"].sum()),
                     "s/question median [range]": bracket(seconds["median"], seconds["min"], seconds["max"]),
                     "mean, 95% CI over datasets": bracket(group["s_per_question"].mean(), *interval),
                     "prompt / generated tokens": " / ".join(fmt(group[c].median()) for c in ("prompt", "generated")),
                     "job CPU share": fmt(group["cpu_share"].median(), 2),
                     "CPU s/question median": fmt((group["s_per_question"] * group["cpu_share"]).median()),
                     "roofline / measured": bracket(share["median"], share["min"], share["max"], 2)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "results-cpu-study", help="a run's results folder")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "cpu-study.yaml",
                        help="the config the run was made with (its generation settings)")
    parser.add_argument("--paper", type=Path, default=REPO_ROOT / "config" / "paper.yaml")
    parser.add_argument("--threads", type=int, default=1, help="threads of this CPU's measurement (the jobs' own)")
    parser.add_argument("--cpu-bandwidth-gbs", type=float, help="skip measuring: this copy bandwidth")
    parser.add_argument("--cpu-gflops", type=float, help="skip measuring: this bf16 GEMM rate")
    parser.add_argument("--prefill-utilisation", type=float, default=A100.prefill_utilisation)
    parser.add_argument("--decode-batch", type=int, default=A100.decode_batch)
    parser.add_argument("--gpu-job-startup-s", type=float, default=120.0,
                        help="assumed seconds a GPU job spends loading its model and starting its engine")
    args = parser.parse_args()

    from uqroute.machine import cpu_description

    run_config = yaml.safe_load(args.config.read_text())
    generation = run_config["generation"]
    passes = measured_passes(args.run)
    if passes.empty:
        raise SystemExit(f"{args.run}: no finished model pass in its logs")
    named = {column: ", ".join(sorted(set(passes[column].dropna()))) for column in ("cpu", "engine", "dtype")}
    print(f"run: {args.run}; its jobs' CPU: {named['cpu']}; engines: {named['engine']}; dtype: {named['dtype']}")
    share = spread(passes["cpu_share"])
    print(f"jobs' CPU share (cpu_time / s of their benchmark files): median {share['median']:.2f} "
          f"[{share['min']:.2f}-{share['max']:.2f}]")
    print(f"this process's CPU: {cpu_description()}")

    cpu = measure_cpu(args.threads)
    if args.cpu_bandwidth_gbs:
        cpu = replace(cpu, bandwidth=args.cpu_bandwidth_gbs * 1e9)
    if args.cpu_gflops:
        cpu = replace(cpu, peak_flops=args.cpu_gflops * 1e9)
    cpu = replace(cpu, decode_batch=int(generation.get("part_size", 16)))
    print(f"this CPU on {args.threads} thread(s): copy bandwidth {cpu.bandwidth / 1e9:.1f} GB/s, "
          f"bf16 GEMM {cpu.peak_flops / 1e9:.1f} GFLOP/s (the roofline's peak here; prefill at 100 % of it), "
          f"decode rows per step: {cpu.decode_batch} questions (x{generation.get('n_samples', 5)} when sampled)")

    token_rows = []
    for (model, dataset, split, name), _ in passes.groupby(["model", "dataset", "split", "pass"]):
        counted = pass_tokens(args.run, model, dataset, split, name, generation)
        if counted:
            token_rows.append({"model": model, "dataset": dataset, "split": split, "pass": name, **counted})
    tokens = pd.DataFrame(token_rows)

    print(f"\n## Seconds per question per pass ({len(passes)} passes of {passes['dataset'].nunique()} datasets)\n")
    passes = with_roofline(passes, tokens, cpu, int(generation.get("n_samples", 5)))
    print(markdown(per_pass_report(passes)))
    startups = passes.drop_duplicates(["rule", "model", "dataset", "split"]).dropna(subset=["startup"])
    for engine, group in startups.groupby("engine"):
        logged = spread(group["startup"])
        print(f"\n{engine} engine start-ups its logs name (not in the seconds above): {logged['n']} jobs, median "
              f"{logged['median']:.1f} s [{logged['min']:.1f}-{logged['max']:.1f}]")

    paper = yaml.safe_load(args.paper.read_text())
    slms = set(run_config["slms"])
    slm_tokens = {(r.dataset, r.split, r.pass_): {"prompt": r.prompt, "generated": r.generated}
                  for r in tokens.rename(columns={"pass": "pass_"}).itertuples() if r.model in slms}
    llm_tokens = {(r.dataset, r.split, r.pass_): {"prompt": r.prompt, "generated": r.generated}
                  for r in tokens.rename(columns={"pass": "pass_"}).itertuples() if r.model not in slms}
    gpu = replace(A100, prefill_utilisation=args.prefill_utilisation, decode_batch=args.decode_batch)
    tables = paper_grid_tables(paper)
    try:
        low = grid_gpu_hours(tables, slm_tokens, llm_tokens, paper, gpu, full_budgets=False)
        high = grid_gpu_hours(tables, slm_tokens, llm_tokens, paper, gpu, full_budgets=True)
    except LookupError as missing:
        print(f"\nNo estimate of the paper grid: {missing} (it needs every pass the grid plans).")
        return
    print(f"\n## The paper grid on {gpu.name} by the roofline (an estimate, not a measurement)\n")
    print(f"{len(tables)} model passes, {low['questions'].sum():,} question-passes; bf16 weights, bandwidth "
          f"{gpu.bandwidth / 1e12:.1f} TB/s, peak {gpu.peak_flops / 1e12:.0f} TFLOP/s, prefill at "
          f"{gpu.prefill_utilisation:.0%} of it, decode {gpu.decode_batch} sequences a step; low: replies as long as "
          f"the run's, high: every reply fills the paper config's budget\n")
    slm_names = set(paper["slms"])
    role = lambda table: table["model"].where(~table["model"].isin(slm_names), f"{len(slm_names)} SLMs")
    low, high = low.assign(role=role(low)), high.assign(role=role(high))
    summary = []
    for (who, name), group in low.groupby(["role", "pass"], sort=False):
        upper = high[(high["role"] == who) & (high["pass"] == name)]
        summary.append({"models": who, "pass": name, "question-passes": f"{int(group['questions'].sum()):,}",
                        "GPUs a job": int(group["devices"].max()),
                        "GPU hours low-high": "API" if group["api"].all() else
                        f"{group['gpu_hours'].sum():.2f}-{upper['gpu_hours'].sum():.2f}",
                        "generated tokens (M) low-high": f"{group['generated_tokens'].sum() / 1e6:.1f}-"
                                                        f"{upper['generated_tokens'].sum() / 1e6:.1f}"})
    print(markdown(pd.DataFrame(summary)))
    by_model = pd.DataFrame({"low": low.groupby("model", sort=False)["gpu_hours"].sum(),
                             "high": high.groupby("model", sort=False)["gpu_hours"].sum()})
    print("\nper model (GPU hours, low-high): "
          + "; ".join(f"{m} {r.low:.1f}-{r.high:.1f}" for m, r in by_model.iterrows()))
    startup = startup_gpu_hours(low["devices"], args.gpu_job_startup_s)
    print(f"start-up, assumed (not measured): {int((low['devices'] > 0).sum())} GPU jobs x "
          f"{args.gpu_job_startup_s:.0f} s x their GPUs = {startup:.1f} GPU hours")
    api, api_high = low[low["api"]], high[high["api"]]
    if len(api):
        print(f"API model(s) {', '.join(sorted(set(api['model'])))}: {api['prompt_tokens'].sum() / 1e6:.1f}M prompt "
              f"tokens, {api['generated_tokens'].sum() / 1e6:.1f}-{api_high['generated_tokens'].sum() / 1e6:.1f}M "
              "generated (no GPU hours)")
    share = spread(passes["roofline_share"])
    print(f"at the share of its roofline this run reached (median {share['median']:.2f}, range {share['min']:.2f}-"
          f"{share['max']:.2f} over {share['n']} passes; another device and engine, so a bracket, not a prediction): "
          f"{low['gpu_hours'].sum() / share['median']:.0f}-{high['gpu_hours'].sum() / share['median']:.0f} GPU hours "
          "besides start-up")
    compute = low["gpu_hours"].sum(), high["gpu_hours"].sum()
    print(f"**paper grid: {compute[0]:.1f}-{compute[1]:.1f} A100 GPU hours at the roofline, "
          f"{compute[0] + startup:.1f}-{compute[1] + startup:.1f} with the assumed start-ups**")


if __name__ == "__main__":
    main()
