rule prepare_model:
    """Convert a GGUF model once to an fp32 folder: loading it then takes seconds, not a minute."""
    output:
        directory(f"{RESULTS}/models/{{model}}"),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_model/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/hidden.yaml"
    script:
        "../scripts/prepare_model.py"


rule generate:
    """One model pass (greedy, sample, verbal1s, verbal2s or ptrue) over one dataset split."""
    input:
        unpack(generate_inputs),
    output:
        f"{RESULTS}/gen/{{model}}/{{dataset}}/{{split}}/{{pass_name}}.parquet",
    params:
        model=lambda wc: wc.model,
        engine=lambda wc: engine_options(wc.model),
        settings=generation_settings(),
        judge=judge_settings(),
        max_questions=lambda wc: subset_size(wc.split),
        subset_seed=config["subset"]["seed"],
        checkpoint_dir=lambda wc: checkpoint_dir(wc, "gen"),
        api_cache=f"{RESULTS}/cache/api",
    log:
        f"{LOGS}/generate/{{model}}/{{dataset}}/{{split}}/{{pass_name}}.log",
    benchmark:
        f"{BENCHMARKS}/generate/{{model}}/{{dataset}}/{{split}}/{{pass_name}}.tsv"
    threads: config["resources"]["model_threads"]
    resources:
        mem_mb=lambda wc: model_mem_mb(wc.model),
        runtime=lambda wc: model_runtime(wc.model, wc.pass_name),
        gpu=lambda wc: gpus(wc.model),
        openai_requests=lambda wc: api_requests(wc.model, wc.pass_name),
    conda:
        "../../envs/generate.yaml"
    script:
        "../scripts/generate.py"


rule hidden_states:
    """Layer -8 hidden state at the last token of prompt + greedy answer (always transformers)."""
    input:
        unpack(hidden_inputs),
    output:
        f"{RESULTS}/hidden/{{model}}/{{dataset}}/{{split}}.parquet",
    params:
        model=lambda wc: wc.model,
        engine=lambda wc: engine_options(wc.model, kind="hf"),
        layer=config["hidden"]["layer"],
        batch_size=config["hidden"]["batch_size"],
        max_questions=lambda wc: subset_size(wc.split),
        subset_seed=config["subset"]["seed"],
        checkpoint_dir=lambda wc: checkpoint_dir(wc, "hidden"),
    log:
        f"{LOGS}/hidden_states/{{model}}/{{dataset}}/{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/hidden_states/{{model}}/{{dataset}}/{{split}}.tsv"
    threads: config["resources"]["model_threads"]
    resources:
        mem_mb=lambda wc: model_mem_mb(wc.model, kind="hf"),
        runtime=lambda wc: model_runtime(wc.model),
        gpu=lambda wc: gpus(wc.model, kind="hf"),
    conda:
        "../../envs/hidden.yaml"
    script:
        "../scripts/hidden_states.py"
