"""The workflow's jobs, one module per stage, each job one function: read the inputs, call the library,
write the output atomically.

Workflow scripts only unpack Snakemake's objects and call these, so every job also runs (and is tested)
from plain Python. A job that reads many cells takes their paths and reads each cell's coordinates
back from its path (:func:`uqroute.paths.cell_of`), never from a parallel list.
"""
