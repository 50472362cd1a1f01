# One rule per figure family; each reads finished tables only, so `snakemake figures` never calls a model.


localrules:
    figures,
    figure_auroc_heatmaps,
    figure_routing_curves,
    figure_relative_accuracy,
    figure_confidence_distributions,
    figure_generalization,
    figure_ratio_fidelity,
    paper_figure,
    paper_figures,


rule figure_auroc_heatmaps:
    input:
        alignment=path("alignment"),
    output:
        pdf=figure_output("figure_auroc_heatmaps", "pdf"),
        png=report(
            figure_output("figure_auroc_heatmaps", "png"),
            caption="../report/auroc_heatmaps.rst",
            category="2. Alignment",
        ),
    params:
        job="figures.figure",
        family="auroc_heatmaps",
    log:
        f"{LOGS}/figures/auroc_heatmaps.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figure_routing_curves:
    input:
        curves=lambda wc: [routing_file(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in METHODS],
        # only this dataset's UQ files (not alignment.parquet), so one column never builds the whole grid
        uq=lambda wc: [uq_file(slm, wc.dataset, method) for slm in SLMS for method in METHODS],
    output:
        pdf=figure_output("figure_routing_curves", "pdf"),
        png=report(
            figure_output("figure_routing_curves", "png"),
            caption="../report/routing_curves.rst",
            category="3. Routing",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "accuracy vs routing ratio"},
        ),
    params:
        job="figures.figure",
        family="routing_curves",
    log:
        f"{LOGS}/figures/routing_curves/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figure_relative_accuracy:
    input:
        relative=path("relative_accuracy"),
        alignment=path("alignment"),
    output:
        pdf=figure_output("figure_relative_accuracy", "pdf"),
        png=report(
            figure_output("figure_relative_accuracy", "png"),
            caption="../report/relative_accuracy.rst",
            category="4. Relative accuracy",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "relative accuracy"},
        ),
    params:
        job="figures.figure",
        family="relative_accuracy",
    log:
        f"{LOGS}/figures/relative_accuracy/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figure_confidence_distributions:
    input:
        uq=lambda wc: [uq_file(wc.slm, dataset, method) for dataset in DATASETS for method in METHODS],
    output:
        pdf=figure_output("figure_confidence_distributions", "pdf"),
        png=report(
            figure_output("figure_confidence_distributions", "png"),
            caption="../report/confidence_distributions.rst",
            category="5. Confidence distributions",
            labels={"SLM": "{slm}", "figure": "confidence distributions"},
        ),
    params:
        job="figures.figure",
        family="confidence_distributions",
    log:
        f"{LOGS}/figures/confidence_distributions/{{slm}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figure_generalization:
    input:
        generalization=lambda wc: [
            path("generalization", slm=slm, llm=wc.llm, method=method, dataset=wc.dataset)
            for slm in SLMS
            for method in CALIBRATION_METHODS
        ],
        routing=lambda wc: [
            routing_file(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in CALIBRATION_METHODS
        ],
    output:
        pdf=figure_output("figure_generalization", "pdf"),
        png=report(
            figure_output("figure_generalization", "png"),
            caption="../report/generalization.rst",
            category="6. Generalization",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "calibration data vs ground truth"},
        ),
    params:
        job="figures.figure",
        family="generalization",
    log:
        f"{LOGS}/figures/generalization/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figure_ratio_fidelity:
    input:
        generalization=all_generalization(),
    output:
        pdf=figure_output("figure_ratio_fidelity", "pdf"),
        png=report(
            figure_output("figure_ratio_fidelity", "png"),
            caption="../report/ratio_fidelity.rst",
            category="6. Generalization",
        ),
    params:
        job="figures.figure",
        family="ratio_fidelity",
    log:
        f"{LOGS}/figures/ratio_fidelity.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule figures:
    """Every figure, from finished tables (the reviewer's target)."""
    input:
        all_figures(),


rule paper_figure:
    """The paper's Figure N: its family's drawing on the cells its caption names (uqroute.paper_figures)."""
    input:
        unpack(paper_figure_inputs),
    output:
        pdf=figure_output("paper_figure", "pdf"),
        png=figure_output("paper_figure", "png"),
    params:
        job="figures.paper_figure",
    log:
        f"{LOGS}/figures/paper/fig{{number}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule paper_figures:
    """Figures 1-17 of the paper as results/paper/fig<N>.pdf (needs the paper's grid: config/paper.yaml)."""
    input:
        all_paper_figures(),
