from uqroute.jobs.data import prepare_dataset
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    prepare_dataset(snakemake.wildcards.dataset, snakemake.wildcards.split, snakemake.params.data_dir,
                    snakemake.output[0])
