from uqroute.jobs.uq import holdout_uq
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    holdout_uq(
        method=params.method,
        holdout=params.holdout,
        questions=list(inputs.questions),
        greedy=list(inputs.greedy),
        hidden=list(inputs.hidden),
        train_hidden=list(inputs.train_hidden),
        train_greedy=list(inputs.train_greedy),
        probe=params.probe,
        max_questions=params.max_questions,
        subset_seed=params.subset_seed,
        output=snakemake.output[0],
        threads=snakemake.threads,
    )
