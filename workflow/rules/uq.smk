rule uq:
    """One UQ method's confidence for one (SLM, dataset): a cheap function of pass tables."""
    input:
        unpack(uq_inputs),
    output:
        pattern("uq"),
    params:
        method=lambda wc: wc.method,
        dataset=lambda wc: wc.dataset,
        probe=probe_settings,
        max_questions=subset_size("test"),
        subset_seed=config["subset"]["seed"],
    log:
        f"{LOGS}/uq/{{slm}}/{{dataset}}/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/uq/{{slm}}/{{dataset}}/{{method}}.tsv"
    threads: config["resources"]["probe_threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/hidden.yaml"
    script:
        "../scripts/uq_score.py"
