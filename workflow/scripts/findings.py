from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    jobs.findings(
        alignment=snakemake.input.alignment,
        routing=snakemake.input.routing,
        relative=snakemake.input.relative,
        generalization=list(snakemake.input.generalization),
        generalization_cells=params.generalization_cells,
        uq=list(snakemake.input.uq),
        uq_cells=params.uq_cells,
        output=snakemake.output.table,
        html=snakemake.output.html,
    )
