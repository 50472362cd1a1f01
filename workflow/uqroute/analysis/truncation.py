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

from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from ..passes import GENERATING_PASSES

# ``ambiguous``: graded multiple-choice replies the rule cannot read (several options, no conclusion), the
# other way a reply's answer goes missing; 0 for passes that are not graded.
TRUNCATION_COLUMNS = ["model", "dataset", "split", "pass_name", "task_type", "budget", "replies", "uncounted",
                      "at_budget", "looping", "share", "cut_off_share", "max_tokens", "ambiguous", "over_limit"]
# A reply loops when fewer than 60 % of the 4-token runs in its second half are distinct. Measured on
# SmolLM2-135M at the paper's budgets: its loops (one line or one digit over and over) score 0.3-0.6, its
# finished explanations and solutions 0.7-1.0; loops that count up ("Step 5: 26 + 1 = 27") score 0.7-0.8
# and stay counted as cut off, the side that asks for a larger budget.
LOOP_NGRAM, LOOP_DISTINCT = 4, 0.6


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


def repeats_itself(tokens: Sequence, n: int = LOOP_NGRAM, distinct: float = LOOP_DISTINCT) -> bool:
    """Whether fewer than ``distinct`` of the ``n``-token runs in a reply's second half differ: a loop."""
    tail = tokens[len(tokens) // 2:]
    runs = [tuple(tail[i:i + n]) for i in range(len(tail) - n + 1)]
    return bool(runs) and len(set(runs)) < distinct * len(runs)


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
