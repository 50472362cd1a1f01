"""How often a finished run's replies used their whole token budget (were likely cut off), per model and pass.

    .venv/bin/python bench/truncation.py [--results results] [--config config/config.yaml]

A reply that used its whole budget was probably cut off: an answer without its conclusion, or a verbal
confidence that never came. The greedy pass stores its token ids, so its count is exact. The other passes
store text only: their replies are re-tokenized with the model's own tokenizer (from
``results/models/<model>``, or the hub name of the registry for a model without a local folder), which
can differ from the generated ids by a token at the edges, so a reply within one token of its budget counts.

The budget of each pass is the config's: greedy and sample ``max_new_tokens`` of the dataset's task type,
verbal1s that plus ``verbal_max_new_tokens``, verbal2s ``verbal_max_new_tokens``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from uqroute.datasets import dataset_info
from uqroute.io import read_parquet
from uqroute.models import model_spec
from uqroute.paths import cell_of

PASSES = ("greedy", "sample", "verbal1s", "verbal2s")


def budget(pass_name: str, task_type: str, generation: dict) -> int:
    answer, verbal = int(generation["max_new_tokens"][task_type]), int(generation["verbal_max_new_tokens"])
    return {"greedy": answer, "sample": answer, "verbal1s": answer + verbal, "verbal2s": verbal}[pass_name]


def _tokenizer(results: Path, model: str):
    from transformers import AutoTokenizer

    folder = results / "models" / model
    return AutoTokenizer.from_pretrained(folder if folder.is_dir() else model_spec(model).hub_id)


def truncation(results: Path, generation: dict) -> pd.DataFrame:
    rows, tokenizers = [], {}
    for path in sorted((results / "gen").rglob("*.parquet")):
        if path.name.endswith(".replies.parquet"):
            continue
        cell = cell_of(str(path), "gen")
        if cell["pass_name"] not in PASSES:
            continue
        task_type = dataset_info(cell["dataset"])["task_type"]
        limit = budget(cell["pass_name"], task_type, generation)
        table = read_parquet(path)
        if cell["pass_name"] == "greedy":
            lengths, slack = table["tokens"].map(len), 0
        else:
            tokenizer = tokenizers.get(cell["model"]) or tokenizers.setdefault(cell["model"],
                                                                              _tokenizer(results, cell["model"]))
            lengths = table["response"].fillna("").map(lambda text: len(tokenizer(text, add_special_tokens=False)
                                                                        ["input_ids"]))
            slack = 1
        rows.append({"model": cell["model"], "pass": cell["pass_name"], "split": cell["split"],
                     "dataset": cell["dataset"], "task_type": task_type, "budget": limit, "replies": len(table),
                     "at_budget": int((lengths >= limit - slack).sum()), "max_tokens": int(lengths.max()) if len(lengths) else 0})
    if not rows:
        raise SystemExit(f"{results}/gen: no pass tables (run the workflow first)")
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    args = parser.parse_args()
    generation = yaml.safe_load(args.config.read_text())["generation"]
    cells = truncation(args.results, generation)
    summary = (cells.groupby(["model", "pass", "task_type", "budget"], as_index=False)
               .agg(replies=("replies", "sum"), at_budget=("at_budget", "sum"), max_tokens=("max_tokens", "max")))
    summary["share"] = (summary["at_budget"] / summary["replies"]).map("{:.1%}".format)
    print(summary.to_markdown(index=False))


if __name__ == "__main__":
    main()
