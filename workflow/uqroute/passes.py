"""Model passes: one table of model outputs per (model, dataset, split, pass).

Every UQ method reads these tables; no method calls a model itself. A pass
groups its questions by task type (each type has its own token budget), sorts
each group by prompt length so a batch holds prompts of similar length (less
padding), and runs the batches through the engine, keeping each finished
batch in a :class:`~uqroute.checkpoint.BatchCheckpoint` when a folder is
given. Rows come back in the order of ``questions``.

Each pass is declared once in :data:`PASSES` (settings, prompt, decoding, columns); the router builds
its per-request passes from the same declarations. Types and meanings of the columns: docs/contracts.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .checkpoint import open_checkpoint
from .engines.base import Conversation, Engine, Sampling, hidden_state_reader
from .grading import WEAK, RuleJudge, parse_verbal_confidence, read_item_reply
from .grading.judges import FREE_FORM_TASKS
from .io import load_schema

# What grading adds to a graded pass's replies (docs/contracts.md): the answer read and whether it is correct,
# ``ambiguous`` (the reply commits to several options and concludes on none), ``read_by`` (the reading rule,
# :data:`uqroute.grading.RULES`) and ``graded_by`` (``rule`` or ``judge``: who decided ``correct``).
GRADE_COLUMNS = ("prediction", "correct", "ambiguous", "read_by", "graded_by")


@dataclass(frozen=True)
class PassSpec:
    """One model pass, declared once: the workflow (:func:`run_pass`) and the router (one request at a time)
    build its prompt, its decoding and its rows from this declaration.

    ``settings``: the keys of the config's ``generation`` section it reads, and nothing else; a job's params
    hold exactly these, so changing one setting reruns only the passes whose output depends on it
    (``part_size``: questions per engine call and per checkpoint part; with bf16 batching the grouping can
    change a reply, so every pass depends on it). ``columns``: its table (the Parquet contract; a graded
    pass's model job writes them without :data:`GRADE_COLUMNS`, grading is a step of its own so that a change
    of judge never reruns a model). ``prompt(prompts, item, reply, settings, opening)``: the conversation for
    one question (``reply``: the greedy reply a follow-up pass quotes; ``opening``: the conversation that
    reply answers, by default the answer prompt). ``budget(settings, task_type)``: the most tokens one reply
    may have (None: the pass generates nothing, it reads the next-token probabilities of the prompt set's
    p(True) candidates). ``sampled``: ``n_samples`` replies at the sampling temperature. ``read(output,
    item)``: the row's columns from one completion (or from the candidates' probabilities).
    """

    name: str
    settings: tuple[str, ...]
    columns: tuple[str, ...]
    prompt: Callable[..., Conversation]
    read: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    budget: Callable[[Mapping[str, Any], str], int] | None = None
    sampled: bool = False
    follows_greedy: bool = False
    graded: bool = False

    @property
    def generates(self) -> bool:
        return self.budget is not None

    def conversation(self, prompts, item: Mapping[str, Any], reply: str | None = None,
                     settings: Mapping[str, Any] | None = None, opening: Conversation | None = None) -> Conversation:
        if self.follows_greedy and reply is None:
            raise ValueError(f"pass {self.name} quotes the greedy reply; none given")
        return self.prompt(prompts, item, reply, settings or {}, opening)

    def decoding(self, settings: Mapping[str, Any], task_type: str, prompts) -> dict[str, Any]:
        """The engine call's parameters for a question of ``task_type`` (they also name its checkpoint parts)."""
        if not self.generates:
            return {"candidates": list(prompts.ptrue_candidates)}
        params = {"max_new_tokens": self.budget(settings, task_type), "temperature": 0.0, "n": 1}
        if self.sampled:
            params.update(temperature=float(settings["sample_temperature"]), top_p=float(settings["top_p"]),
                          n=int(settings["n_samples"]), seed=int(settings.get("seed", 0)))
        return params

    def rows(self, id_: str, item: Mapping[str, Any], output) -> list[dict[str, Any]]:
        """One question's rows from the engine's output for it: its completions (one row each, numbered when
        sampled), or the candidates' probabilities."""
        if not self.generates:
            return [{"id": id_, **self.read(output, item)}]
        rows = []
        for sample_idx, completion in enumerate(output):
            row = {"id": id_, **self.read(completion, item)}
            if self.sampled:
                row["sample_idx"] = sample_idx
            rows.append(row)
        return rows


