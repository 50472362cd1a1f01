"""Jobs of the analysis stage: alignment, routing, relative accuracy, calibration data, findings.

Every job that reads many cells takes their paths only; each cell's coordinates come from its path.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import read_parquet, write_parquet, write_text
from ..paths import cell_of, kind_of

UQ_READ = ["id", "confidence", "correct", "valid"]
log = logging.getLogger(__name__)


def ratio_grid(step: float) -> np.ndarray:
    """0, step, 2 step, ..., 1 (rounded, so 0.1 * 3 is 0.3)."""
    return np.round(np.arange(0, 1 + step / 2, step), 10)


def _uq_and_llm(uq_path: str, llm_path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A UQ table and the LLM's correctness on each of its rows."""
    from ..analysis.routing import align_llm_correct

    uq = read_parquet(uq_path, UQ_READ)
    return uq, align_llm_correct(uq, read_parquet(llm_path, ["id", "correct"]), label=llm_path)


def alignment(*, uq: Sequence[str], ece_bins: int, output: str) -> None:
    from ..analysis.alignment import alignment_table

    cells = [(*(cell_of(path, "uq")[k] for k in ("slm", "dataset", "method")), read_parquet(path)) for path in uq]
    write_parquet(alignment_table(cells, ece_bins=ece_bins), output)


def routing_curve(*, uq: str, llm: str, step: float, output: str, invalid: str = "drop") -> None:
    from ..analysis.routing import routing_curve as curve

    table, llm_correct = _uq_and_llm(uq, llm)
    write_parquet(curve(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                        ratios=ratio_grid(step), invalid=invalid), output)


def routing_metrics(*, curves: Sequence[str], output: str) -> None:
    from ..analysis.routing import routing_metrics_row

    rows = [routing_metrics_row(read_parquet(path, ["ratio", "accuracy", "n"]), **cell_of(path, "routing"))
            for path in curves]
    write_parquet(pd.DataFrame(rows), output)


def relative_accuracy(*, uq: Sequence[str], llm: Sequence[str], step: int, output: str,
                      invalid: str = "drop") -> None:
    """Every (SLM, dataset, method) UQ table against every LLM's answers on the same dataset."""
    from ..analysis.routing import relative_accuracy as relative

    llm_by_dataset: dict[str, list[tuple[str, str]]] = {}
    for path in llm:
        cell = cell_of(path, "gen")
        llm_by_dataset.setdefault(cell["dataset"], []).append((cell["model"], path))
    frames = []
    for uq_path in uq:
        cell = cell_of(uq_path, "uq")
        for llm_name, llm_path in llm_by_dataset.get(cell["dataset"], []):
            table, llm_correct = _uq_and_llm(uq_path, llm_path)
            result = relative(table["confidence"], table["correct"], llm_correct, valid=table["valid"],
                              excluded=range(0, 91, step), invalid=invalid)
            frames.append(result.assign(slm=cell["slm"], llm=llm_name, dataset=cell["dataset"],
                                        method=cell["method"]))
    table = pd.concat(frames, ignore_index=True)
    leading = ["slm", "llm", "dataset", "method"]
    write_parquet(table[leading + [c for c in table.columns if c not in leading]], output)


def _uq_by_dataset(paths: Sequence[str]) -> dict[str, pd.DataFrame]:
    """UQ tables by dataset: one per ``uq`` file, or each dataset's rows of a ``holdout_uq`` file."""
    tables: dict[str, pd.DataFrame] = {}
    for path in paths:
        if kind_of(path, ("uq", "holdout_uq")) == "uq":
            tables[cell_of(path, "uq")["dataset"]] = read_parquet(path, UQ_READ)
            continue
        for dataset, rows in read_parquet(path, [*UQ_READ, "dataset"]).groupby("dataset", sort=False):
            tables[dataset] = rows[UQ_READ].reset_index(drop=True)
    return tables


def calibration_set(*, uq: Sequence[str], n_bins: int, fraction: float, seeds: Sequence[int], output: str) -> None:
    """Algorithm 1 over the pooled valid confidences of the given datasets' UQ tables."""
    from ..analysis.calibration import build_calibration_set, pool_confidences

    pooled = pool_confidences(_uq_by_dataset(uq))
    table = build_calibration_set(pooled, n_bins=n_bins, fraction=fraction, seeds=tuple(seeds))
    # The seed behind each run, so a reused (released) set says how it was drawn.
    table["seed"] = np.asarray(seeds, dtype=np.int64)[table["run"].to_numpy()]
    write_parquet(table, output)


def generalization(*, calibration: str, uq: str, llm: str, step: float, output: str, invalid: str = "drop") -> None:
    from ..analysis.calibration import generalization as apply

    table, llm_correct = _uq_and_llm(uq, llm)
    write_parquet(apply(read_parquet(calibration), table, llm_correct, target_ratios=ratio_grid(step),
                        invalid=invalid), output)


def tagged(paths: Sequence[str], kind: str, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-cell tables stacked, each with its cell's coordinates (from its path) as columns."""
    frames = []
    for path in paths:
        cell = cell_of(path, kind)
        frames.append(read_parquet(path).assign(**{k: v for k, v in cell.items() if names is None or k in names}))
    return pd.concat(frames, ignore_index=True)


def findings(*, alignment: str, routing: str, relative: str, generalization: Sequence[str], uq: Sequence[str],
             output: str, html: str) -> None:
    from ..analysis.findings import distribution_distances, findings_table

    gen = tagged(generalization, "generalization")
    table = findings_table(read_parquet(alignment), read_parquet(routing), read_parquet(relative), gen,
                           distances=distribution_distances(tagged(uq, "uq")))
    write_parquet(table, output)
    write_text(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"), html)


def truncation(*, gen: Sequence[str], budgets: Mapping, tokenizers: Mapping[str, str | None], max_share: float,
               output: str) -> None:
    """How often each pass table's replies used their whole token budget, how many of those loop, and how
    many graded replies the rule could not read (``uqroute.analysis.truncation``).

    ``budgets``: the config's ``generation.max_new_tokens`` and ``verbal_max_new_tokens``; ``tokenizers``:
    where each model's tokenizer loads from (its folder or hub id; None for a model without one), for the
    passes that store text only.
    """
    from ..analysis.truncation import reply_tokens, truncation_row, truncation_table
    from ..datasets import dataset_info
    from ..passes import token_budget

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
            key = f"max_new_tokens.{key}" if key == task_type else key
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
    write_parquet(truncation_table(rows, max_share), output)
