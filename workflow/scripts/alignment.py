from uqroute.jobs.analysis import alignment
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    alignment(uq=list(snakemake.input.uq), ece_bins=snakemake.params.ece_bins, output=snakemake.output[0])