def _answer_prompt(prompts, item, reply, settings, opening) -> Conversation:
    return prompts.answer(item) if opening is None else list(opening)


def _verbal1s_prompt(prompts, item, reply, settings, opening) -> Conversation:
    # Its own format (answer, then confidence) replaces the answer prompt; some task types reason first.
    reasoned = set(settings.get("verbal1s_reasoning") or ())
    return prompts.verbal1s(item, reasoning=item["task_type"] in reasoned)


# The generation settings that hold token budgets: what the passes' budget functions below read.
ANSWER_BUDGET, VERBAL_BUDGET = "max_new_tokens", "verbal_max_new_tokens"
BUDGET_SETTINGS = (ANSWER_BUDGET, VERBAL_BUDGET)


def _answer_budget(settings, task_type) -> int:
    return int(settings[ANSWER_BUDGET][task_type])


def _verbal_budget(settings, task_type) -> int:
    return int(settings[VERBAL_BUDGET])


def _read_greedy(completion, item) -> dict[str, Any]:
    return {"response": completion.text, "tokens": list(completion.tokens),
            "token_logprobs": [float(x) for x in completion.token_logprobs]}


def _read_sample(completion, item) -> dict[str, Any]:
    return {"response": completion.text, "prediction": read_item_reply(completion.text, item).value}


def _read_verbal(require_cue: bool) -> Callable[[Any, Mapping[str, Any]], dict[str, Any]]:
    # A one-step reply also holds the answer, which may be a bare number: its confidence needs its cue.
    def read(completion, item) -> dict[str, Any]:
        confidence = parse_verbal_confidence(completion.text, require_cue=require_cue)
        return {"response": completion.text, "verbal_confidence": np.nan if confidence is None else float(confidence)}

    return read


def _read_p_true(probs, item) -> dict[str, Any]:
    return {"p_true": float(p_true_from_probs(np.asarray([probs], dtype=np.float64))[0])}


PASSES: dict[str, PassSpec] = {spec.name: spec for spec in (
    PassSpec("greedy", ("max_new_tokens", "part_size"),
             ("id", "prompt", "response", "tokens", "token_logprobs", *GRADE_COLUMNS),
             _answer_prompt, _read_greedy, _answer_budget, graded=True),
    PassSpec("sample", ("max_new_tokens", "part_size", "seed", "top_p", "n_samples", "sample_temperature"),
             ("id", "sample_idx", "response", "prediction"), _answer_prompt, _read_sample, _answer_budget,
             sampled=True),
    PassSpec("verbal1s", ("max_new_tokens", "verbal_max_new_tokens", "verbal1s_reasoning", "part_size"),
             ("id", "response", "prediction", "correct", "verbal_confidence", "ambiguous", "read_by", "graded_by"),
             _verbal1s_prompt,
             _read_verbal(require_cue=True),
             # The answer (with its reasoning), then the confidence: both budgets.
             lambda settings, task_type: _answer_budget(settings, task_type) + _verbal_budget(settings, task_type),
             graded=True),
    PassSpec("verbal2s", ("verbal_max_new_tokens", "part_size"), ("id", "response", "verbal_confidence"),
             lambda prompts, item, reply, settings, opening: prompts.verbal2s(item, reply, opening),
             _read_verbal(require_cue=False), _verbal_budget, follows_greedy=True),
    PassSpec("ptrue", ("part_size",), ("id", "p_true"),
             lambda prompts, item, reply, settings, opening: prompts.ptrue(item, reply, opening),
             _read_p_true, follows_greedy=True),
)}
HIDDEN_COLUMNS = ["id", "layer", "vector"]


