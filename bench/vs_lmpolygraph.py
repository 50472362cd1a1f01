"""Wall time of uqroute's passes + UQ functions vs lm-polygraph 0.7.0's UEManager (target: >= 10x faster).

Same SLM (SmolLM2-135M fp32 copy), same questions, same token budgets (per task type, from
config/config.yaml), m = 5 samples at temperature 1, the five methods both tools have:

=================  ===================================  ==========================================
uqroute            lm-polygraph                         its score as our confidence
=================  ===================================  ==========================================
avg_token_prob     MaximumSequenceProbability (MSP)     exp(-u): the sequence probability, not the
                                                        mean token / option-token probability
perplexity         Perplexity                           exp(-u) (its ll include the EOS token)
p_true             PTrue                                exp(-u) = raw p(True) on its own prompt
jaccard_degree     DegMat(similarity_score="Jaccard")   1 - u (its own samples, other random draws)
verbal_2s          Verbalized2S(our follow-up prompt)   (1 - u) / 100 (first number of the reply)
=================  ===================================  ==========================================

(a) uqroute: ``run_pass`` greedy, sample, ptrue and verbal2s with the HF or vLLM engine (batched),
then ``score_method`` for the five methods. (b) lm-polygraph: one ``UEManager`` per task type
(its token budget is per manager) with the five estimators and its default Whitebox stat
calculators, except that the sampling calculator draws 5 samples (its default is 10) and
the greedy calculator skips attention maps and hidden states, which none of these
estimators reads; ``--polygraph-defaults`` keeps them (what ``estimate_uncertainty`` does).
Model loading and one warm-up call per side are outside the timings. Both run in this
process, one after the other, on ``--threads`` torch threads.

    .venv-polygraph/bin/python bench/vs_lmpolygraph.py [--per-dataset 5] [--threads 2] [--polygraph-batch-size 16]
        [--repeats 1] [--forward-work]

Both tools run the weights in ``--dtype`` (``--polygraph-dtype`` sets lm-polygraph's apart, for the
unequal comparisons of earlier runs). ``--engine vllm`` runs uqroute's side on its vLLM engine: vLLM
lives in the project venv and lm-polygraph in its own, so that side runs first, in a child process
of ``--uqroute-python`` (default ``.venv/bin/python``) that times the same steps after its own
start-up and warm-up and hands back its timings and confidences as JSON. ``--baseline CHECKOUT`` runs
such a child on another checkout's uqroute first (the code before a change), so that both are timed
against the same lm-polygraph run, under the same machine load. ``--repeats N`` times N runs of
each side, each of our runs starting without what the last one left in the engine (stored
conversations, vLLM's prefix cache), as a new job does, and prints the totals as median and range:
when both sides run in this process they alternate and the run-by-run ratio is printed; when ours
runs in a child, its N runs come before lm-polygraph's N and the ratio of the medians is printed.
``--forward-work`` (transformers engine only) also counts, on each side's model, the forward passes of every
run: decoding steps (one new token a row) and prefills (several), with their rows, tokens and seconds, and the
seconds spent outside them, so that the two tools' step counts and per-step costs are read side by side.
"""

from __future__ import annotations

import os

# See lmpolygraph_agreement.py: spinning OpenMP threads crawl on a shared two-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmpolygraph_agreement import (
    DATASETS,
    SLM,
    agreement,
    generation_settings,
    load_questions,
    polygraph_model,
    slm_dir,
    user_texts,
)
from uqroute import REPO_ROOT
from uqroute.engines import Sampling, make_engine
from uqroute.models import model_spec
from uqroute.passes import run_pass
from uqroute.prompts import PromptSet
from uqroute.uq import score_method

