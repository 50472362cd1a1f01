from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    jobs.prepare_model(snakemake.wildcards.model, snakemake.output[0])