@dataclass(frozen=True)
class HiddenSpec:
    """A hidden-state pass, declared once: the model's hidden state at the last token of one conversation per
    question (prefill only; always on transformers). ``prompt(prompts, item, reply, opening)``: that
    conversation (``opening``: the conversation the question is asked in, by default the answer prompt; the
    router passes the user's own messages); ``follows_greedy``: it quotes the greedy reply, so it exists only
    once the model has answered. Its table has :data:`HIDDEN_COLUMNS`; its results path kind is its name
    (``uqroute.paths``)."""

    name: str
    prompt: Callable[..., Conversation]
    follows_greedy: bool


HIDDEN_PASSES: dict[str, HiddenSpec] = {spec.name: spec for spec in (
    # The answered conversation, read at the reply's last token: what the trained and OOD probes read.
    HiddenSpec("hidden", lambda prompts, item, reply, opening=None: prompts.hidden(item, reply, opening),
               follows_greedy=True),
    # The question alone, read where the reply would start: what P(IK) reads, before any answer exists.
    HiddenSpec("hidden_question",
               lambda prompts, item, reply, opening=None: prompts.answer(item) if opening is None else list(opening),
               follows_greedy=False),
)}


# The hidden-state pass a probe reads unless its method names another.
DEFAULT_HIDDEN = "hidden"


def hidden_spec(name: str) -> HiddenSpec:
    try:
        return HIDDEN_PASSES[name]
    except KeyError:
        raise ValueError(f"unknown hidden-state pass {name!r}; hidden passes: {', '.join(HIDDEN_PASSES)}") from None

# Views of PASSES, for the planner and the jobs.
PASS_NAMES = tuple(PASSES)
GENERATING_PASSES = tuple(name for name, spec in PASSES.items() if spec.generates)
GRADED_PASSES = tuple(name for name, spec in PASSES.items() if spec.graded)
NEEDS_GREEDY = tuple(name for name, spec in PASSES.items() if spec.follows_greedy)
PASS_SETTINGS: dict[str, tuple[str, ...]] = {name: spec.settings for name, spec in PASSES.items()}
PASS_COLUMNS: dict[str, list[str]] = {**{name: list(spec.columns) for name, spec in PASSES.items()},
                                      **{name: HIDDEN_COLUMNS for name in HIDDEN_PASSES}}
# A graded pass's replies table: its columns without the grade.
REPLY_COLUMNS: dict[str, list[str]] = {
    name: [c for c in PASS_COLUMNS[name] if c not in GRADE_COLUMNS] for name in GRADED_PASSES
}


def pass_spec(name: str) -> PassSpec:
    try:
        return PASSES[name]
    except KeyError:
        raise ValueError(f"unknown pass {name!r}; passes: {', '.join(PASS_NAMES)} (hidden: run_hidden)") from None


def pass_settings(pass_name: str, generation: Mapping[str, Any], task_types: Sequence[str]) -> dict[str, Any]:
    """The settings ``pass_name`` reads from the config's ``generation`` section, for questions of
    ``task_types`` (a dataset has one): ``max_new_tokens`` keeps only their budgets."""
    pass_spec(pass_name)
    settings = {}
    for key in PASS_SETTINGS[pass_name]:
        if key not in generation:
            raise KeyError(f"config key generation.{key} is missing (pass {pass_name} reads it)")
        settings[key] = generation[key]
    if ANSWER_BUDGET in settings:
        budgets = settings[ANSWER_BUDGET]
        lacking = sorted(set(task_types) - set(budgets))
        if lacking:
            raise KeyError(f"config key generation.{ANSWER_BUDGET} has no budget for task type(s) {lacking}")
        settings[ANSWER_BUDGET] = {task: budgets[task] for task in sorted(set(task_types))}
    if "verbal1s_reasoning" in settings:
        settings["verbal1s_reasoning"] = sorted(set(settings["verbal1s_reasoning"]) & set(task_types))
    return settings


def token_budget(pass_name: str, settings: Mapping[str, Any], task_type: str) -> int:
    """The most tokens one reply of ``pass_name`` may have for a question of ``task_type``.

    ``settings`` as :func:`pass_settings` returns them. A one-step verbal reply carries the answer (with
    its reasoning) and then the confidence, so it gets both budgets; ptrue generates nothing.
    """
    spec = pass_spec(pass_name)
    if not spec.generates:
        raise ValueError(f"pass {pass_name!r} has no token budget (generating passes: {', '.join(GENERATING_PASSES)})")
    return spec.budget(settings, task_type)


