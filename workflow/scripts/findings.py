from uqroute.jobs.analysis import findings
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    inputs = snakemake.input
    findings(alignment=inputs.alignment, routing=inputs.routing, relative=inputs.relative,
             generalization=list(inputs.generalization), uq=list(inputs.uq), output=snakemake.output.table,
             html=snakemake.output.html)
