rule prepare_model:
    """Convert a GGUF model once to an fp32 folder: loading it then takes seconds, not a minute."""
    output:
        directory(pattern("model_dir")),
    params:
        job="data.prepare_model",
    log:
        job_log("prepare_model", pattern("model_dir")),
    benchmark:
        job_benchmark("prepare_model", pattern("model_dir"))
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/hidden.yaml"
    script:
        "../scripts/job.py"


rule generate:
    """One ungraded model pass (sample, verbal2s or ptrue) over one dataset split."""
    input:
        unpack(generate_inputs),
    output:
        pattern("gen"),
    wildcard_constraints:
        pass_name="|".join(UNGRADED_PASSES),
    params:
        job="generate.generate",
        engine_options=lambda wc: GRID.engine_options(wc.model),
        settings=lambda wc: GRID.pass_settings(wc.dataset, wc.pass_name),
        max_questions=lambda wc: GRID.subset_size(wc.split),
        subset_seed=config["subset"]["seed"],
        checkpoint_dir=lambda wc: checkpoint_dir(wc, "gen"),
        api_cache=path("api_cache"),
    log:
        job_log("generate", pattern("gen")),
    benchmark:
        job_benchmark("generate", pattern("gen"))
    threads: config["resources"]["model_threads"]
    resources:
        mem_mb=lambda wc: GRID.model_mem_mb(wc.model),
        runtime=lambda wc: GRID.model_runtime(wc.model, wc.pass_name),
        gpu=lambda wc: GRID.gpus(wc.model),
        gpu_model=lambda wc: GRID.gpu_type(wc.model),
        openai_requests=lambda wc: GRID.api_requests(wc.model),
    conda:
        "../../envs/generate.yaml"
    script:
        "../scripts/job.py"


# The replies of a graded model pass (greedy or verbal1s); rule grade adds prediction and correct.
use rule generate as generate_replies with:
    output:
        pattern("replies"),
    wildcard_constraints:
        pass_name="|".join(GRADED_PASSES),


if CELL_PASSES:

    ruleorder: generate_cell > generate
    ruleorder: generate_cell > generate_replies

    rule generate_cell:
        """Every pass of an SLM's test split in one job on one engine (generation.one_job_per: cell), and the
        hidden states of the split where its engine is the one they are read with (CELL_HIDDEN)."""
        input:
            unpack(cell_inputs),
        output:
            **cell_outputs(),
        wildcard_constraints:
            model="|".join(SLMS),
            split="test",
        params:
            job="generate.generate_cell",
            engine_options=lambda wc: GRID.engine_options(wc.model),
            settings=cell_settings,
            max_questions=lambda wc: GRID.subset_size(wc.split),
            subset_seed=config["subset"]["seed"],
            checkpoint_dirs=cell_checkpoint_dirs,
            api_cache=path("api_cache"),
            **cell_hidden_settings(),
        log:
            job_log("generate_cell", cell_pattern()),
        benchmark:
            job_benchmark("generate_cell", cell_pattern())
        threads: config["resources"]["model_threads"]
        resources:
            mem_mb=lambda wc: GRID.model_mem_mb(wc.model),
            runtime=cell_runtime,
            gpu=lambda wc: GRID.gpus(wc.model),
            gpu_model=lambda wc: GRID.gpu_type(wc.model),
            openai_requests=lambda wc: GRID.api_requests(wc.model),
        conda:
            "../../envs/generate.yaml"
        script:
            "../scripts/job.py"


if CELL_HIDDEN["train"]:

    ruleorder: generate_train_cell > generate_replies

    # An SLM's train split: its greedy replies and the hidden states the probes learn from, in one job.
    use rule generate_cell as generate_train_cell with:
        output:
            **cell_outputs("train"),
        wildcard_constraints:
            model="|".join(SLMS),
            split="train",
        log:
            job_log("generate_train_cell", cell_pattern()),
        benchmark:
            job_benchmark("generate_train_cell", cell_pattern())


rule grade:
    """Prediction and correctness of each reply of a graded pass, by the configured judge (no model pass)."""
    input:
        replies=pattern("replies"),
        questions=lambda wc: path("data", dataset=wc.dataset, split=wc.split),
    output:
        pattern("gen"),
    wildcard_constraints:
        pass_name="|".join(GRADED_PASSES),
    params:
        job="generate.grade",
        judge=GRID.judge_settings(),
        # Only the budgets of this pass: a reply at its budget was cut off.
        budgets=lambda wc: GRID.budgets(wc.dataset, wc.pass_name),
        api_cache=path("api_cache"),
    log:
        job_log("grade", pattern("gen")),
    benchmark:
        job_benchmark("grade", pattern("gen"))
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
        openai_requests=GRID.judge_api_requests(),
    run:
        warm_job(input, output, params, wildcards, threads, resources, log, rule)


# One rule per hidden-state pass (uqroute.passes.HIDDEN_PASSES), always on transformers: hidden_states reads the
# answered conversation, hidden_states_question the question alone. The default pass's job needs no params of
# its own.
for hidden in HIDDEN_PASSES.values():

    rule:
        name:
            hidden_rule(hidden.name)
        input:
            unpack(hidden_inputs(hidden)),
        output:
            pattern(hidden.name),
        params:
            job="generate.hidden_states",
            engine_options=lambda wc: GRID.engine_options(wc.model, kind="hf"),
            layer=config["hidden"]["layer"],
            part_size=config["hidden"]["part_size"],
            max_questions=lambda wc: GRID.subset_size(wc.split),
            subset_seed=config["subset"]["seed"],
            checkpoint_dir=lambda wc, stage=hidden.name: checkpoint_dir(wc, stage),
            **({} if hidden.name == DEFAULT_HIDDEN else {"hidden_pass": hidden.name}),
        log:
            job_log(hidden_rule(hidden.name), pattern(hidden.name)),
        benchmark:
            job_benchmark(hidden_rule(hidden.name), pattern(hidden.name))
        threads: config["resources"]["model_threads"]
        resources:
            mem_mb=lambda wc: GRID.model_mem_mb(wc.model, kind="hf"),
            runtime=lambda wc: GRID.model_runtime(wc.model),
            gpu=lambda wc: GRID.gpus(wc.model, kind="hf"),
            gpu_model=lambda wc: GRID.gpu_type(wc.model, kind="hf"),
        conda:
            "../../envs/hidden.yaml"
        script:
            "../scripts/job.py"

    # Where a cell job makes this pass too, the cell's job runs it (its outputs would otherwise be ambiguous).
    for cell_rule, split in (("generate_cell", "test"), ("generate_train_cell", "train")):
        if hidden.name in CELL_HIDDEN[split]:
            workflow.ruleorder(cell_rule, hidden_rule(hidden.name))
