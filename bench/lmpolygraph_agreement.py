"""Do uqroute's UQ scores agree with lm-polygraph 0.7.0 on the same generations?

uqroute runs its greedy, sample and ptrue passes (HF engine, SmolLM2-135M fp32 copy) on a
few real questions per dataset. lm-polygraph's estimators are then fed those exact
generations as its statistics dicts, and a few of its stat calculators are run on the
same prompts, so each difference can be traced to one cause:

perplexity
  * ``same log-likelihoods``: ``Perplexity`` returns the uncertainty ``-mean(ll)``; our
    confidence is ``exp(mean(ll))`` = 1 / PPL. Converted with ``exp(-u)``, both must agree
    to float precision.
  * ``polygraph greedy``: its own greedy run on the identically rendered prompts. Its
    log-likelihoods include the end-of-sequence token (ours stop before it), and it forces
    ``min_new_tokens=2`` (the first two steps are renormalised without EOS). The
    ``... without EOS`` row drops the EOS term to show that this is the difference.
p(True)
  * ``mechanism``: log p("True") at the first assistant position on lm-polygraph's own
    prompt, from its ``PromptCalculator`` and from our engine's ``next_token_probs``.
  * ``normalisation``: its ``PTrue`` is ``-log p(True)`` (exp(-u) = p(True)); ours is
    p(True) / (p(True) + p(False)). Same prompt, two formulas.
  * ``end to end``: its prompt is a single user turn ("Question: ... Possible answer: ...
    (A) True (B) False ..."), ours extends the answered dialogue with "Proposed answer: <the
    extracted answer>. Is the proposed answer True or False?".
jaccard_degree
  * ``same samples``: ``DegMat(similarity_score="Jaccard_score")`` on our m samples returns
    ``trace(m - D) / m^2`` = 1 - sum(W)/m^2; ours is sum(W)/m^2, so 1 - u. The only formula
    difference: two empty replies have similarity 0 there and 1 here.

Spearman rho is taken between our confidence and lm-polygraph's score converted to a
confidence (so +1 is full agreement; on raw uncertainties it would be -1).

    .venv-polygraph/bin/python bench/lmpolygraph_agreement.py [--per-dataset 5] [--threads 2]
"""

from __future__ import annotations

import os

# Two OpenMP threads that spin-wait for each other run ~10x slower as soon as another process
# shares the two cores; sleeping waits keep the numbers meaningful on a shared machine. Must be
# set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from uqroute import REPO_ROOT
from uqroute.paths import model_folder
from uqroute.datasets import load_split, take_subset
from uqroute.engines.rendering import encode_prompt
from uqroute.io import load_yaml, write_text
from uqroute.engines import make_engine
from uqroute.gguf import materialize
from uqroute.models import model_spec
from uqroute.passes import run_pass
from uqroute.prompts import PromptSet
from uqroute.uq import score_method

SLM = "smollm2-135m"
DATASETS = ("commonsenseqa", "boolq", "multiarith", "truthfulqa")


# --------------------------------------------------------------------------- shared with vs_lmpolygraph.py


def load_questions(data_dir: Path, datasets, per_dataset: int, seed: int) -> pd.DataFrame:
    """``per_dataset`` test questions of each dataset (one task type each), data-contract rows."""
    frames = [take_subset(load_split(d, "test", data_dir), per_dataset, seed) for d in datasets]
    return pd.concat(frames, ignore_index=True)


def generation_settings(config_path: Path) -> dict:
    """The ``generation:`` block of the workflow config: the settings of every pass."""
    config = load_yaml(config_path)
    if "generation" not in config:
        raise KeyError(f"{config_path}: no 'generation' block")
    return dict(config["generation"])


def slm_dir() -> Path:
    """The fp32 HF copy of the SLM under results/models (made once from the wheel's GGUF)."""
    return materialize(model_spec(SLM), model_folder(REPO_ROOT / "results", SLM))


def user_texts(prompts: PromptSet, questions: pd.DataFrame) -> list[str]:
    """lm-polygraph's input texts: the content of our answer conversation's single user turn.

    Its instruct mode wraps a text as ``[{"role": "user", ...}]`` and applies the chat
    template, which then renders exactly our answer prompt. A system message cannot be
    passed that way, so a prompt set with one is refused.
    """
    texts = []
    for item in questions.to_dict("records"):
        conversation = prompts.answer(item)
        if len(conversation) != 1 or conversation[0]["role"] != "user":
            raise ValueError(f"{prompts.path}: the answer conversation of {item['dataset']} item {item['id']} is not a "
                             "single user turn (a system message?); lm-polygraph cannot be given the same prompt")
        texts.append(conversation[0]["content"])
    return texts


