from uqroute.jobs.analysis import routing_metrics
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    routing_metrics(curves=list(snakemake.input.curves), output=snakemake.output[0])
