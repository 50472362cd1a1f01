from uqroute.jobs.analysis import generalization
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    generalization(calibration=snakemake.input.calibration, uq=snakemake.input.uq, llm=snakemake.input.llm,
                   step=snakemake.params.step, invalid=snakemake.params.invalid, output=snakemake.output[0])
