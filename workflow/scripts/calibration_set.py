from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    jobs.calibration_set(inputs=list(snakemake.input), sources=params.sources, n_bins=params.n_bins,
                         fraction=params.fraction, seeds=params.seeds, output=snakemake.output[0])
