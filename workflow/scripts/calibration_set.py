from uqroute.jobs.analysis import calibration_set
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    calibration_set(uq=list(snakemake.input.uq), n_bins=params.n_bins, fraction=params.fraction, seeds=params.seeds,
                    output=snakemake.output[0])
