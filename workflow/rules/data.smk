rule dataset:
    """One whole split in the common table format; subsets are taken where the passes read it.

    Any registry dataset can be built by naming its file, also one the config's grid leaves out.
    """
    output:
        pattern("data"),
    wildcard_constraints:
        dataset="|".join(DATASET_NAMES),
    params:
        job="data.prepare_dataset",
        data_dir=DATA_DIR,
    log:
        job_log("dataset", pattern("data")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)
