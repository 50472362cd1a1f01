from uqroute import jobs
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    jobs.relative_accuracy(uq=list(snakemake.input.uq), llm=list(snakemake.input.llm), uq_cells=params.uq_cells,
                           llm_cells=params.llm_cells, step=params.step, output=snakemake.output[0])
