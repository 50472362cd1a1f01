localrules:
    alignment,
    routing_curve,
    routing_metrics,
    relative_accuracy,
    calibration_set,
    generalization,
    release_calibration,
    findings,
    truncation,
    grading,
    tables,


rule alignment:
    """ROC AUC, PRR, AURC, ECE and Brier of every (SLM, dataset, method) with their bootstrap intervals, and every
    pair of methods compared on the same questions."""
    input:
        uq=all_uq(),
    output:
        alignment=path("alignment"),
        comparisons=path("comparisons"),
        resamples=path("auroc_resamples"),
    params:
        job="analysis.alignment",
        ece_bins=config["analysis"]["ece_bins"],
        bootstrap=config["analysis"]["bootstrap"],
        power=config["analysis"]["power"],
    log:
        job_log("alignment", path("alignment")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule routing_curve:
    """Accuracy vs routing ratio for one (SLM, LLM, dataset, method), with random and oracle curves."""
    input:
        uq=lambda wc: uq_file(wc.slm, wc.dataset, wc.method),
        llm=lambda wc: llm_greedy(wc.llm, wc.dataset),
    output:
        pattern("routing"),
    params:
        job="analysis.routing_curve",
        step=config["analysis"]["routing_step"],
        invalid=config["analysis"]["invalid"],
        bootstrap=config["analysis"]["bootstrap"],
    log:
        job_log("routing_curve", pattern("routing")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule routing_metrics:
    """Area, APGR and CPT(20/50/80 %) of every routing curve."""
    input:
        curves=all_routing(),
    output:
        path("routing_metrics"),
    params:
        job="analysis.routing_metrics",
    log:
        job_log("routing_metrics", path("routing_metrics")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule relative_accuracy:
    """SLM / LLM accuracy on the queries left after excluding the k % least confident (paper Fig. 3)."""
    input:
        uq=all_uq(),
        llm=[llm_greedy(llm, dataset) for llm in LLMS for dataset in DATASETS],
    output:
        path("relative_accuracy"),
    params:
        job="analysis.relative_accuracy",
        step=config["analysis"]["exclusion_step"],
        invalid=config["analysis"]["invalid"],
        bootstrap=config["analysis"]["bootstrap"],
    log:
        job_log("relative_accuracy", path("relative_accuracy")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule calibration_set:
    """Paper Algorithm 1 without the target dataset: pooled confidences, 30 bins, 10 % of each."""
    input:
        uq=calibration_uq,
    output:
        pattern("calibration"),
    params:
        job="analysis.calibration_set",
        n_bins=config["calibration"]["n_bins"],
        fraction=config["calibration"]["fraction"],
        seeds=config["calibration"]["seeds"],
    log:
        job_log("calibration_set", pattern("calibration")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule generalization:
    """Thresholds from the hold-out calibration set applied to the unseen dataset, against the truth."""
    input:
        calibration=lambda wc: path("calibration", slm=wc.slm, method=wc.method, dataset=wc.dataset),
        uq=lambda wc: uq_file(wc.slm, wc.dataset, wc.method),
        llm=lambda wc: llm_greedy(wc.llm, wc.dataset),
    output:
        pattern("generalization"),
    params:
        job="analysis.generalization",
        step=config["calibration"]["target_ratio_step"],
        invalid=config["analysis"]["invalid"],
        bootstrap=config["analysis"]["bootstrap"],
    log:
        job_log("generalization", pattern("generalization")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule share_control:
    """The held-out dataset replayed in random orders through the static calibration threshold and through the
    label-free share controller: routed share against the target, and accuracy."""
    input:
        calibration=lambda wc: path("calibration", slm=wc.slm, method=wc.method, dataset=wc.dataset),
        uq=lambda wc: uq_file(wc.slm, wc.dataset, wc.method),
        llm=lambda wc: llm_greedy(wc.llm, wc.dataset),
    output:
        pattern("share_control"),
    params:
        job="analysis.share_control",
        step=config["calibration"]["target_ratio_step"],
        invalid=config["analysis"]["invalid"],
        controller=config["analysis"]["controller"],
        level=config["analysis"]["bootstrap"]["level"],
    log:
        job_log("share_control", pattern("share_control")),
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule release_calibration:
    """The calibration set built from every configured dataset, as a tidy table others can reuse."""
    input:
        uq=lambda wc: [uq_file(wc.slm, dataset, wc.method) for dataset in DATASETS],
    output:
        pattern("release"),
    params:
        job="analysis.calibration_set",
        n_bins=config["calibration"]["n_bins"],
        fraction=config["calibration"]["fraction"],
        seeds=config["calibration"]["seeds"],
    log:
        job_log("release_calibration", pattern("release")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule release_card:
    """Beside each release file, its router card: the thresholds it gives, and the routed share and accuracy
    such thresholds reached on held-out datasets, with their interval and spread."""
    input:
        unpack(release_card_inputs),
    output:
        pattern("release_card"),
    params:
        job="analysis.release_card",
        step=config["calibration"]["target_ratio_step"],
        level=config["analysis"]["bootstrap"]["level"],
    log:
        job_log("release_card", pattern("release_card")),
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule findings:
    """The paper's observations and insights as statements with intervals and verdicts, and the numbers behind
    them."""
    input:
        alignment=path("alignment"),
        resamples=path("auroc_resamples"),
        routing=path("routing_metrics"),
        relative=path("relative_accuracy"),
        generalization=all_generalization(),
        uq=all_uq(),
    output:
        table=path("findings"),
        html=report(
            path("findings_html"),
            caption="../report/findings.rst",
            category="1. Findings",
        ),
    params:
        job="analysis.findings",
        bootstrap=config["analysis"]["bootstrap"],
        tolerances=config["analysis"]["findings"],
    log:
        job_log("findings", path("findings")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule truncation:
    """How often each pass's replies used their whole token budget: answers and confidences cut off."""
    input:
        unpack(lambda wildcards: truncation_inputs()),
    output:
        path("truncation"),
    params:
        job="analysis.truncation",
        budgets={key: config["generation"][key] for key in BUDGET_SETTINGS},
        tokenizers=tokenizer_sources(),
        max_share=config["analysis"]["max_truncated_share"],
    log:
        job_log("truncation", path("truncation")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule grading:
    """How each graded pass's replies were read and graded: per reading rule, by the rule or the LLM judge."""
    input:
        gen=grading_inputs(),
    output:
        path("grading"),
    params:
        job="analysis.grading",
    log:
        job_log("grading", path("grading")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule tables:
    """Every table, no figures."""
    input:
        all_tables(),


if config.get("findings_doc"):

    rule findings_doc:
        """The study's findings as a Markdown page (config key findings_doc), from its own tables: which of the
        paper's observations hold, with intervals, and how much each cell could say."""
        input:
            findings=path("findings"),
            alignment=path("alignment"),
        output:
            config["findings_doc"],
        params:
            job="analysis.findings_doc",
            bootstrap=config["analysis"]["bootstrap"],
            power=config["analysis"]["power"],
            # What the run cost, read from its benchmark files and job logs (not inputs: no rule makes them).
            benchmarks=BENCHMARKS,
            logs=LOGS,
        log:
            job_log("findings_doc", config["findings_doc"]),
        localrule: True
        run:
            warm_job(input, output, params, wildcards, threads, resources, log, rule)
