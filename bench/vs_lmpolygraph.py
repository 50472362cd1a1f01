"""Wall time of uqroute's passes + UQ functions vs lm-polygraph 0.7.0's UEManager (target: >= 5x faster).

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

(a) uqroute: ``run_pass`` greedy, sample, ptrue and verbal2s with the HF engine (batched),
then ``score_method`` for the five methods. (b) lm-polygraph: one ``UEManager`` per task type
(its token budget is per manager) with the five estimators and its default Whitebox stat
calculators, except that the sampling calculator draws 5 samples (its default is 10) and
the greedy calculator skips attention maps and hidden states, which none of these
estimators reads; ``--polygraph-defaults`` keeps them (what ``estimate_uncertainty`` does).
Model loading and one warm-up call per side are outside the timings. Both run in this
process, one after the other, on ``--threads`` torch threads.

    .venv-polygraph/bin/python bench/vs_lmpolygraph.py [--per-dataset 5] [--threads 2] [--polygraph-batch-size 16]
"""

from __future__ import annotations

import os

# See lmpolygraph_agreement.py: spinning OpenMP threads crawl on a shared two-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
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
from uqroute.engines import make_engine
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


def run_uqroute(engine, questions: pd.DataFrame, prompts: PromptSet, settings: dict) -> tuple[dict, dict]:
    """(seconds per step, confidence per shared method), steps timed in the order the workflow runs them."""
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
    """One tiny call per side, so first-call allocations are not timed."""
    engine.generate([prompts.answer(questions.iloc[0].to_dict())], max_new_tokens=2)
    polygraph.generate_texts([texts[0]], max_new_tokens=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "config.yaml")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--per-dataset", type=int, default=5)
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="uqroute's engine dtype (lm-polygraph always runs fp32); the embedded "
                             "default config runs bfloat16")
    parser.add_argument("--polygraph-batch-size", type=int, default=None,
                        help="questions per UEManager batch (default: the config's generation.part_size)")
    parser.add_argument("--polygraph-defaults", action="store_true",
                        help="keep its greedy calculator's attention maps and hidden states (eager attention)")
    args = parser.parse_args(argv)

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

    start = time.perf_counter()
    model_dir = slm_dir()
    engine = make_engine(model_spec(SLM), model_dir=model_dir, device="cpu", dtype=args.dtype,
                         batch_size=int(settings["part_size"]), threads=args.threads, progress=False)
    polygraph = polygraph_model(model_dir, "eager" if args.polygraph_defaults else "sdpa")
    warm_up(engine, polygraph, prompts, questions, texts)
    print(f"models loaded and warmed up in {time.perf_counter() - start:.1f} s (not timed below)")

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    ours_steps, ours = run_uqroute(engine, questions, prompts, settings)
    ours_total = time.perf_counter() - start
    load_between = os.getloadavg()[0]
    start = time.perf_counter()
    theirs_steps, theirs = run_polygraph(polygraph, texts, task_types, settings, follow_up, batch_size,
                                         args.polygraph_defaults)
    theirs_total = time.perf_counter() - start
    load_after = os.getloadavg()[0]

    budgets = ", ".join(f"{t} {settings['max_new_tokens'][t]}" for t in sorted(set(task_types)))
    print(f"{len(questions)} questions ({', '.join(args.datasets)}; {args.per_dataset} each), {SLM} {args.dtype} (lm-polygraph fp32), "
          f"{args.threads} torch threads, max_new_tokens: {budgets}; verbal {settings['verbal_max_new_tokens']}; "
          f"m={settings['n_samples']} samples at T={settings['sample_temperature']}")
    print(f"lm-polygraph: batch size {batch_size}, "
          f"{'default calculators (attentions + hidden states)' if args.polygraph_defaults else 'no attention maps / hidden states'}")
    print("uqroute      " + ", ".join(f"{k} {v:.1f} s" for k, v in ours_steps.items()) + f"  -> total {ours_total:.1f} s")
    print("lm-polygraph " + ", ".join(f"{k} {v:.1f} s" for k, v in theirs_steps.items()) + f"  -> total {theirs_total:.1f} s")
    print(f"speed-up: lm-polygraph / uqroute = {theirs_total / ours_total:.2f}x (target >= 5x)")
    print(f"1-min load average: {load_before:.2f} before, {load_between:.2f} between, {load_after:.2f} after")

    rows = []
    for method, (name, _) in SHARED.items():
        a = agreement(ours[method], theirs[method])
        rows.append({"uqroute": method, "lm-polygraph": name, **a,
                     "ours_valid": int(np.isfinite(ours[method]).sum()),
                     "theirs_valid": int(np.isfinite(theirs[method]).sum())})
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
