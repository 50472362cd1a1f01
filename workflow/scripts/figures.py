from uqroute import jobs
from uqroute.logs import log_to


def as_list(value):
    """A named input is one path or a list of paths; the figure code always gets a list."""
    return [value] if isinstance(value, str) else list(value)


with log_to(snakemake.log[0]):
    inputs = snakemake.input
    named = {key: as_list(inputs[key]) for key in inputs.keys()}
    jobs.figure(family=snakemake.params.family, inputs=named or list(inputs), output_png=snakemake.output.png,
                params={key: snakemake.params[key] for key in snakemake.params.keys()})
