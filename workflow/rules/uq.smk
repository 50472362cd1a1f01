rule uq:
    """One UQ method's confidence for one (SLM, dataset): a cheap function of pass tables."""
    input:
        unpack(uq_inputs),
    output:
        pattern("uq"),
    params:
        job="uq.uq_score",
        probe=lambda wc: GRID.probe_settings(wc.method, wc.dataset),
        max_questions=GRID.subset_size("test"),
        subset_seed=config["subset"]["seed"],
    log:
        job_log("uq", pattern("uq")),
    benchmark:
        job_benchmark("uq", pattern("uq"))
    threads: config["resources"]["probe_threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule holdout_uq:
    """A probe learned on other datasets (the OOD probe, OOD P(IK)) on every dataset but the hold-out, each scored
    by a probe trained on neither: the hold-out calibration set then holds nothing learned from the dataset its
    thresholds are applied to."""
    input:
        unpack(holdout_uq_inputs),
    output:
        pattern("holdout_uq"),
    params:
        job="uq.holdout_uq",
        holdout=lambda wc: wc.dataset,
        probe=lambda wc: GRID.probe_settings(wc.method, wc.dataset),
        max_questions=GRID.subset_size("test"),
        subset_seed=config["subset"]["seed"],
    log:
        job_log("holdout_uq", pattern("holdout_uq")),
    benchmark:
        job_benchmark("holdout_uq", pattern("holdout_uq"))
    threads: config["resources"]["probe_threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


rule release_probe:
    """A probe learned on other datasets (the OOD probe, OOD P(IK)), learned on every dataset's train split and
    saved for the router (uqroute serve)."""
    input:
        unpack(lambda wc: probe_training_inputs(wc.slm, wc.method, DATASETS)),
    output:
        pattern("release_probe"),
    params:
        job="uq.release_probe",
        probe=lambda wc: GRID.probe_settings(wc.method),
        layer=config["hidden"]["layer"],
    log:
        job_log("release_probe", pattern("release_probe")),
    benchmark:
        job_benchmark("release_probe", pattern("release_probe"))
    threads: config["resources"]["probe_threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)
