"""One function per workflow job: read the inputs, call the library, write the output atomically.

Workflow scripts only unpack Snakemake's objects and call these, so every job can also be run
(and tested) from plain Python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .io import read_parquet, write_parquet

log = logging.getLogger("uqroute.jobs")


def prepare_dataset(dataset: str, split: str, data_dir: str | None, output: str) -> None:
    from .datasets import ITEM_SCHEMA, load_split

    df = load_split(dataset, split, Path(data_dir) if data_dir else None)
    log.info("%s/%s: %d rows", dataset, split, len(df))
    write_parquet(df, output, schema=ITEM_SCHEMA)


def prepare_model(model: str, output: str) -> None:
    from .models import materialize, model_spec

    materialize(model_spec(model), Path(output))


def load_questions(path: str, max_questions: int | None, seed: int) -> pd.DataFrame:
    """The deterministic subset every pass and method of a cell reads."""
    from .datasets import take_subset

    return take_subset(read_parquet(path), max_questions, seed)


def build_engine(model: str, options: Mapping[str, Any], model_dir: str | None = None, api_cache: str | None = None,
                 threads: int | None = None):
    """The model's engine; ``threads`` (the job's CPU share) applies to engines running weights here."""
    from .models import make_engine, model_spec

    spec = model_spec(model)
    options = dict(options)
    kind = options.pop("kind", None) or spec.engine
    if threads is not None and kind == "hf":
        options.setdefault("threads", threads)
    return make_engine(spec, kind=kind, model_dir=Path(model_dir) if model_dir else None,
                       cache_dir=Path(api_cache) if api_cache else None, **options)


def _write_pass_table(table: pd.DataFrame, output: str, checkpoint_dir: str | None) -> None:
    """The table first, then the finished-batch parts it was assembled from."""
    from .checkpoint import BatchCheckpoint

    write_parquet(table, output)
    if checkpoint_dir:
        BatchCheckpoint(Path(checkpoint_dir)).finish()


def build_judge(judge: Mapping[str, Any], api_cache: str | None = None):
    from .grading import RuleJudge

    if judge.get("engine", "rule") == "rule":
        return RuleJudge()
    from .judge import LLMJudge

    engine = build_engine(judge["model"], judge.get("engine_options", {}), api_cache=api_cache)
    return LLMJudge(engine)


def generate(
    *,
    model: str,
    pass_name: str,
    questions: str,
    output: str,
    engine_options: Mapping[str, Any],
    settings: Mapping[str, Any],
    judge: Mapping[str, Any],
    max_questions: int | None,
    subset_seed: int,
    checkpoint_dir: str | None = None,
    greedy: str | None = None,
    model_dir: str | None = None,
    api_cache: str | None = None,
    threads: int | None = None,
) -> None:
    from .passes import run_pass
    from .prompts import PromptSet

    items = load_questions(questions, max_questions, subset_seed)
    greedy_table = read_parquet(greedy) if greedy else None
    engine = build_engine(model, engine_options, model_dir, api_cache, threads)
    try:
        table = run_pass(
            pass_name,
            engine,
            items,
            PromptSet.load(),
            dict(settings),
            judge=build_judge(judge, api_cache) if pass_name in ("greedy", "verbal1s") else None,
            greedy=greedy_table,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        )
    finally:
        engine.close()
    _write_pass_table(table, output, checkpoint_dir)


def hidden_states(
    *,
    model: str,
    questions: str,
    greedy: str,
    output: str,
    engine_options: Mapping[str, Any],
    layer: int,
    batch_size: int,
    max_questions: int | None,
    subset_seed: int,
    checkpoint_dir: str | None = None,
    model_dir: str | None = None,
    threads: int | None = None,
) -> None:
    from .passes import run_hidden
    from .prompts import PromptSet

    items = load_questions(questions, max_questions, subset_seed)
    engine = build_engine(model, engine_options, model_dir, threads=threads)
    try:
        table = run_hidden(engine, items, read_parquet(greedy), PromptSet.load(), layer, batch_size,
                           checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None)
    finally:
        engine.close()
    _write_pass_table(table, output, checkpoint_dir)


def _hidden_and_greedy(hidden_path: str, greedy_path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_parquet(hidden_path, ["id", "layer", "vector"]), read_parquet(greedy_path, ["id", "correct"])


def uq_score(
    *,
    method: str,
    dataset: str,
    questions: str,
    passes: Mapping[str, str],
    output: str,
    probe: Mapping[str, Any],
    max_questions: int | None,
    subset_seed: int,
    hidden: str | None = None,
    train: Sequence[str] = (),
    ood_train: Sequence[str] = (),
    threads: int = 1,
) -> None:
    """Score one method; ``train``/``ood_train`` are flat [hidden, greedy, hidden, greedy, ...] path lists."""
    from .uq import score_method
    from .uq.requirements import PROBE_METHODS

    items = load_questions(questions, max_questions, subset_seed)
    tables = {name: read_parquet(path) for name, path in passes.items()}
    crossfit_folds = probe.get("crossfit_folds", 5)
    if method not in PROBE_METHODS:
        write_parquet(score_method(method, tables, items), output)
        return

    import torch

    from .uq import probes

    torch.set_num_threads(threads)
    test_hidden = read_parquet(hidden, ["id", "layer", "vector"])
    test_greedy = tables["greedy"]
    pairs = [_hidden_and_greedy(h, g) for h, g in zip(ood_train[::2] or train[::2], ood_train[1::2] or train[1::2])]
    common = {"dataset": dataset, "questions": items}
    if method == "trained_probe":
        settings = probes.ProbeSettings.from_config(probe, ood=False)
        if pairs:
            scores = probes.trained_probe(test_hidden, test_greedy, *pairs[0], settings, **common)
        else:
            log.info("%s: train split missing or unlike test; cross-fitting over the test split", dataset)
            scores = probes.crossfit_probe(test_hidden, test_greedy, settings, folds=crossfit_folds, **common)
    else:
        settings = probes.ProbeSettings.from_config(probe, ood=True)
        scores = probes.ood_probe(test_hidden, test_greedy, pairs, settings, **common)
    write_parquet(scores, output)


# ---- analysis ------------------------------------------------------------------------------------


def _correct_by_id(uq: pd.DataFrame, llm_greedy: pd.DataFrame, uq_path: str, llm_path: str) -> np.ndarray:
    """LLM correctness aligned with the SLM's rows; both must cover the same questions."""
    llm = llm_greedy.set_index("id")["correct"]
    missing = sorted(set(uq["id"]) - set(llm.index))
    if missing:
        raise ValueError(f"{llm_path}: no LLM answer for {len(missing)} question(s) of {uq_path}, e.g. {missing[:3]}")
    return llm.loc[uq["id"]].to_numpy(dtype=bool)


