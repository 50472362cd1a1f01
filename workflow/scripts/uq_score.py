from uqroute.jobs.uq import uq_score
from uqroute.logs import log_to
from uqroute.uq import pass_requirements

with log_to(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    uq_score(
        method=params.method,
        dataset=params.dataset,
        questions=inputs.questions,
        passes={name: inputs[name] for name in pass_requirements(params.method)},
        hidden=inputs.get("hidden"),
        train_hidden=list(inputs.get("train_hidden", [])),
        train_greedy=list(inputs.get("train_greedy", [])),
        probe=params.probe,
        max_questions=params.max_questions,
        subset_seed=params.subset_seed,
        output=snakemake.output[0],
        threads=snakemake.threads,
    )
