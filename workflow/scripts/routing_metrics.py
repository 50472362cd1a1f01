from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    jobs.routing_metrics(inputs=list(snakemake.input), cells=snakemake.params.cells, output=snakemake.output[0])
