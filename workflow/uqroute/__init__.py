"""uqroute: uncertainty-based routing from small to large language models.

The library knows nothing of Snakemake: workflow scripts unpack their inputs and
call the functions here.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESOURCES_DIR = REPO_ROOT / "resources"

__all__ = ["REPO_ROOT", "RESOURCES_DIR"]
