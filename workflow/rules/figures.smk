# One rule per figure family; each reads finished tables only, so `snakemake figures` never calls a model.


localrules:
    figures,
    paper_figure,
    paper_figures,


# One rule per figure family (uqroute.figure_families), named figure_<family>: its declaration gives the
# tables it reads and its drawing; its caption is workflow/report/<family>.rst.
for family in FIGURE_FAMILIES.values():

    rule:
        name:
            family.kind
        input:
            unpack(figure_inputs(family)),
        output:
            pdf=family.output(RESULTS, "pdf"),
            png=report(
                family.output(RESULTS, "png"),
                caption=f"../report/{family.name}.rst",
                category=family.category,
                **family.report_options(),
            ),
        params:
            job="figures.figure",
            family=family.name,
        log:
            job_log(family.kind, family.output(RESULTS, "pdf")),
        localrule: True
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
        pdf=pattern("paper_figure").replace("{ext}", "pdf"),
        png=pattern("paper_figure").replace("{ext}", "png"),
    params:
        job="figures.paper_figure",
    log:
        job_log("paper_figure", pattern("paper_figure").replace("{ext}", "pdf")),
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