# --------------------------------------------------------------------------- helpers


def _check_settings(pass_name: str, settings: Mapping[str, Any], task_types: Sequence[str]) -> None:
    # verbal1s_reasoning may be left out: no task type reasons first.
    missing = [k for k in PASS_SETTINGS[pass_name] if k not in settings and k != "verbal1s_reasoning"]
    if missing:
        raise KeyError(f"pass {pass_name} settings: missing key(s) {missing}; expected {list(PASS_SETTINGS[pass_name])}")
    budgets = settings.get("max_new_tokens")
    lacking = sorted({t for t in task_types if t not in budgets}) if budgets is not None else []
    if lacking:
        raise KeyError(f"pass {pass_name} settings: max_new_tokens has no entry for task type(s) {lacking}")


def _check_questions(questions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("id", "task_type", "question") if c not in questions.columns]
    if missing:
        raise ValueError(f"questions table: missing column(s) {missing}")
    duplicated = questions["id"][questions["id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"questions table: duplicated id(s) {duplicated[:5]}")
    return questions.reset_index(drop=True)


def _greedy_responses(greedy: pd.DataFrame | None, ids: Sequence[str], pass_name: str) -> list[str]:
    if greedy is None:
        raise ValueError(f"pass {pass_name} needs the greedy table (greedy=...)")
    if "id" not in greedy.columns or "response" not in greedy.columns:
        raise ValueError(f"pass {pass_name}: greedy table lacks id/response columns; has {list(greedy.columns)}")
    by_id = dict(zip(greedy["id"], greedy["response"]))
    absent = [i for i in ids if i not in by_id]
    if absent:
        raise KeyError(f"pass {pass_name}: greedy table has no row for id(s) {absent[:5]}")
    return ["" if _missing(by_id[i]) else str(by_id[i]) for i in ids]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _prompt_text(engine: Engine, conversation: Conversation) -> str:
    """What the model was given: the rendered prompt where the engine renders one, else the messages as JSON."""
    render = getattr(engine, "render", None)
    return render(conversation) if callable(render) else json.dumps(conversation, ensure_ascii=False)


def _batches(
    task_types: Sequence[str], conversations: Sequence[Conversation], part_size: int
) -> list[tuple[str, list[int]]]:
    """``(task_type, positions)`` parts: per task type, longest prompts first, ``part_size`` each."""
    if part_size < 1:
        raise ValueError(f"pass settings: part_size must be >= 1, got {part_size}")
    sizes = [sum(len(m["content"]) for m in c) for c in conversations]
    batches = []
    for task_type in sorted(set(task_types)):
        members = sorted((i for i, t in enumerate(task_types) if t == task_type), key=lambda i: (-sizes[i], i))
        batches += [(task_type, members[k : k + part_size]) for k in range(0, len(members), part_size)]
    return batches


def _batch_key(pass_name: str, task_type: str, index: int, engine: Engine, conversations, params: Mapping) -> str:
    """Part name; its digest covers the model, the exact conversations and the decoding
    parameters, so a part written for other inputs is never reused."""
    payload = json.dumps(
        [engine.model_name, conversations, dict(params)], sort_keys=True, ensure_ascii=False, default=str
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return f"{pass_name}-{task_type}-{index:05d}-{digest}"


def _run_batches(
    pass_name: str,
    engine: Engine,
    ids: Sequence[str],
    task_types: Sequence[str],
    conversations: Sequence[Conversation],
    part_size: int,
    params_for: Callable[[str], Mapping[str, Any]],
    compute: Callable[[str, list[int]], pd.DataFrame],
    checkpoint_dir,
) -> pd.DataFrame:
    checkpoint = open_checkpoint(checkpoint_dir)
    batches = _batches(task_types, conversations, part_size)
    parts = []
    seen: dict[str, int] = {}
    for task_type, positions in tqdm(batches, desc=f"{engine.model_name} {pass_name}", unit="batch"):
        index = seen[task_type] = seen.get(task_type, -1) + 1
        batch = [conversations[i] for i in positions]
        key = _batch_key(pass_name, task_type, index, engine, batch, params_for(task_type))
        parts.append(checkpoint.run(key, [ids[i] for i in positions], lambda: compute(task_type, positions)))
    if not parts:
        return pd.DataFrame(columns=PASS_COLUMNS[pass_name])
    table = pd.concat(parts, ignore_index=True)
    order = {id_: k for k, id_ in enumerate(ids)}
    sort_keys = [table["id"].map(order)] + ([table["sample_idx"]] if "sample_idx" in table.columns else [])
    rank = np.lexsort([k.to_numpy() for k in reversed(sort_keys)])
    return table.iloc[rank].reset_index(drop=True)


def _cast_list(values, cast) -> list:
    return [] if values is None else [cast(v) for v in values]


def p_true_from_probs(probs: np.ndarray) -> np.ndarray:
    """P(True) / (P(True) + P(False)) per row; NaN where both are 0 or not finite."""
    total = probs[:, 0] + probs[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = probs[:, 0] / total
    return np.where(np.isfinite(ratio) & (total > 0), ratio, np.nan)


# --------------------------------------------------------------------------- passes


def run_pass(
    pass_name: str,
    engine: Engine,
    questions: pd.DataFrame,
    prompts,
    settings: Mapping[str, Any],
    *,
    grade: bool = True,
    judge=None,
    greedy: pd.DataFrame | None = None,
    checkpoint_dir=None,
) -> pd.DataFrame:
    """Run one generation pass over ``questions`` (data-contract rows).

    ``prompts`` is a :class:`uqroute.prompts.PromptSet`. ``settings``: the keys
    :data:`PASS_SETTINGS` lists for the pass (see :func:`pass_settings`):
    ``max_new_tokens`` (per task type), ``verbal_max_new_tokens`` (token budget
    of both verbalization passes), ``part_size`` (questions per engine call and
    per checkpoint part), ``seed``, ``top_p``, ``n_samples``, ``sample_temperature``.
    ``greedy`` is the greedy table (its ``response`` column), needed by verbal2s and ptrue.

    A graded pass (greedy, verbal1s) is graded with :func:`grade_pass` (``judge``: None for the rule, or an
    :class:`~uqroute.grading.LLMJudge`; a reply at the budget of ``settings`` is cut off); ``grade=False``
    returns its replies table (:data:`REPLY_COLUMNS`) instead, as the workflow's model jobs do.

    Greedy decoding is temperature 0. The caller writes the returned table,
    then calls ``BatchCheckpoint(checkpoint_dir).finish()``.
    """
    spec = pass_spec(pass_name)
    questions = _check_questions(questions)
    records = questions.to_dict("records")
    ids = [str(r["id"]) for r in records]
    task_types = [str(r["task_type"]) for r in records]
    _check_settings(pass_name, settings, task_types)
    replies = _greedy_responses(greedy, ids, pass_name) if spec.follows_greedy else [None] * len(records)
    conversations = [spec.conversation(prompts, r, reply, settings) for r, reply in zip(records, replies)]

    def params_for(task_type: str) -> dict[str, Any]:
        return spec.decoding(settings, task_type, prompts)

    def compute(task_type: str, positions: list[int]) -> pd.DataFrame:
        convs = [conversations[i] for i in positions]
        params = params_for(task_type)
        if spec.generates:
            outputs = engine.generate(convs, Sampling(**{"seed": int(settings.get("seed", 0)), **params}))
        else:
            outputs = np.asarray(engine.next_token_probs(convs, params["candidates"]), dtype=np.float64)
        rows = []
        for i, output in zip(positions, outputs):
            for row in spec.rows(ids[i], records[i], output):
                if "prompt" in spec.columns:
                    row["prompt"] = _prompt_text(engine, conversations[i])
                rows.append(row)
        return pd.DataFrame(rows)

    table = _run_batches(
        pass_name, engine, ids, task_types, conversations, int(settings["part_size"]), params_for, compute,
        checkpoint_dir,
    )
    if "tokens" in table.columns:
        # Parts reloaded from disk hold numpy arrays; keep one cell type per column.
        table["tokens"] = [_cast_list(v, str) for v in table["tokens"]]
        table["token_logprobs"] = [_cast_list(v, float) for v in table["token_logprobs"]]
    if "verbal_confidence" in table.columns:
        table["verbal_confidence"] = table["verbal_confidence"].astype("float64")
    if spec.sampled and len(table):
        table["sample_idx"] = table["sample_idx"].astype("int64")
    if spec.graded:
        table = _with_columns(table, REPLY_COLUMNS[pass_name])
        budgets = {key: settings[key] for key in BUDGET_SETTINGS if key in settings}
        return grade_pass(pass_name, table, questions, judge, budgets=budgets) if grade else table
    return _with_columns(table, PASS_COLUMNS[pass_name])


def _with_columns(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` restricted to ``columns`` in that order; an absent column (empty pass) is added empty."""
    for column in columns:
        if column not in table.columns:
            table[column] = pd.Series(dtype=object)
    return table[list(columns)]


def grade_pass(pass_name: str, replies: pd.DataFrame, questions: pd.DataFrame, judge=None, *,
               weak_readings: str | None = None, budgets: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A graded pass's table from its replies: the answer each reply gives, how it was read and whether it is
    correct.

    ``replies``: the pass's :data:`REPLY_COLUMNS` (any row order; ids must cover ``questions``); ``questions``: the
    data-contract rows they answer. Each reply is read with :func:`uqroute.grading.read_item_reply`; ``budgets``
    (the generation settings holding token budgets, :data:`BUDGET_SETTINGS`) tells, for a pass that stores its
    tokens, which replies were cut off (None: not known, as for a pass that stores text only).

    ``judge``: None for the rule (:func:`uqroute.grading.is_correct` on the answer read), or an
    :class:`~uqroute.grading.LLMJudge`, which reads the replies the rule should not decide: free-form ones, and
    multiple-choice and true/false ones read on weak evidence or naming several options (a verdict that is
    neither yes nor no leaves the row to the rule). ``weak_readings``: whether the rule counts an answer read on
    weak evidence (``count``) or takes it for no answer (``drop``; default: the config schema's). Returns the
    :data:`PASS_COLUMNS` table in the order of ``replies``.
    """
    if pass_name not in GRADED_PASSES:
        raise ValueError(f"pass {pass_name!r} is not graded; graded passes: {', '.join(GRADED_PASSES)}")
    weak_readings = default_weak_readings() if weak_readings is None else weak_readings
    if weak_readings not in WEAK_READINGS:
        raise ValueError(f"weak_readings must be one of {', '.join(WEAK_READINGS)}, got {weak_readings!r}")
    missing = [c for c in REPLY_COLUMNS[pass_name] if c not in replies.columns]
    if missing:
        raise ValueError(f"{pass_name} replies table: missing column(s) {missing}; has {list(replies.columns)}")
    questions = _check_questions(questions)
    by_id = questions.set_index(questions["id"].astype(str))
    ids = replies["id"].astype(str)
    absent = sorted(set(ids) - set(by_id.index))
    if absent:
        raise KeyError(f"{pass_name} replies: id(s) {absent[:5]} are not among the questions")
    items = by_id.loc[ids].reset_index(drop=True)
    table = replies.reset_index(drop=True).copy()
    responses = ["" if _missing(r) else str(r) for r in table["response"]]
    records = items.to_dict("records")
    cut_off = _cut_off(pass_name, table, records, budgets)
    readings = [read_item_reply(r, item, cut_off=c) for r, item, c in zip(responses, records, cut_off)]
    weak = np.array([reading.strength == WEAK for reading in readings], dtype=bool)
    several = np.array([reading.rule == "several" for reading in readings], dtype=bool)
    counted = [counted_answer(r, "count" if judge is not None else weak_readings) for r in readings]
    correct = RuleJudge().judge(items, counted, responses) if len(table) else np.zeros(0, dtype=bool)
    if judge is not None and weak_readings == "drop":
        # The rule would not count these; the judge reads them, and where it gives no verdict they stay unanswered.
        correct[weak] = False
    graded_by = np.full(len(table), "rule", dtype=object)
    if judge is not None:
        free_form = items["task_type"].isin(FREE_FORM_TASKS).to_numpy()
        asked = np.flatnonzero((free_form | weak | several) & np.array([bool(r.strip()) for r in responses]))
        verdicts = judge.verdicts(items.iloc[asked], [responses[i] for i in asked])
        for i, verdict in zip(asked, verdicts):
            if verdict is not None:
                correct[i] = verdict
                graded_by[i] = "judge"
    table["prediction"] = pd.Series(counted, dtype=object)
    table["correct"] = correct
    table["ambiguous"] = several
    table["read_by"] = [reading.rule for reading in readings]
    table["graded_by"] = graded_by
    return table[PASS_COLUMNS[pass_name]]


# Whether the rule counts an answer read on weak evidence (``judge.weak_readings``).
WEAK_READINGS = ("drop", "count")


def counted_answer(reading, weak_readings: str) -> str | None:
    """The answer a :class:`~uqroute.grading.Reading` gives where grading counts it: a strong reading's, and a weak
    one's under ``weak_readings: count``; None otherwise."""
    return reading.value if reading.strong or (weak_readings == "count" and reading.strength == WEAK) else None


@functools.cache
def default_weak_readings() -> str:
    """The config schema's default of ``judge.weak_readings``: the choice that misreads fewer of the real replies
    the reader is measured on (docs/reading-replies.md)."""
    return load_schema("config")["properties"]["judge"]["properties"]["weak_readings"]["default"]


def _cut_off(pass_name: str, table: pd.DataFrame, records: list[Mapping[str, Any]],
             budgets: Mapping[str, Any] | None) -> list[bool | None]:
    """Whether each reply used its whole token budget; None where its length or budget is not known."""
    if budgets is None or "tokens" not in table.columns:
        return [None] * len(table)
    flags = []
    for tokens, response, item in zip(table["tokens"], table["response"], records):
        tokens = [] if tokens is None else list(tokens)
        if not len(tokens) and not _missing(response) and str(response):
            flags.append(None)  # an endpoint that reports no tokens: its length is not known
            continue
        flags.append(len(tokens) >= token_budget(pass_name, budgets, str(item["task_type"])))
    return flags


def run_hidden(
    engine: Engine,
    questions: pd.DataFrame,
    greedy: pd.DataFrame | None,
    prompts,
    layer: int,
    part_size: int,
    checkpoint_dir=None,
    hidden_pass: str = "hidden",
) -> pd.DataFrame:
    """One hidden-state pass (:data:`HIDDEN_PASSES`): the hidden state at the last token of its conversation,
    one row per question; by default ``hidden``, the answer prompt closed by the greedy reply (``greedy``, the
    greedy table; None for a pass that does not quote it).

    ``vector`` is float32 of the model's hidden size; see
    :meth:`uqroute.engines.hf.HFEngine.hidden_states` for what ``layer`` indexes
    (-8: output of the eighth-to-last decoder layer). The caller writes the
    returned table, then calls ``BatchCheckpoint(checkpoint_dir).finish()``.
    """
    spec = hidden_spec(hidden_pass)
    reader = hidden_state_reader(engine)
    questions = _check_questions(questions)
    records = questions.to_dict("records")
    ids = [str(r["id"]) for r in records]
    task_types = [str(r["task_type"]) for r in records]
    responses = _greedy_responses(greedy, ids, hidden_pass) if spec.follows_greedy else [None] * len(records)
    conversations = [spec.prompt(prompts, r, resp) for r, resp in zip(records, responses)]

    def compute(task_type: str, positions: list[int]) -> pd.DataFrame:
        vectors = np.asarray(reader.hidden_states([conversations[i] for i in positions], int(layer)), dtype=np.float32)
        return pd.DataFrame({"id": [ids[i] for i in positions], "layer": int(layer), "vector": list(vectors)})

    table = _run_batches(
        hidden_pass, engine, ids, task_types, conversations, int(part_size), lambda _t: {"layer": int(layer)},
        compute, checkpoint_dir,
    )
    if len(table):
        table["vector"] = [np.asarray(v, dtype=np.float32) for v in table["vector"]]
        table["layer"] = table["layer"].astype("int64")
    return table[HIDDEN_COLUMNS] if len(table) else pd.DataFrame(columns=HIDDEN_COLUMNS)