def alignment(*, inputs: Sequence[str], cells: Sequence[Sequence[str]], ece_bins: int, output: str) -> None:
    from .analysis.alignment import alignment_metrics

    rows = []
    for path, (slm, dataset, method) in zip(inputs, cells):
        metrics = alignment_metrics(read_parquet(path), ece_bins=ece_bins)
        rows.append({"slm": slm, "dataset": dataset, "method": method, **metrics})
    write_parquet(pd.DataFrame(rows), output)


def _routing_inputs(uq_path: str, llm_path: str):
    uq = read_parquet(uq_path, ["id", "confidence", "correct", "valid"])
    llm_correct = _correct_by_id(uq, read_parquet(llm_path, ["id", "correct"]), uq_path, llm_path)
    return uq, llm_correct


def routing_curve(*, uq: str, llm: str, step: float, output: str) -> None:
    from .analysis.routing import routing_curve as curve

    table, llm_correct = _routing_inputs(uq, llm)
    ratios = np.round(np.arange(0, 1 + step / 2, step), 10)
    result = curve(table["confidence"].to_numpy(float), table["correct"].to_numpy(bool), llm_correct,
                   valid=table["valid"].to_numpy(bool), ratios=ratios)
    write_parquet(result, output)


def routing_metrics(*, inputs: Sequence[str], cells: Sequence[Sequence[str]], output: str) -> None:
    from .analysis.routing import routing_summary

    rows = []
    for path, (slm, llm, dataset, method) in zip(inputs, cells):
        curve = read_parquet(path, ["ratio", "accuracy"])
        slm_accuracy = float(curve["accuracy"].iloc[0])
        llm_accuracy = float(curve["accuracy"].iloc[-1])
        rows.append({"slm": slm, "llm": llm, "dataset": dataset, "method": method,
                     "slm_accuracy": slm_accuracy, "llm_accuracy": llm_accuracy,
                     **routing_summary(curve, slm_accuracy, llm_accuracy)})
    write_parquet(pd.DataFrame(rows), output)


def relative_accuracy(*, uq: Sequence[str], llm: Sequence[str], uq_cells, llm_cells, step: int, output: str) -> None:
    from .analysis.routing import relative_accuracy as relative

    llm_paths = {tuple(cell): path for cell, path in zip(llm_cells, llm)}
    frames = []
    for uq_path, (slm, dataset, method) in zip(uq, uq_cells):
        for (llm_name, llm_dataset), llm_path in llm_paths.items():
            if llm_dataset != dataset:
                continue
            table, llm_correct = _routing_inputs(uq_path, llm_path)
            result = relative(table["confidence"].to_numpy(float), table["correct"].to_numpy(bool), llm_correct,
                              valid=table["valid"].to_numpy(bool), excluded=range(0, 91, step))
            frames.append(result.assign(slm=slm, llm=llm_name, dataset=dataset, method=method))
    table = pd.concat(frames, ignore_index=True)
    leading = ["slm", "llm", "dataset", "method"]
    write_parquet(table[leading + [c for c in table.columns if c not in leading]], output)


