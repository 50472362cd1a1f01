from uqroute.jobs.generate import generate_cell
from uqroute.logs import log_to

# As in generate.py: vLLM's spawned engine core re-runs this file, where there is no `snakemake` object.
if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        params = snakemake.params
        generate_cell(
            model=params.model,
            outputs=dict(snakemake.output.items()),
            questions=snakemake.input.questions,
            model_dir=snakemake.input.get("model_dir"),
            engine_options=params.engine,
            threads=snakemake.threads,
            settings=params.settings,
            max_questions=params.max_questions,
            subset_seed=params.subset_seed,
            checkpoint_dirs=params.checkpoint_dirs,
            api_cache=params.api_cache,
        )
