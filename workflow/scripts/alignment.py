from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    jobs.alignment(inputs=list(snakemake.input), cells=snakemake.params.cells,
                   ece_bins=snakemake.params.ece_bins, output=snakemake.output[0])