def _pooled_confidences(paths: Sequence[str], sources: Sequence[str]) -> pd.DataFrame:
    frames = []
    for path, source in zip(paths, sources):
        uq = read_parquet(path, ["id", "confidence", "valid"])
        frames.append(uq.loc[uq["valid"], ["id", "confidence"]].assign(source_dataset=source))
    return pd.concat(frames, ignore_index=True)[["source_dataset", "id", "confidence"]]


def calibration_set(*, inputs: Sequence[str], sources: Sequence[str], n_bins: int, fraction: float,
                    seeds: Sequence[int], output: str) -> None:
    from .analysis.calibration import build_calibration_set

    pooled = _pooled_confidences(inputs, sources)
    table = build_calibration_set(pooled, n_bins=n_bins, fraction=fraction, seeds=tuple(seeds))
    # The seed behind each run, so a reused (released) set says how it was drawn.
    table["seed"] = np.asarray(seeds, dtype=np.int64)[table["run"].to_numpy()]
    write_parquet(table, output)


def generalization(*, calibration: str, uq: str, llm: str, step: float, output: str) -> None:
    from .analysis.calibration import generalization as apply

    table, llm_correct = _routing_inputs(uq, llm)
    ratios = np.round(np.arange(0, 1 + step / 2, step), 10)
    result = apply(read_parquet(calibration), table, llm_correct, target_ratios=ratios)
    write_parquet(result, output)


def findings(*, alignment: str, routing: str, relative: str, generalization: Sequence[str],
             generalization_cells, uq: Sequence[str], uq_cells, output: str, html: str) -> None:
    from .analysis.findings import distribution_distances, findings_table
    from .io import write_text

    pooled = pd.concat([
        read_parquet(path).assign(slm=slm, dataset=dataset, method=method)
        for path, (slm, dataset, method) in zip(uq, uq_cells)
    ], ignore_index=True)
    gen = pd.concat([
        read_parquet(path).assign(slm=slm, llm=llm, dataset=dataset, method=method)
        for path, (slm, llm, method, dataset) in zip(generalization, generalization_cells)
    ], ignore_index=True)
    table = findings_table(read_parquet(alignment), read_parquet(routing), read_parquet(relative), gen,
                           distances=distribution_distances(pooled))
    write_parquet(table, output)
    write_text(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"), html)


def _tagged(paths: Sequence[str], cells, names: Sequence[str]) -> pd.DataFrame:
    """Concatenate per-cell tables, adding the cell's coordinates as columns."""
    return pd.concat(
        [read_parquet(path).assign(**dict(zip(names, cell))) for path, cell in zip(paths, cells)],
        ignore_index=True,
    )


def _cells_without_confidence(alignment: str) -> set[tuple[str, str, str]]:
    """(slm, dataset, method) cells where no answer got a valid confidence (nothing to rank by)."""
    table = read_parquet(alignment, ["slm", "dataset", "method", "n_valid"])
    return set(table.loc[table["n_valid"] == 0, ["slm", "dataset", "method"]].itertuples(index=False, name=None))


def _methods(cells) -> list[str]:
    """Every method a figure should show, also those whose tables are empty (shown with a note)."""
    return list(dict.fromkeys(cell[-1] for cell in cells))


def figure(*, family: str, inputs: Mapping[str, Sequence[str]] | Sequence[str], output_png: str,
           params: Mapping[str, Any]) -> None:
    """Draw one figure family to ``output_png`` and the PDF beside it."""
    from . import figures

    stem = str(Path(output_png).with_suffix(""))
    if family == "auroc_heatmaps":
        figures.plot_auroc_heatmaps(read_parquet(inputs[0]), stem)
    elif family == "routing_curves":
        cells = params["cells"]
        no_confidence = {(slm, dataset, method) for path, (slm, _, dataset, method) in zip(inputs["uq"], cells)
                         if not read_parquet(path, ["valid"])["valid"].any()}
        figures.plot_routing_curves(_tagged(inputs["curves"], cells, ("slm", "llm", "dataset", "method")),
                                    stem, no_confidence=no_confidence)
    elif family == "relative_accuracy":
        table = read_parquet(inputs["relative"][0])
        figures.plot_relative_accuracy(table[(table["llm"] == params["llm"]) & (table["dataset"] == params["dataset"])],
                                       stem, no_confidence=_cells_without_confidence(inputs["alignment"][0]))
    elif family == "confidence_distributions":
        figures.plot_confidence_distributions(_tagged(inputs, params["cells"], ("slm", "dataset", "method")), stem)
    elif family == "generalization":
        names = ("slm", "llm", "dataset", "method")
        figures.plot_generalization(_tagged(inputs["generalization"], params["cells"], names),
                                    _tagged(inputs["routing"], params["cells"], names), stem,
                                    methods=_methods(params["cells"]))
    elif family == "ratio_fidelity":
        figures.plot_ratio_fidelity(_tagged(inputs, params["cells"], ("slm", "llm", "dataset", "method")), stem,
                                    methods=_methods(params["cells"]))
    else:
        raise ValueError(f"unknown figure family {family!r}")
