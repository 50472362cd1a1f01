from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    inputs = snakemake.input
    named = {key: list(inputs[key]) for key in inputs.keys()}
    jobs.figure(family=snakemake.params.family, inputs=named or list(inputs), output_png=snakemake.output.png,
                params={key: snakemake.params[key] for key in snakemake.params.keys()})