def polygraph_model(model_dir: Path, attn_implementation: str = "sdpa", dtype: str = "float32"):
    """lm-polygraph's WhiteboxModel over a fresh load of the same weights.

    ``attn_implementation`` must be ``"eager"`` when its greedy calculator is asked for
    attention maps (its default); ``"sdpa"`` is what our engine uses.

    Sampling settings match our sample pass: temperature 1, top-p 1 and no top-k cut
    (lm-polygraph's default top_k is 50, transformers reads 0 as "off").
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from lm_polygraph.utils.generation_parameters import GenerationParameters
    from lm_polygraph.utils.model import WhiteboxModel

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=getattr(torch, dtype), attn_implementation=attn_implementation
    ).eval()
    params = GenerationParameters(temperature=1.0, top_k=0, top_p=1.0, do_sample=False)
    return WhiteboxModel(model, tokenizer, str(model_dir), "CausalLM", params, instruct=True)


def check_same_tokens(engine, polygraph, prompts: PromptSet, questions: pd.DataFrame, texts: list[str]) -> None:
    """Both sides must feed the model the same token ids, or nothing below is comparable."""
    for item, text in zip(questions.to_dict("records"), texts):
        ours = encode_prompt(engine.tokenizer, engine.render(prompts.answer(item)), engine.spec)
        theirs = polygraph.tokenize([text])["input_ids"][0].tolist()
        if ours != theirs:
            raise AssertionError(f"{item['dataset']} item {item['id']}: prompt token ids differ "
                                 f"(uqroute {len(ours)} tokens, lm-polygraph {len(theirs)})")


def agreement(ours, theirs) -> dict:
    """``n`` compared (both finite), max |ours - theirs| and Spearman rho (NaN when undefined)."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    both = np.isfinite(ours) & np.isfinite(theirs)
    n = int(both.sum())
    if n == 0:
        return {"n": 0, "max_abs_diff": np.nan, "spearman": np.nan}
    diff = float(np.max(np.abs(ours[both] - theirs[both])))
    constant = np.ptp(ours[both]) == 0 or np.ptp(theirs[both]) == 0
    rho = np.nan if n < 3 or constant else float(spearmanr(ours[both], theirs[both]).statistic)
    return {"n": n, "max_abs_diff": diff, "spearman": rho}


# --------------------------------------------------------------------------- this benchmark


def ragged(values) -> list[list[float]]:
    return [[float(x) for x in v] for v in values]


def polygraph_greedy(polygraph, texts: list[str], task_types: list[str], budgets: dict) -> dict:
    """Its greedy statistics per question (one call per task type, that type's token budget)."""
    from lm_polygraph.stat_calculators import GreedyProbsCalculator

    calculator = GreedyProbsCalculator(output_attentions=False, output_hidden_states=False)
    out = {"greedy_texts": [None] * len(texts), "greedy_log_likelihoods": [None] * len(texts),
           "greedy_tokens": [None] * len(texts)}
    for task_type in sorted(set(task_types)):
        rows = [i for i, t in enumerate(task_types) if t == task_type]
        stats = calculator({}, [texts[i] for i in rows], polygraph, max_new_tokens=int(budgets[task_type]))
        for k, i in enumerate(rows):
            for key in out:
                out[key][i] = stats[key][k]
    return out


