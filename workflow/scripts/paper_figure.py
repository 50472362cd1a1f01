from uqroute.jobs.figures import paper_figure
from uqroute.logs import log_to

with log_to(snakemake.log[0]):
    inputs = snakemake.input
    named = {key: [inputs[key]] if isinstance(inputs[key], str) else list(inputs[key]) for key in inputs.keys()}
    paper_figure(number=snakemake.wildcards.number, inputs=named, output_png=snakemake.output.png)
