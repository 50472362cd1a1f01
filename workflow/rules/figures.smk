# One rule per figure family; each reads finished tables only, so `snakemake figures` never calls a model.


localrules:
    figures,
    figure_auroc_heatmaps,
    figure_routing_curves,
    figure_relative_accuracy,
    figure_confidence_distributions,
    figure_generalization,
    figure_ratio_fidelity,


rule figure_auroc_heatmaps:
    input:
        f"{RESULTS}/metrics/alignment.parquet",
    output:
        pdf=f"{RESULTS}/figures/auroc_heatmaps.pdf",
        png=report(
            f"{RESULTS}/figures/auroc_heatmaps.png",
            caption="../report/auroc_heatmaps.rst",
            category="2. Alignment",
        ),
    params:
        family="auroc_heatmaps",
    log:
        f"{LOGS}/figures/auroc_heatmaps.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figure_routing_curves:
    input:
        curves=lambda wc: [routing_path(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in METHODS],
        # only this dataset's UQ files (not alignment.parquet), so one column never builds the whole grid
        uq=lambda wc: [uq_path(slm, wc.dataset, method) for slm in SLMS for method in METHODS],
    output:
        pdf=f"{RESULTS}/figures/routing_curves/{{llm}}/{{dataset}}.pdf",
        png=report(
            f"{RESULTS}/figures/routing_curves/{{llm}}/{{dataset}}.png",
            caption="../report/routing_curves.rst",
            category="3. Routing",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "accuracy vs routing ratio"},
        ),
    params:
        family="routing_curves",
        cells=lambda wc: [(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in METHODS],
    log:
        f"{LOGS}/figures/routing_curves/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figure_relative_accuracy:
    input:
        relative=f"{RESULTS}/metrics/relative_accuracy.parquet",
        alignment=f"{RESULTS}/metrics/alignment.parquet",
    output:
        pdf=f"{RESULTS}/figures/relative_accuracy/{{llm}}/{{dataset}}.pdf",
        png=report(
            f"{RESULTS}/figures/relative_accuracy/{{llm}}/{{dataset}}.png",
            caption="../report/relative_accuracy.rst",
            category="4. Relative accuracy",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "relative accuracy"},
        ),
    params:
        family="relative_accuracy",
        llm=lambda wc: wc.llm,
        dataset=lambda wc: wc.dataset,
    log:
        f"{LOGS}/figures/relative_accuracy/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figure_confidence_distributions:
    input:
        lambda wc: [uq_path(wc.slm, dataset, method) for dataset in DATASETS for method in METHODS],
    output:
        pdf=f"{RESULTS}/figures/confidence_distributions/{{slm}}.pdf",
        png=report(
            f"{RESULTS}/figures/confidence_distributions/{{slm}}.png",
            caption="../report/confidence_distributions.rst",
            category="5. Confidence distributions",
            labels={"SLM": "{slm}", "figure": "confidence distributions"},
        ),
    params:
        family="confidence_distributions",
        cells=lambda wc: [(wc.slm, dataset, method) for dataset in DATASETS for method in METHODS],
    log:
        f"{LOGS}/figures/confidence_distributions/{{slm}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figure_generalization:
    input:
        generalization=lambda wc: [
            generalization_path(slm, wc.llm, method, wc.dataset) for slm in SLMS for method in CALIBRATION_METHODS
        ],
        routing=lambda wc: [
            routing_path(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in CALIBRATION_METHODS
        ],
    output:
        pdf=f"{RESULTS}/figures/generalization/{{llm}}/{{dataset}}.pdf",
        png=report(
            f"{RESULTS}/figures/generalization/{{llm}}/{{dataset}}.png",
            caption="../report/generalization.rst",
            category="6. Generalization",
            subcategory="{llm}",
            labels={"LLM": "{llm}", "dataset": "{dataset}", "figure": "calibration data vs ground truth"},
        ),
    params:
        family="generalization",
        cells=lambda wc: [(slm, wc.llm, wc.dataset, method) for slm in SLMS for method in CALIBRATION_METHODS],
    log:
        f"{LOGS}/figures/generalization/{{llm}}/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figure_ratio_fidelity:
    input:
        all_generalization(),
    output:
        pdf=f"{RESULTS}/figures/ratio_fidelity.pdf",
        png=report(
            f"{RESULTS}/figures/ratio_fidelity.png",
            caption="../report/ratio_fidelity.rst",
            category="6. Generalization",
        ),
    params:
        family="ratio_fidelity",
        cells=[(slm, llm, dataset, method) for slm, llm, method, dataset in generalization_cells()],
    log:
        f"{LOGS}/figures/ratio_fidelity.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule figures:
    """Every figure, from finished tables (the reviewer's target)."""
    input:
        all_figures(),
