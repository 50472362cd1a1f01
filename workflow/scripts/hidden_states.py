from uqroute.jobs.generate import hidden_states
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    hidden_states(
        model=params.model,
        questions=snakemake.input.questions,
        greedy=snakemake.input.greedy,
        model_dir=snakemake.input.get("model_dir"),
        output=snakemake.output[0],
        engine_options=params.engine,
        threads=snakemake.threads,
        layer=params.layer,
        part_size=params.part_size,
        max_questions=params.max_questions,
        subset_seed=params.subset_seed,
        checkpoint_dir=params.checkpoint_dir,
    )
