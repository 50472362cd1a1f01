"""The paper's Figures 1-17 by number: which figure family each is and which cells it shows.

``snakemake paper_figures`` draws each as ``results/paper/fig<N>.pdf`` with the family's own drawing
code on the paper's selection, so a reviewer can name a figure by its number. The selections come from
the captions and page headers (docs/paper-map.md, section 5, says where the paper contradicts itself
and which reading is taken). Where a caption shows some SLMs or methods without saying which, every
configured one is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

# The seven datasets of the first and of the second appendix page of each family (Figs 10-17).
_FIRST_SEVEN = ("gsm8k", "mmlu", "commonsenseqa", "truthfulqa", "coqa", "boolq", "openbookqa")
_SECOND_SEVEN = ("winogrande", "svamp", "hellaswag", "aqua", "multiarith", "social_iqa", "piqa")


@dataclass(frozen=True)
class PaperFigure:
    """One paper figure.

    ``family``: the figure family (``uqroute.figure_families``). ``datasets``: the heatmap panels
    (``auroc_heatmaps``). ``pairs``: (LLM, dataset) rows for routing, relative-accuracy and
    generalization figures; (SLM, method) panels for ``confidence_distributions``.
    """

    family: str
    caption: str
    datasets: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def models(self) -> tuple[set[str], set[str]]:
        """(SLMs, LLMs) the figure names; every configured SLM is drawn besides those named."""
        if self.family == "confidence_distributions":
            return {slm for slm, _ in self.pairs}, set()
        return set(), {llm for llm, _ in self.pairs}

    def dataset_names(self) -> set[str]:
        if self.family == "confidence_distributions":
            return set()
        return set(self.datasets) | {dataset for _, dataset in self.pairs}

    def method_names(self) -> set[str]:
        return {method for _, method in self.pairs} if self.family == "confidence_distributions" else set()


def _per_llm(llm: str, datasets: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((llm, dataset) for dataset in datasets)


LLAMA_70B, GPT_4O_MINI = "llama-3.1-70b", "gpt-4o-mini"

PAPER_FIGURES: dict[int, PaperFigure] = {
    1: PaperFigure("auroc_heatmaps", "ROC AUC of confidence vs correctness, SLMs x UQ methods: CommonsenseQA",
                   datasets=("commonsenseqa",)),
    2: PaperFigure("routing_curves", "Accuracy vs routing ratio: to Llama-3.1-70B on OpenBookQA, to GPT-4o-mini "
                   "on Social IQa", pairs=((LLAMA_70B, "openbookqa"), (GPT_4O_MINI, "social_iqa"))),
    3: PaperFigure("relative_accuracy", "SLM/LLM accuracy on the most confident queries: vs Llama-3.1-70B on "
                   "GSM8K, vs GPT-4o-mini on PIQA", pairs=((LLAMA_70B, "gsm8k"), (GPT_4O_MINI, "piqa"))),
    4: PaperFigure("confidence_distributions", "Confidence distributions over the datasets: Phi-3.5-mini with "
                   "the OOD probe, Llama-3.1-8B with perplexity",
                   pairs=(("phi-3.5-mini", "ood_probe"), ("llama-3.1-8b", "perplexity"))),
    5: PaperFigure("generalization", "Routing with calibration-data thresholds vs the ground truth: to "
                   "Llama-3.1-70B on AQuA, to GPT-4o-mini on HellaSwag",
                   pairs=((LLAMA_70B, "aqua"), (GPT_4O_MINI, "hellaswag"))),
    6: PaperFigure("auroc_heatmaps", "ROC AUC heatmaps: AQuA, BoolQ, CoQA", datasets=("aqua", "boolq", "coqa")),
    7: PaperFigure("auroc_heatmaps", "ROC AUC heatmaps: GSM8K, HellaSwag, MMLU, MultiArith",
                   datasets=("gsm8k", "hellaswag", "mmlu", "multiarith")),
    # Figs 8 and 9: the page headers' datasets (their captions repeat others), so Figs 1 and 6-9 cover all 14.
    8: PaperFigure("auroc_heatmaps", "ROC AUC heatmaps: OpenBookQA, PIQA, Social IQa, SVAMP",
                   datasets=("openbookqa", "piqa", "social_iqa", "svamp")),
    9: PaperFigure("auroc_heatmaps", "ROC AUC heatmaps: CommonsenseQA, TruthfulQA, WinoGrande",
                   datasets=("commonsenseqa", "truthfulqa", "winogrande")),
}


# Figs 10-17, the appendix pages: (family, LLM, which seven datasets) per number. Fig 11's header repeats
# Fig 10's datasets; the other seven are read, as in Figs 13, 15 and 17.
_APPENDIX = {
    10: ("routing_curves", GPT_4O_MINI, "first"), 11: ("routing_curves", GPT_4O_MINI, "other"),
    12: ("routing_curves", LLAMA_70B, "first"), 13: ("routing_curves", LLAMA_70B, "other"),
    14: ("generalization", GPT_4O_MINI, "first"), 15: ("generalization", GPT_4O_MINI, "other"),
    16: ("generalization", LLAMA_70B, "first"), 17: ("generalization", LLAMA_70B, "other"),
}
_APPENDIX_TITLES = {"routing_curves": "Accuracy vs routing ratio", "generalization": "Calibration data vs ground truth"}
for _number, (_family, _llm, _which) in _APPENDIX.items():
    PAPER_FIGURES[_number] = PaperFigure(
        _family, f"{_APPENDIX_TITLES[_family]} to {_llm} ({_which} seven datasets)",
        pairs=_per_llm(_llm, _FIRST_SEVEN if _which == "first" else _SECOND_SEVEN))


def paper_figure(number: int | str) -> PaperFigure:
    try:
        return PAPER_FIGURES[int(number)]
    except (KeyError, ValueError):
        raise KeyError(f"paper figure {number!r}: the paper has Figures {min(PAPER_FIGURES)}-{max(PAPER_FIGURES)}")\
            from None


def missing_for(figure: PaperFigure, *, slms, llms, datasets, methods) -> list[str]:
    """What the config lacks to draw ``figure`` (empty when it can be drawn)."""
    needed_slms, needed_llms = figure.models()
    missing = [f"SLM {name}" for name in sorted(needed_slms - set(slms))]
    missing += [f"LLM {name}" for name in sorted(needed_llms - set(llms))]
    missing += [f"dataset {name}" for name in sorted(figure.dataset_names() - set(datasets))]
    missing += [f"method {name}" for name in sorted(figure.method_names() - set(methods))]
    return missing
