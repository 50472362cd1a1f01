"""How often a pass's replies used their whole token budget, and how many of those a larger one would finish.

A reply that stopped at its budget was cut off: an answer without its conclusion, a verbal confidence
that never came. Neither shows as an error; they show as a lower accuracy or as invalid rows of a
method, so the workflow counts them per (model, dataset, split, pass) next to the budget they ran under.
Some replies at the budget would never have ended: a model caught in a loop (the same steps, or
"99.999...", over and over). They are counted apart, since a larger budget only makes them longer; the
rest are the replies a larger budget could finish, and their share is what ``over_limit`` checks.

The greedy pass stores the tokens it generated, so its count is exact. The other passes store text
only; their replies are re-tokenized, which can differ from the generated ids by a token at the
edges, so a reply within one token of its budget counts as having reached it (a sampled reply can
re-tokenize to more: its tokens need not be the tokenizer's own segmentation of its text). An endpoint that
reports no logprobs leaves a greedy reply without tokens: its length is unknown, so it is counted
as ``uncounted`` and left out of the shares rather than taken for an empty reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from ..datasets import dataset_info
from ..grading.reading import repeats_itself
from ..io import read_parquet
from ..passes import ANSWER_BUDGET, GENERATING_PASSES, token_budget
from ..paths import cell_of

log = logging.getLogger(__name__)

# ``ambiguous``: graded multiple-choice replies the rule cannot read (several options, no conclusion), the
# other way a reply's answer goes missing; 0 for passes that are not graded.
TRUNCATION_COLUMNS = ["model", "dataset", "split", "pass_name", "task_type", "budget", "replies", "uncounted",
                      "at_budget", "looping", "share", "cut_off_share", "max_tokens", "ambiguous", "over_limit"]
def reply_tokens(table: pd.DataFrame, pass_name: str,
                 tokenize: Callable[[str], Sequence] | None = None) -> tuple[list[Sequence | None], int]:
    """The tokens of each reply of a pass table (None: not known), and the slack of their count (0 exact,
    1 re-tokenized)."""
    if pass_name not in GENERATING_PASSES:
        raise ValueError(f"pass {pass_name!r} generates no replies; passes: {', '.join(GENERATING_PASSES)}")
    if "tokens" in table.columns:
        return [list(tokens) if len(tokens) or not response else None
                for tokens, response in zip(table["tokens"], table["response"].fillna(""))], 0
    if tokenize is None:
        raise ValueError(f"a {pass_name} table stores text only: counting its tokens needs the model's tokenizer")
    return [list(tokenize(text)) for text in table["response"].fillna("")], 1


def truncation_row(replies: Sequence[Sequence | None], budget: int, slack: int) -> dict:
    """Replies, how many have no known length, how many reached ``budget`` (within ``slack``), how many of
    those loop, and their shares of the counted replies (NaN when none is counted)."""
    if budget < 1:
        raise ValueError(f"token budget must be at least 1, got {budget}")
    counted = [tokens for tokens in replies if tokens is not None]
    reached = [tokens for tokens in counted if len(tokens) >= budget - slack]
    looping = sum(repeats_itself(tokens) for tokens in reached)
    n = len(counted)
    return {"budget": int(budget), "replies": len(replies), "uncounted": len(replies) - n,
            "at_budget": len(reached), "looping": looping,
            "share": len(reached) / n if n else float("nan"),
            "cut_off_share": (len(reached) - looping) / n if n else float("nan"),
            "max_tokens": max(map(len, counted), default=0)}


def truncation_table(rows: list[dict], max_share: float) -> pd.DataFrame:
    """One row per pass table; ``over_limit``: more than ``max_share`` of its counted replies cut off but not
    looping."""
    table = pd.DataFrame(rows, columns=[c for c in TRUNCATION_COLUMNS if c != "over_limit"])
    table["over_limit"] = table["cut_off_share"] > max_share
    return table[TRUNCATION_COLUMNS]


def count_truncation(gen: Sequence[str], budgets: Mapping, tokenizers: Mapping[str, str | None],
                     max_share: float) -> pd.DataFrame:
    """The truncation table of the pass tables at the paths in ``gen`` (each cell read from its path): how
    often each table's replies used their whole token budget, how many of those loop, and how many graded
    replies the rule could not read; a warning names each table over ``max_share``.

    ``budgets``: the config's ``generation.max_new_tokens`` and ``verbal_max_new_tokens``; ``tokenizers``:
    where each model's tokenizer loads from (its folder or hub id; None for a model without one), for the
    passes that store text only.
    """
    loaded: dict[str, object] = {}

    def tokenize_with(model: str):
        """The model's tokenizer as a function of text, or None when it has none (an API-only model)."""
        if model not in loaded:
            if model not in tokenizers:
                raise KeyError(f"no tokenizer source for model {model!r} (its text-only passes need one)")
            source = tokenizers[model]
            if source is None:
                loaded[model] = None
            else:
                # deferred: transformers' AutoTokenizer (~8 s with torch), only a text-only pass needs a tokenizer
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(source)
                loaded[model] = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
        return loaded[model]

    rows = []
    for path in gen:
        cell = cell_of(path, "gen")
        task_type = dataset_info(cell["dataset"])["task_type"]
        try:
            budget = token_budget(cell["pass_name"], budgets, task_type)
        except KeyError as missing:
            key = missing.args[0]
            key = f"{ANSWER_BUDGET}.{key}" if key == task_type else key
            raise KeyError(f"{path}: config key generation.{key} is missing (the {cell['pass_name']} budget of "
                           f"a {task_type} dataset)") from None
        table = read_parquet(path)
        text_only = "tokens" not in table.columns
        tokenize = tokenize_with(cell["model"]) if text_only else None
        if text_only and tokenize is None:
            replies, slack = [None] * len(table), 1
        else:
            replies, slack = reply_tokens(table, cell["pass_name"], tokenize)
        row = {**cell, "task_type": task_type, **truncation_row(replies, budget, slack),
               "ambiguous": int(table["ambiguous"].sum()) if "ambiguous" in table.columns else 0}
        if row["ambiguous"]:
            log.warning("%s: %d of %d replies commit to several options and conclude on none: no answer by the "
                        "rule, the judge's verdict where one is configured", path, row["ambiguous"], row["replies"])
        if row["uncounted"]:
            why = "the model has no tokenizer to count them with" if text_only else "the endpoint reported no logprobs"
            log.warning("%s: %d of %d replies have no known length (%s); the shares count the rest", path,
                        row["uncounted"], row["replies"], why)
        if row["cut_off_share"] > max_share:
            log.warning("%s: %d of %d counted replies (%.1f %%) were cut off at the budget of %d tokens without "
                        "looping (limit %.1f %%; %d more loop)", path, row["at_budget"] - row["looping"],
                        row["replies"] - row["uncounted"], 100 * row["cut_off_share"], budget, 100 * max_share,
                        row["looping"])
        rows.append(row)
    return truncation_table(rows, max_share)
