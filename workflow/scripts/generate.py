from uqroute.jobs.generate import generate
from uqroute.logs import log_to

# vLLM starts its engine core by spawning, which re-runs this file as "__mp_main__" in the child,
# where there is no `snakemake` object: only the job's own process runs the pass.
if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        params = snakemake.params
        generate(
            model=params.model,
            pass_name=snakemake.wildcards.pass_name,
            questions=snakemake.input.questions,
            greedy=snakemake.input.get("greedy"),
            model_dir=snakemake.input.get("model_dir"),
            output=snakemake.output[0],
            engine_options=params.engine,
            threads=snakemake.threads,
            settings=params.settings,
            max_questions=params.max_questions,
            subset_seed=params.subset_seed,
            checkpoint_dir=params.checkpoint_dir,
            api_cache=params.api_cache,
        )
