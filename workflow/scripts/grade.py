from uqroute.jobs.generate import grade
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    grade(pass_name=snakemake.wildcards.pass_name, replies=snakemake.input.replies,
          questions=snakemake.input.questions, judge=snakemake.params.judge, output=snakemake.output[0],
          api_cache=snakemake.params.api_cache)
