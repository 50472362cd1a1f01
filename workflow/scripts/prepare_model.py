from uqroute.jobs.data import prepare_model
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    prepare_model(snakemake.wildcards.model, snakemake.output[0])
