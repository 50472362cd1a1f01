rule dataset:
    """One whole split in the common table format; subsets are taken where the passes read it."""
    output:
        f"{RESULTS}/data/{{dataset}}/{{split}}.parquet",
    params:
        data_dir=DATA_DIR,
    log:
        f"{LOGS}/dataset/{{dataset}}/{{split}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/prepare_dataset.py"