def compare(questions: pd.DataFrame, engine, polygraph, prompts: PromptSet, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per comparison, per_question: every score side by side)."""
    from lm_polygraph.estimators import DegMat, Perplexity, PTrue
    from lm_polygraph.stat_calculators import PromptCalculator

    texts = user_texts(prompts, questions)
    check_same_tokens(engine, polygraph, prompts, questions, texts)
    task_types = questions["task_type"].astype(str).tolist()

    greedy = run_pass("greedy", engine, questions, prompts, settings)
    sample = run_pass("sample", engine, questions, prompts, settings)
    ptrue = run_pass("ptrue", engine, questions, prompts, settings, greedy=greedy)
    passes = {"greedy": greedy, "sample": sample, "ptrue": ptrue}
    ours = {m: score_method(m, passes, questions)["confidence"].to_numpy() for m in ("perplexity", "p_true", "jaccard_degree")}

    lls = ragged(greedy["token_logprobs"])
    pg_ppl_same = np.exp(-Perplexity()({"greedy_log_likelihoods": lls}))

    own = polygraph_greedy(polygraph, texts, task_types, settings["max_new_tokens"])
    eos = polygraph.tokenizer.eos_token_id
    pg_ppl_own = np.exp(-Perplexity()({"greedy_log_likelihoods": own["greedy_log_likelihoods"]}))
    without_eos = [ll[:-1] if toks and toks[-1] == eos else ll
                   for ll, toks in zip(own["greedy_log_likelihoods"], own["greedy_tokens"])]
    pg_ppl_own_no_eos = np.exp(-Perplexity()({"greedy_log_likelihoods": without_eos}))
    same_text = np.array([a.strip() == str(b).strip() for a, b in zip(own["greedy_texts"], greedy["response"])])

    responses = greedy["response"].fillna("").astype(str).tolist()
    calculator = PromptCalculator()
    pg_logp_true = calculator({"input_texts": texts, "greedy_texts": responses}, texts, polygraph)["p_true"]
    pg_ptrue = np.exp(-PTrue()({"p_true": pg_logp_true}))
    their_prompts = [[{"role": "user", "content": calculator.prompt.format(q=q, a=a, s="")}] for q, a in zip(texts, responses)]
    probs = engine.next_token_probs(their_prompts, list(prompts.ptrue_candidates))
    our_logp_true_their_prompt = np.log(probs[:, 0])
    normalised_their_prompt = probs[:, 0] / (probs[:, 0] + probs[:, 1])

    samples = sample.sort_values(["id", "sample_idx"], kind="stable").groupby("id", sort=False)["response"].agg(list)
    sample_texts = [[("" if s is None else str(s)) for s in samples.loc[str(i)]] for i in questions["id"]]
    pg_degree = 1.0 - DegMat(similarity_score="Jaccard_score")({"sample_texts": sample_texts})
    empty_pairs = np.array([sum(1 for s in texts_ if not s.split()) >= 2 for texts_ in sample_texts])

    rows = [
        ("perplexity", "same log-likelihoods", ours["perplexity"], pg_ppl_same,
         "Perplexity returns -mean(ll); exp(-u) = our 1/PPL"),
        ("perplexity", "polygraph greedy", ours["perplexity"], pg_ppl_own,
         f"own generations ({int(same_text.sum())}/{len(same_text)} texts identical); its ll include the EOS token"),
        ("perplexity", "polygraph greedy without EOS", ours["perplexity"], pg_ppl_own_no_eos,
         "EOS term dropped; the rest is min_new_tokens=2 renormalisation and batch padding"),
        ("p_true", "mechanism: log p(True), its prompt", our_logp_true_their_prompt, pg_logp_true,
         "its PromptCalculator vs our next_token_probs on the same prompt"),
        ("p_true", "normalisation, its prompt", normalised_their_prompt, pg_ptrue,
         "p(T)/(p(T)+p(F)) vs p(T) (PTrue = -log p(T))"),
        ("p_true", "end to end", ours["p_true"], pg_ptrue,
         "our dialogue prompt + normalisation vs its single-turn prompt, raw p(T)"),
        ("jaccard_degree", "same samples", ours["jaccard_degree"], pg_degree,
         f"DegMat = 1 - sum(W)/m^2; {int(empty_pairs.sum())} question(s) with >= 2 empty samples"),
    ]
    summary = pd.DataFrame([{"method": m, "comparison": c, **agreement(a, b), "note": note} for m, c, a, b, note in rows])
    per_question = pd.DataFrame({
        "id": questions["id"].astype(str), "dataset": questions["dataset"], "task_type": task_types,
        "ours_perplexity": ours["perplexity"], "pg_perplexity_same_ll": pg_ppl_same,
        "pg_perplexity_own_greedy": pg_ppl_own, "pg_perplexity_own_no_eos": pg_ppl_own_no_eos,
        "same_greedy_text": same_text,
        "ours_p_true": ours["p_true"], "pg_p_true": pg_ptrue, "ours_logp_true_pg_prompt": our_logp_true_their_prompt,
        "pg_logp_true": pg_logp_true, "ours_normalised_pg_prompt": normalised_their_prompt,
        "ours_jaccard_degree": ours["jaccard_degree"], "pg_jaccard_degree": pg_degree,
    })
    return summary, per_question


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "config.yaml")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--per-dataset", type=int, default=5)
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench" / "lmpolygraph_agreement.csv",
                        help="per-question scores of both tools (CSV)")
    args = parser.parse_args(argv)
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = generation_settings(args.config)
    questions = load_questions(args.data_dir, args.datasets, args.per_dataset, args.seed)
    model_dir = slm_dir()
    prompts = PromptSet.load()
    engine = make_engine(model_spec(SLM), model_dir=model_dir, device="cpu", dtype="float32",
                         batch_size=int(settings["part_size"]), threads=args.threads, progress=False)
    polygraph = polygraph_model(model_dir)
    summary, per_question = compare(questions, engine, polygraph, prompts, settings)
    write_text(per_question.to_csv(index=False), args.out)

    print(f"{len(questions)} questions ({', '.join(args.datasets)}; {args.per_dataset} each), {SLM} fp32, "
          f"{args.threads} threads, {time.perf_counter() - start:.0f} s")
    with pd.option_context("display.width", 200, "display.max_colwidth", 90, "display.float_format", "{:.3g}".format):
        print(summary.to_string(index=False))
    print(f"per-question scores: {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
