from uqroute.jobs.analysis import routing_curve
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    routing_curve(uq=snakemake.input.uq, llm=snakemake.input.llm, step=snakemake.params.step, invalid=snakemake.params.invalid,
                  output=snakemake.output[0])
