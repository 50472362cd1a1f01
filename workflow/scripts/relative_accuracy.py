from uqroute.jobs.analysis import relative_accuracy
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    relative_accuracy(uq=list(snakemake.input.uq), llm=list(snakemake.input.llm), step=snakemake.params.step,
                      invalid=snakemake.params.invalid,
                      output=snakemake.output[0])
