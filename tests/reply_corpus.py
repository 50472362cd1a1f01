"""The corpus of real replies that the answer reader is measured on.

``real-replies/replies.jsonl`` in the data folder holds 622 replies that 13 public 3-9B instruct and chat models
wrote to multiple-choice (2-10 options), math and yes/no questions, copied from public evaluation dumps, each
with its source's own parsed answer where the source has a parser. The project's labels of those replies (what a
careful grader takes each to answer, ``none`` where it answers nothing; the reading guide is
docs/reading-replies.md) are in ``tests/data/real_replies.labels.csv``.

A third of each task type is held out: its replies were labelled by two readers who never saw the rules, their
disagreements settled by a third, and nobody writing the reader's rules read them. The rates of both parts are
reported apart, each with its Wilson interval.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd
from scipy.stats import binomtest

LABELS = Path(__file__).parent / "data" / "real_replies.labels.csv"
REPLIES = Path("real-replies") / "replies.jsonl"
HELD_OUT_SALT = "uqroute-heldout"
NO_ANSWER = "none"
# Sources whose dump carries their harness's own parse (null there means the parser found no answer). ZeroEval's
# dump has none, and one chainscope file's parse belongs to another generation run (its ids do not match).
SOURCE_PARSERS = ("CheongWoong/RoLM", "TIGER-AI-Lab/MMLU-Pro", "jettjaniak/chainscope")


def held_out(replies: pd.DataFrame) -> pd.Series:
    """True for the held-out third of each task type: the replies whose salted id hash sorts first."""
    digest = replies["id"].map(lambda id_: hashlib.sha256(f"{HELD_OUT_SALT}:{id_}".encode()).hexdigest())
    rank = digest.groupby(replies["task_type"]).rank(method="first")
    size = replies.groupby("task_type")["id"].transform("size")
    return rank <= (size / 3).round()


def load_corpus(data_dir: Path) -> pd.DataFrame:
    """The replies with their ``label``, ``note`` and ``part`` (``dev`` or ``held-out``)."""
    path = Path(data_dir) / REPLIES
    if not path.exists():
        raise FileNotFoundError(f"{path}: the corpus of real replies is missing from the data folder")
    replies = pd.read_json(path, lines=True, dtype={"gold": str, "source_pred": object})
    labels = pd.read_csv(LABELS, dtype=str, keep_default_na=False)
    unlabelled = sorted(set(replies["id"]) - set(labels["id"]))
    unknown = sorted(set(labels["id"]) - set(replies["id"]))
    if unlabelled or unknown:
        raise ValueError(f"{LABELS}: {len(unlabelled)} replies of {path} have no label (first: {unlabelled[:3]}); "
                         f"{len(unknown)} labels name no reply (first: {unknown[:3]})")
    corpus = replies.merge(labels, on="id", validate="one_to_one")
    corpus["part"] = held_out(corpus).map({True: "held-out", False: "dev"})
    return corpus


def item_of(row: Mapping) -> dict:
    """The data-contract fields a reader takes from one corpus row."""
    options = list(row["options"]) if row["task_type"] == "mcq" else None
    return {"id": row["id"], "dataset": row["dataset"], "task_type": row["task_type"], "question": row["question"],
            "choices": options, "answer": row["gold"]}


def normalised(task_type: str, value) -> str | None:
    """A reading as the labels write it: a letter, true/false, a number's value, or None for no answer."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if text.lower() in (NO_ANSWER, "", "unknown"):
        return None
    if task_type == "tf":
        return {"true": "true", "yes": "true", "false": "false", "no": "false"}.get(text.lower(), text.lower())
    if task_type == "ff_num":
        try:
            return repr(float(text.replace(",", "")))
        except ValueError:
            return text
    return text.upper()


def misreads(corpus: pd.DataFrame, read: Callable[[Mapping], str | None]) -> pd.Series:
    """True where ``read(row)`` differs from the row's label."""
    return pd.Series([normalised(row["task_type"], read(row)) != normalised(row["task_type"], row["label"])
                      for row in corpus.to_dict("records")], index=corpus.index)


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def rate_table(corpus: pd.DataFrame, wrong: pd.Series) -> pd.DataFrame:
    """Misread rate per part and task type (and overall), with n and the 95 % Wilson interval; ``no answer
    given one``: of the replies labelled none, the share the reader gave an answer."""
    rows = []
    frame = corpus.assign(wrong=wrong.to_numpy())
    groups = [("all", "all", frame)]
    groups += [(part, "all", f) for part, f in frame.groupby("part")]
    groups += [(part, task, f) for (part, task), f in frame.groupby(["part", "task_type"])]
    groups += [("both", task, f) for task, f in frame.groupby("task_type")]
    for part, task, f in groups:
        k, n = int(f["wrong"].sum()), len(f)
        lo, hi = wilson(k, n)
        rows.append({"part": part, "task_type": task, "n": n, "misread": k, "rate": k / n if n else math.nan,
                     "low": lo, "high": hi})
    return pd.DataFrame(rows)


def format_rates(table: pd.DataFrame, title: str) -> str:
    lines = [title]
    for row in table.itertuples():
        lines.append(f"  {row.part:>8} {row.task_type:>6}: {row.misread:3d}/{row.n:3d} misread = "
                     f"{100 * row.rate:5.1f} % (95 % Wilson {100 * row.low:4.1f}-{100 * row.high:4.1f} %)")
    return "\n".join(lines)


def source_parser_rows(corpus: pd.DataFrame) -> pd.Series:
    """The rows whose source has an answer parser of its own (see :data:`SOURCE_PARSERS`)."""
    has_parser = corpus["source_repo"].isin(SOURCE_PARSERS)
    chainscope = corpus["source_repo"] == "jettjaniak/chainscope"
    return has_parser & ~(chainscope & corpus["source_pred"].isna())
