"""Jobs of the generate stage: a model pass, its grading, and the hidden states the probes read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..checkpoint import BatchCheckpoint
from ..datasets import load_questions
from ..engines import make_engine
from ..engines.options import engine_kind
from ..grading import LLMJudge
from ..io import read_parquet, table_metadata, write_parquet
from ..models import model_spec
from ..passes import HIDDEN_PASSES, NEEDS_GREEDY, PASS_NAMES, grade_pass, hidden_spec, run_hidden, run_pass
from ..prompts import PromptSet

log = logging.getLogger(__name__)


def build_engine(model: str, options: Mapping[str, Any], model_dir: str | None = None, api_cache: str | None = None,
                 threads: int | None = None):
    """The model's engine; ``threads`` (the job's CPU share) applies to engines running weights here."""
    spec = model_spec(model)
    kind = engine_kind(spec, options)
    options = {key: value for key, value in options.items() if key != "kind"}
    if threads is not None and kind == "hf":
        options.setdefault("threads", threads)
    return make_engine(spec, kind=kind, model_dir=Path(model_dir) if model_dir else None,
                       cache_dir=Path(api_cache) if api_cache else None, **options)


def build_judge(judge: Mapping[str, Any], api_cache: str | None = None):
    """The LLM judge the config asks for (``judge.engine: openai``), or None for the rule.

    With ``base_url``, any OpenAI-compatible endpoint serving ``model`` (a local vLLM server; ``api_key_env``
    null for one that takes no key); without it, the registry's model behind its own endpoint.
    """
    if judge.get("engine", "rule") == "rule":
        return None
    # deferred: the openai client (~0.9 s), only a pass graded by an LLM judge needs it
    from ..engines.openai_engine import OpenAIEngine

    if judge.get("base_url"):
        engine = OpenAIEngine(judge["model"], model=judge["model"], base_url=judge["base_url"],
                              api_key_env=judge.get("api_key_env"), cache_dir=api_cache)
    else:
        engine = build_engine(judge["model"], judge.get("engine_options", {}), api_cache=api_cache)
    return LLMJudge(engine)


def made_with(engine) -> dict[str, str]:
    """What a model's table records of its engine (Parquet key-value metadata): the weights' dtype as
    chosen on the machine that ran it, so tables made on a bf16 CPU and on an AVX2-only one differ there."""
    return {} if engine.dtype is None else {"uqroute.dtype": engine.dtype}


def _write_pass_table(table: pd.DataFrame, output: str, checkpoint_dir: str | None, metadata: dict[str, str]) -> None:
    """The table first, then the finished-batch parts it was assembled from."""
    write_parquet(table, output, metadata=metadata)
    if checkpoint_dir:
        BatchCheckpoint(Path(checkpoint_dir)).finish()


def generate(*, model: str, pass_name: str, questions: str, output: str, engine_options: Mapping[str, Any],
             settings: Mapping[str, Any], max_questions: int | None, subset_seed: int,
             checkpoint_dir: str | None = None, greedy: str | None = None, model_dir: str | None = None,
             api_cache: str | None = None, threads: int | None = None) -> None:
    """One model pass; a graded pass (greedy, verbal1s) writes its replies, :func:`grade` grades them."""
    items = load_questions(questions, max_questions, subset_seed)
    greedy_table = read_parquet(greedy) if greedy else None
    engine = build_engine(model, engine_options, model_dir, api_cache, threads)
    try:
        table = run_pass(pass_name, engine, items, PromptSet.load(), dict(settings), grade=False, greedy=greedy_table,
                         checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None)
    finally:
        engine.close()
    _write_pass_table(table, output, checkpoint_dir, made_with(engine))


def generate_cell(*, model: str, outputs: Mapping[str, str], questions: str, engine_options: Mapping[str, Any],
                  settings: Mapping[str, Mapping[str, Any]], max_questions: int | None, subset_seed: int,
                  checkpoint_dirs: Mapping[str, str] | None = None, model_dir: str | None = None,
                  api_cache: str | None = None, threads: int | None = None, layer: int | None = None,
                  hidden_part_size: int | None = None) -> None:
    """Every pass of one (model, dataset, split) on one engine, so its start-up is paid once, not per pass.

    ``outputs`` maps pass names to what :func:`generate` writes for that pass (``settings``: its settings)
    and hidden-state pass names to what :func:`hidden_states` writes for it (with ``layer`` and
    ``hidden_part_size``, on this engine, which must be built as that job's is). Each file holds what the
    job of its own would write: the follow-up passes and hidden states read the greedy replies back from
    their file, as that job does. Finished-batch parts are cleared only once every pass is written, so a
    job that fails in its last pass resumes its earlier ones from their parts.
    """
    unknown = sorted(set(outputs) - set(PASS_NAMES) - set(HIDDEN_PASSES))
    if unknown:
        raise ValueError(f"generate_cell: unknown pass(es) {unknown}; passes: {', '.join(PASS_NAMES)}; "
                         f"hidden-state passes: {', '.join(HIDDEN_PASSES)}")
    hidden = [name for name in HIDDEN_PASSES if name in outputs]  # after the model passes, in declared order
    readers = [name for name in outputs
               if name in NEEDS_GREEDY or (name in hidden and hidden_spec(name).follows_greedy)]
    if readers and "greedy" not in outputs:
        raise ValueError(f"generate_cell: passes {sorted(readers)} read the greedy replies, which this cell does "
                         "not make")
    if hidden and (layer is None or hidden_part_size is None):
        raise ValueError(f"generate_cell: hidden-state pass(es) {hidden} need layer and hidden_part_size")
    checkpoint_dirs = dict(checkpoint_dirs or {})
    order = sorted(set(outputs) - set(hidden), key=PASS_NAMES.index)  # greedy first: the follow-up passes read it
    items = load_questions(questions, max_questions, subset_seed)
    prompts = PromptSet.load()
    engine = build_engine(model, engine_options, model_dir, api_cache, threads)
    greedy_table = None
    try:
        for pass_name in order:
            table = run_pass(pass_name, engine, items, prompts, dict(settings[pass_name]), grade=False,
                             greedy=greedy_table if pass_name in NEEDS_GREEDY else None,
                             checkpoint_dir=_part_dir(checkpoint_dirs, pass_name))
            _write_cell_table(table, outputs[pass_name], engine)
            if pass_name == "greedy":
                greedy_table = read_parquet(outputs["greedy"])  # once, as a follow-up pass job reads it
        for hidden_pass in hidden:
            table = run_hidden(engine, items, greedy_table if hidden_spec(hidden_pass).follows_greedy else None,
                               prompts, layer, hidden_part_size, checkpoint_dir=_part_dir(checkpoint_dirs, hidden_pass),
                               hidden_pass=hidden_pass)
            _write_cell_table(table, outputs[hidden_pass], engine)
    finally:
        engine.close()
    for name in outputs:
        if checkpoint_dirs.get(name):
            BatchCheckpoint(Path(checkpoint_dirs[name])).finish()


def _part_dir(checkpoint_dirs: Mapping[str, str], name: str) -> Path | None:
    return Path(checkpoint_dirs[name]) if checkpoint_dirs.get(name) else None


def _write_cell_table(table: pd.DataFrame, output: str, engine) -> None:
    write_parquet(table, output, metadata=made_with(engine))
    log.info("%s: %d rows", output, len(table))


def grade(*, pass_name: str, replies: str, questions: str, judge: Mapping[str, Any], budgets: Mapping[str, Any],
          output: str, api_cache: str | None = None) -> None:
    """Read and grade a pass's replies with the configured judge (``budgets``: the generation settings holding
    token budgets, which tell the replies that were cut off)."""
    llm_judge = build_judge(judge, api_cache)
    try:
        table = grade_pass(pass_name, read_parquet(replies), read_parquet(questions), llm_judge,
                           weak_readings=judge.get("weak_readings"), budgets=budgets)
    finally:
        if llm_judge is not None:
            llm_judge.engine.close()
    by_rule = table["read_by"].value_counts()
    log.info("%s: %d of %d answers correct; read by %s; %d graded by the judge", output, int(table["correct"].sum()),
             len(table), ", ".join(f"{rule} {n}" for rule, n in by_rule.items()),
             int((table["graded_by"] == "judge").sum()))
    write_parquet(table, output, metadata=table_metadata(replies))  # the graded table names its replies' dtype


def hidden_states(*, model: str, questions: str, output: str, engine_options: Mapping[str, Any], layer: int,
                  part_size: int, max_questions: int | None, subset_seed: int, greedy: str | None = None,
                  hidden_pass: str = "hidden", checkpoint_dir: str | None = None, model_dir: str | None = None,
                  threads: int | None = None) -> None:
    """Layer ``layer`` at the last token of a hidden-state pass's conversation (by default the answer prompt
    closed by the greedy reply, ``greedy``), for every question of the subset."""
    items = load_questions(questions, max_questions, subset_seed)
    engine = build_engine(model, engine_options, model_dir, threads=threads)
    try:
        table = run_hidden(engine, items, read_parquet(greedy) if greedy else None, PromptSet.load(), layer,
                           part_size, checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                           hidden_pass=hidden_pass)
    finally:
        engine.close()
    _write_pass_table(table, output, checkpoint_dir, made_with(engine))
