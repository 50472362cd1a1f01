#!/usr/bin/env bash
# Installs the uqroute library into the environment Snakemake has just created (Snakemake runs this script
# inside that environment, from the directory it was started in: the repository root).
# Why not `- -e ../` in the yaml: conda runs pip from the directory of the environment file it is given, and
# Snakemake gives it its own copy under .snakemake/conda/<hash>.yaml, so `../` would name .snakemake/.
# --no-deps: every dependency is pinned in the yaml; the library's own list would pull torch into CPU envs.
set -euo pipefail
if ! grep -qs '^name = "uqroute"' pyproject.toml; then
    echo "$0: run Snakemake from the uqroute repository root (no uqroute pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --quiet --no-deps --no-build-isolation --editable .
