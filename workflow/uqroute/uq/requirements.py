"""Which passes each UQ method reads: the workflow lists a method's inputs from this table.

Kept free of heavy imports so that building the DAG of the paper's grid stays fast.
"""

METHOD_PASSES: dict[str, tuple[str, ...]] = {
    "avg_token_prob": ("greedy",),
    "p_true": ("greedy", "ptrue"),
    "perplexity": ("greedy",),
    "jaccard_degree": ("greedy", "sample"),
    "verbal_1s": ("verbal1s",),
    "verbal_2s": ("greedy", "verbal2s"),
    "trained_probe": ("greedy",),
    "ood_probe": ("greedy",),
}

# Methods that read the layer -8 hidden states (of the test split, and of train splits to learn from).
PROBE_METHODS = frozenset({"trained_probe", "ood_probe"})
