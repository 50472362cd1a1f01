from uqroute.jobs.analysis import truncation
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    truncation(gen=list(snakemake.input.gen), budgets=snakemake.params.budgets,
               tokenizers=snakemake.params.tokenizers, max_share=snakemake.params.max_share,
               output=snakemake.output[0])