# uqroute method -> (lm-polygraph estimator name, uncertainty -> confidence)
SHARED = {
    "avg_token_prob": ("MaximumSequenceProbability", lambda u: np.exp(-u)),
    "perplexity": ("Perplexity", lambda u: np.exp(-u)),
    "p_true": ("PTrue", lambda u: np.exp(-u)),
    "jaccard_degree": ("DegMat_Jaccard_score", lambda u: 1.0 - u),
    "verbal_2s": ("Verbalized2S", lambda u: (1.0 - u) / 100.0),
}
CONFIDENCE_REGEX = r"(\d+(?:\.\d+)?)"


class ForwardMeter:
    """Every forward pass of one transformers model since it was hooked: its rows, query length, seconds and
    whether it was a prefill.

    Hooks on the model's own ``forward`` see both tools' calls (our engine's loop, lm-polygraph's ``generate``
    and its p(True) forward). A pass inside :meth:`mark_prefills`' method is a prefill, whatever its length (our
    sample pass prefills one token a row after the stored greedy prompt); otherwise a pass of query length 1 is
    a decoding step and a longer one a prefill."""

    def __init__(self, model):
        self.calls: list[tuple[int, int, float, bool]] = []
        self.prefilling = False
        self._shape: tuple[int, int] = (0, 0)
        self._started = 0.0
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after, with_kwargs=True)

    def mark_prefills(self, owner, method: str) -> None:
        """Count every forward pass that ``owner.method`` runs as a prefill."""
        prefill = getattr(owner, method)

        def marked(*args, **kwargs):
            self.prefilling = True
            try:
                return prefill(*args, **kwargs)
            finally:
                self.prefilling = False

        setattr(owner, method, marked)

    def _before(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._shape = tuple(ids.shape[:2]) if ids is not None else tuple(kwargs["inputs_embeds"].shape[:2])
        self._started = time.perf_counter()

    def _after(self, module, args, kwargs, output) -> None:
        rows, length = self._shape
        self.calls.append((rows, length, time.perf_counter() - self._started, self.prefilling or length > 1))

    def summary(self, total: float) -> dict[str, float]:
        """Decoding steps and prefills of the calls since ``calls`` was last cleared (count, rows, tokens,
        seconds), and what of ``total`` seconds went outside them."""
        calls = np.array(self.calls, dtype=float).reshape(-1, 4)
        is_prefill = calls[:, 3] > 0
        step, prefill = calls[~is_prefill], calls[is_prefill]
        return {
            "steps": len(step), "step rows": step[:, 0].sum(), "step s": step[:, 2].sum(),
            "ms per step": 1e3 * step[:, 2].mean() if len(step) else float("nan"),
            "rows per step": step[:, 0].mean() if len(step) else float("nan"),
            "prefills": len(prefill), "prefill tokens": (prefill[:, 0] * prefill[:, 1]).sum(),
            "prefill s": prefill[:, 2].sum(), "outside s": total - calls[:, 2].sum(),
        }


def print_forward_work(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    """The two sides' forward passes in one table (per run: the value, or the median and range over the runs)
    and lm-polygraph's over ours (the ratio of the medians)."""
    def cell(runs: list[dict[str, float]], key: str) -> str:
        values = [run[key] for run in runs]
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    print(f"forward passes per run, {'the one run' if len(ours) == 1 else f'median (range) of {len(ours)} runs'} "
          "(decoding step: one new token a row; prefill tokens count the padding):")
    print(f"{'':>15} {'uqroute':>22} {'lm-polygraph':>24} {'ratio':>7}")
    for key in ours[0]:
        mine, yours = np.median([run[key] for run in ours]), np.median([run[key] for run in theirs])
        ratio = f"{yours / mine:.2f}x" if mine else "-"
        print(f"{key:>15} {cell(ours, key):>22} {cell(theirs, key):>24} {ratio:>7}")


def run_uqroute(engine, questions: pd.DataFrame, prompts: PromptSet, settings: dict) -> tuple[dict, dict]:
    """(seconds per step, confidence per shared method), steps timed in the order the workflow runs them.

    Each call starts as a new cell job does: without the conversations a previous call left in the engine (the
    transformers engine's stored conversations, vLLM's prefix cache)."""
    if getattr(engine, "prefixes", None) is not None:
        engine.prefixes.clear()
    if getattr(engine, "llm", None) is not None:
        engine.llm.reset_prefix_cache()
    seconds: dict[str, float] = {}
    passes: dict[str, pd.DataFrame] = {}
    for name in ("greedy", "sample", "ptrue", "verbal2s"):
        start = time.perf_counter()
        passes[name] = run_pass(name, engine, questions, prompts, settings, greedy=passes.get("greedy"))
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    scores = {m: score_method(m, passes, questions)["confidence"].to_numpy() for m in SHARED}
    seconds["uq functions"] = time.perf_counter() - start
    return seconds, scores


def sampling_builder(n_samples: int) -> str:
    """A module name lm-polygraph's calculator factory can import to build its sampler with m samples.

    Its default builder constructs the sampling calculator without arguments (10 samples).
    """
    from lm_polygraph.stat_calculators import SamplingGenerationCalculator

    name = f"_polygraph_sampling_{n_samples}"
    module = types.ModuleType(name)
    module.load_stat_calculator = lambda config, environment: SamplingGenerationCalculator(samples_n=n_samples)
    sys.modules[name] = module
    return name


def polygraph_calculators(n_samples: int, keep_defaults: bool):
    from lm_polygraph.defaults.register_default_stat_calculators import register_default_stat_calculators

    calculators = register_default_stat_calculators(
        "Whitebox", output_attentions=keep_defaults, output_hidden_states=keep_defaults
    )
    builder = sampling_builder(n_samples)
    for container in calculators:
        if container.name == "SamplingGenerationCalculator":
            container.builder = builder
    return calculators


def polygraph_estimators(follow_up: str, verbal_budget: int) -> list:
    from lm_polygraph.estimators import DegMat, MaximumSequenceProbability, Perplexity, PTrue, Verbalized2S

    return [MaximumSequenceProbability(), Perplexity(), PTrue(), DegMat(similarity_score="Jaccard_score"),
            Verbalized2S(confidence_prompt=follow_up, confidence_regex=CONFIDENCE_REGEX, max_new_tokens=verbal_budget)]


def run_polygraph(model, texts: list[str], task_types: list[str], settings: dict, follow_up: str,
                  batch_size: int, keep_defaults: bool) -> tuple[dict, dict]:
    """(seconds per task type, confidence per shared method): one UEManager per task type."""
    from lm_polygraph.utils.builder_enviroment_stat_calculator import BuilderEnvironmentStatCalculator
    from lm_polygraph.utils.dataset import Dataset
    from lm_polygraph.utils.manager import UEManager

    calculators = polygraph_calculators(int(settings["n_samples"]), keep_defaults)
    uncertainty = {name: np.full(len(texts), np.nan) for name, _ in SHARED.values()}
    seconds: dict[str, float] = {}
    for task_type in sorted(set(task_types)):
        rows = [i for i, t in enumerate(task_types) if t == task_type]
        start = time.perf_counter()
        manager = UEManager(
            Dataset([texts[i] for i in rows], [""] * len(rows), batch_size=batch_size),
            model,
            polygraph_estimators(follow_up, int(settings["verbal_max_new_tokens"])),
            BuilderEnvironmentStatCalculator(model),
            calculators,
            generation_metrics=[],
            ue_metrics=[],
            processors=[],
            ignore_exceptions=False,
            verbose=False,
            max_new_tokens=int(settings["max_new_tokens"][task_type]),
        )
        manager()
        seconds[f"UEManager {task_type}"] = time.perf_counter() - start
        for name in uncertainty:
            uncertainty[name][rows] = np.asarray(manager.estimations["sequence", name], dtype=float)
    scores = {method: convert(uncertainty[name]) for method, (name, convert) in SHARED.items()}
    return seconds, scores


def warm_up(engine, polygraph, prompts: PromptSet, questions: pd.DataFrame, texts: list[str]) -> None:
    """One tiny call per side, so first-call allocations are not timed (what it leaves in our engine,
    :func:`run_uqroute` clears)."""
    if engine is not None:
        engine.generate([prompts.answer(questions.iloc[0].to_dict())], Sampling(max_new_tokens=2))
    if polygraph is not None:
        polygraph.generate_texts([texts[0]], max_new_tokens=2)


def build_engine(args, settings: dict):
    """uqroute's engine on the SLM's fp32 copy, in ``args.dtype``."""
    options = dict(model_dir=slm_dir(), device="cpu", dtype=args.dtype, progress=False)
    if args.engine == "vllm":
        # Compiled (not eager): start-up is outside the timings, decoding speed is what is compared.
        options.update(kind="vllm", kv_cache_memory_bytes=1 << 30, max_model_len=2048)
    else:
        options.update(kind="hf", batch_size=int(settings["part_size"]), threads=args.threads)
    return make_engine(model_spec(SLM), **options)


def uqroute_child(args, settings: dict, questions: pd.DataFrame, prompts: PromptSet) -> None:
    """The uqroute side alone (``--uqroute-only FILE``): its start-up, timings and confidences to FILE."""
    start = time.perf_counter()
    engine = build_engine(args, settings)
    warm_up(engine, None, prompts, questions, [])
    startup = time.perf_counter() - start
    load_before = os.getloadavg()[0]
    runs = [timed(run_uqroute, engine, questions, prompts, settings) for _ in range(args.repeats)]
    engine.close()
    steps, scores, _ = runs[-1]
    Path(args.uqroute_only).write_text(json.dumps({
        "startup": startup, "totals": [total for _, _, total in runs], "steps": steps, "load_before": load_before,
        "scores": {method: [None if not np.isfinite(v) else float(v) for v in values]
                   for method, values in scores.items()},
    }))


def timed(run, *args) -> tuple[dict, dict, float]:
    """``run(*args)`` (:func:`run_uqroute` or :func:`run_polygraph`: seconds per step, confidences) and its total
    seconds."""
    start = time.perf_counter()
    steps, scores = run(*args)
    return steps, scores, time.perf_counter() - start


def spread(values: list[float]) -> str:
    """``median (min-max, n runs)`` of ``values``, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.median(values):.2f} (range {min(values):.2f}-{max(values):.2f}, n = {len(values)} runs)"


def uqroute_in_child(args, argv: list[str], checkout: Path | None = None) -> tuple[dict, dict, list[float], float]:
    """(steps of the last run, confidences, total seconds of each run, start-up seconds) of the uqroute side run
    by ``--uqroute-python``, on the uqroute package of ``checkout`` (a folder holding ``workflow/uqroute``) when
    one is given."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(checkout).resolve() / "workflow"), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "uqroute.json"
        command = [str(args.uqroute_python), str(Path(__file__).resolve()), *argv, "--uqroute-only", str(out)]
        subprocess.run(command, check=True, cwd=REPO_ROOT, env=env)
        report = json.loads(out.read_text())
    scores = {method: np.array([np.nan if v is None else v for v in values], dtype=float)
              for method, values in report["scores"].items()}
    return report["steps"], scores, report["totals"], report["startup"]


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without the option ``name`` and its value (``name VALUE`` or ``name=VALUE``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(f"{name}="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "config.yaml")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--per-dataset", type=int, default=5)
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="the weights' dtype on both sides (the embedded default runs auto: bfloat16 on a bf16 CPU)")
    parser.add_argument("--polygraph-dtype", choices=["float32", "bfloat16"], default=None,
                        help="lm-polygraph's weights when they should differ from --dtype (default: the same)")
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="uqroute's engine")
    parser.add_argument("--uqroute-python", type=Path, default=REPO_ROOT / ".venv" / "bin" / "python",
                        help="the interpreter of the project's venv, which runs the uqroute side in a child "
                             "process (--engine vllm, or --baseline)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also time the uqroute of this checkout (e.g. a worktree of the main branch) before "
                             "this one's, both in child processes and against the same lm-polygraph run")
    parser.add_argument("--uqroute-only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--polygraph-batch-size", type=int, default=None,
                        help="questions per UEManager batch (default: the config's generation.part_size)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs of each side (with the hf engine in this process they alternate and the "
                             "run-by-run ratio is printed; a child process runs its side's repeats before "
                             "lm-polygraph's and the ratio of the medians is printed)")
    parser.add_argument("--polygraph-defaults", action="store_true",
                        help="keep its greedy calculator's attention maps and hidden states (eager attention)")
    parser.add_argument("--forward-work", action="store_true",
                        help="count each side's forward passes in every run (decoding steps, prefills, their "
                             "rows, tokens and seconds: median and range over --repeats); transformers engine, "
                             "both sides in this process")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.forward_work and (args.engine != "hf" or args.baseline is not None):
        parser.error("--forward-work hooks both sides' transformers models in this process: "
                     "--engine hf, without --baseline")
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU
    polygraph_dtype = args.polygraph_dtype or args.dtype

    torch.set_num_threads(args.threads)
    settings = generation_settings(args.config)
    questions = load_questions(args.data_dir, args.datasets, args.per_dataset, args.seed)
    prompts = PromptSet.load()
    texts = user_texts(prompts, questions)
    task_types = questions["task_type"].astype(str).tolist()
    follow_up = prompts.verbal2s(questions.iloc[0].to_dict(), "")[-1]["content"]
    if any(prompts.verbal2s(item, "")[-1]["content"] != follow_up for item in questions.to_dict("records")):
        raise ValueError(f"{prompts.path}: verbal2s differs by task type; Verbalized2S takes one follow-up prompt")
    batch_size = args.polygraph_batch_size or int(settings["part_size"])
    if args.uqroute_only:
        uqroute_child(args, settings, questions, prompts)
        return

    baseline = None
    # vLLM lives in the project's venv, and a baseline is another checkout's code: our side in children then.
    in_child = args.engine == "vllm" or args.baseline is not None
    if in_child:
        child_argv = without_option(argv, "--baseline")
        if args.baseline is not None:
            baseline_load = os.getloadavg()[0]
            baseline = uqroute_in_child(args, child_argv, args.baseline)
            print(f"baseline uqroute ({args.baseline}): engine started and warmed up in {baseline[3]:.1f} s "
                  "(not timed below)")
        load_before = os.getloadavg()[0]
        ours_steps, ours, ours_totals, startup = uqroute_in_child(args, child_argv)
        print(f"uqroute ({args.engine}, child process): engine started and warmed up in {startup:.1f} s "
              "(not timed below)")
        start = time.perf_counter()
        polygraph = polygraph_model(slm_dir(), "eager" if args.polygraph_defaults else "sdpa", polygraph_dtype)
        warm_up(None, polygraph, prompts, questions, texts)
        print(f"lm-polygraph model loaded and warmed up in {time.perf_counter() - start:.1f} s (not timed below)")
    else:
        start = time.perf_counter()
        engine = build_engine(args, settings)
        polygraph = polygraph_model(slm_dir(), "eager" if args.polygraph_defaults else "sdpa", polygraph_dtype)
        warm_up(engine, polygraph, prompts, questions, texts)
        print(f"models loaded and warmed up in {time.perf_counter() - start:.1f} s (not timed below)")
        load_before = os.getloadavg()[0]
    polygraph_run = functools.partial(timed, run_polygraph, polygraph, texts, task_types, settings, follow_up,
                                      batch_size, args.polygraph_defaults)
    if in_child:
        load_between = os.getloadavg()[0]
        theirs_runs = [polygraph_run() for _ in range(args.repeats)]
    else:
        # Alternating runs (ours, theirs, ours, ...), so that a change in the machine's load falls on both sides.
        ours_totals, theirs_runs = [], []
        meters = (ForwardMeter(engine.model), ForwardMeter(polygraph.model)) if args.forward_work else ()
        if meters:
            meters[0].mark_prefills(engine, "_prefill")
        work: tuple[list, list] = ([], [])  # per side, a summary of each run's forward passes
        for index in range(args.repeats):
            for meter in meters:
                meter.calls.clear()
            ours_steps, ours, total = timed(run_uqroute, engine, questions, prompts, settings)
            ours_totals.append(total)
            if index == 0:
                load_between = os.getloadavg()[0]
            theirs_runs.append(polygraph_run())
            for meter, runs, seconds in zip(meters, work, (total, theirs_runs[-1][2])):
                runs.append(meter.summary(seconds))
    load_after = os.getloadavg()[0]
    theirs_steps, theirs, _ = theirs_runs[-1]
    theirs_totals = [total for _, _, total in theirs_runs]
    ours_total, theirs_total = ours_totals[-1], theirs_totals[-1]

    budgets = ", ".join(f"{t} {settings['max_new_tokens'][t]}" for t in sorted(set(task_types)))
    print(f"{len(questions)} questions ({', '.join(args.datasets)}; {args.per_dataset} each), {SLM}: uqroute {args.engine} {args.dtype}, lm-polygraph {polygraph_dtype}, "
          f"{args.threads} torch threads, max_new_tokens: {budgets}; verbal {settings['verbal_max_new_tokens']}; "
          f"m={settings['n_samples']} samples at T={settings['sample_temperature']}")
    print(f"lm-polygraph: batch size {batch_size}, "
          f"{'default calculators (attentions + hidden states)' if args.polygraph_defaults else 'no attention maps / hidden states'}")
    print("uqroute      " + ", ".join(f"{k} {v:.1f} s" for k, v in ours_steps.items()) + f"  -> total {ours_total:.1f} s")
    print("lm-polygraph " + ", ".join(f"{k} {v:.1f} s" for k, v in theirs_steps.items()) + f"  -> total {theirs_total:.1f} s")
    print(f"speed-up: lm-polygraph / uqroute = {theirs_total / ours_total:.2f}x (target >= 10x at equal dtype)")
    if args.repeats > 1:
        # Run-by-run ratios pair runs that ran one after the other; a child's runs all came before lm-polygraph's.
        ratio = (f"ratio of the medians {np.median(theirs_totals) / np.median(ours_totals):.2f}x (not alternated)"
                 if in_child else
                 f"run-by-run ratio {spread([theirs / ours for ours, theirs in zip(ours_totals, theirs_totals)])}x")
        print(f"over {args.repeats} runs a side (the lines above: the last): uqroute {spread(ours_totals)} s, "
              f"lm-polygraph {spread(theirs_totals)} s, {ratio}")
    if baseline is not None:
        steps, _, totals, _ = baseline
        total = totals[-1]
        if len(totals) > 1:
            print(f"baseline over {len(totals)} runs: {spread(totals)} s")
        print("baseline     " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + f"  -> total {total:.1f} s")
        print(f"speed-up of the baseline: lm-polygraph / baseline = {theirs_total / total:.2f}x; "
              f"baseline / uqroute = {total / ours_total:.2f}x (1-min load {baseline_load:.2f} before it)")
    print(f"1-min load average: {load_before:.2f} before, {load_between:.2f} between, {load_after:.2f} after")
    if args.forward_work:
        print_forward_work(*work)

    rows = []
    for method, (name, _) in SHARED.items():
        a = agreement(ours[method], theirs[method])
        rows.append({"uqroute": method, "lm-polygraph": name, **a,
                     "ours_valid": int(np.isfinite(ours[method]).sum()),
                     "theirs_valid": int(np.isfinite(theirs[method]).sum())})
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(pd.DataFrame(rows).to_string(index=False))


# vLLM spawns its engine core, which re-imports this file: only the parent process runs main().
if __name__ == "__main__":
    main(sys.argv[1:])
