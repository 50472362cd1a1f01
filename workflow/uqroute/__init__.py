"""uqroute: uncertainty-based routing from small to large language models.

The library knows nothing of Snakemake: each rule names a job function of :mod:`uqroute.jobs`, and one entry
(:func:`uqroute.jobs.run_job`) hands it the rule's files, params and wildcards as plain arguments.
"""

from importlib.resources import files
from pathlib import Path

# The registries, prompts and JSON schemas are package data, found wherever the package is installed:
# the checkout (editable install) or site-packages (a wheel).
# pip installs a package as a folder, so files() is a real path; the library wants one, since it stats
# the registries to cache them and names them in its errors. In the checkout the registries and prompts
# are the top-level resources/, which the package links to; resolved, errors name that folder.
PACKAGE_DIR = Path(files(__name__))
RESOURCES_DIR = (PACKAGE_DIR / "resources").resolve()
SCHEMAS_DIR = PACKAGE_DIR / "schemas"

# The checkout around workflow/uqroute, which exists only for an editable install: the tests and bench
# scripts find the Snakefile and config/ through it. Nothing the library reads depends on it.
REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["PACKAGE_DIR", "REPO_ROOT", "RESOURCES_DIR", "SCHEMAS_DIR"]
