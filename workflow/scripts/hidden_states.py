from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    jobs.hidden_states(
        model=params.model,
        questions=snakemake.input.questions,
        greedy=snakemake.input.greedy,
        model_dir=snakemake.input.get("model_dir"),
        output=snakemake.output[0],
        engine_options=params.engine,
        threads=snakemake.threads,
        layer=params.layer,
        batch_size=params.batch_size,
        max_questions=params.max_questions,
        subset_seed=params.subset_seed,
        checkpoint_dir=params.checkpoint_dir,
    )
