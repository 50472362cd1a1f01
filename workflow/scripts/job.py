# The one script of the workflow's model rules: it runs the job function the rule names in params.job
# (uqroute.jobs.run_job). vLLM starts its engine core by spawning, which re-runs this file as "__mp_main__" in
# the child, where there is no `snakemake` object: only the job's own process runs the job.
from uqroute.jobs import run_job

if __name__ == "__main__":
    run_job(snakemake)  # noqa: F821 (the object Snakemake's script directive defines)
