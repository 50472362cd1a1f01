from uqroute.jobs.uq import release_probe
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    release_probe(
        slm=snakemake.wildcards.slm,
        method=snakemake.wildcards.method,
        train_hidden=list(inputs.train_hidden),
        train_greedy=list(inputs.train_greedy),
        probe=params.probe,
        layer=params.layer,
        output=snakemake.output[0],
        threads=snakemake.threads,
    )
