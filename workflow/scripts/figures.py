from uqroute.jobs.figures import figure
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    inputs = snakemake.input
    # A named input is one path or a list of paths; the figure code always gets lists.
    named = {key: [inputs[key]] if isinstance(inputs[key], str) else list(inputs[key]) for key in inputs.keys()}
    figure(family=snakemake.params.family, inputs=named, output_png=snakemake.output.png)
