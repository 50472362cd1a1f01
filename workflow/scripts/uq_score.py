from uqroute import jobs
from uqroute.logs import log_to
from uqroute.uq.requirements import METHOD_PASSES

with log_to(snakemake.log[0]):
    params = snakemake.params
    jobs.uq_score(
        method=params.method,
        dataset=params.dataset,
        questions=snakemake.input.questions,
        passes={name: snakemake.input[name] for name in METHOD_PASSES[params.method]},
        hidden=snakemake.input.get("hidden"),
        train=list(snakemake.input.get("train", [])),
        ood_train=list(snakemake.input.get("ood_train", [])),
        probe=params.probe,
        max_questions=params.max_questions,
        subset_seed=params.subset_seed,
        output=snakemake.output[0],
        threads=snakemake.threads,
    )
