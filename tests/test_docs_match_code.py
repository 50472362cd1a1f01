"""What the README files state, against the code: the job counts the paper grid's dry runs print, the functions
and objects the docs name by their dotted path, and the bench scripts bench/README.md describes."""

from __future__ import annotations

import importlib
import re

import yaml

from uqroute import REPO_ROOT, RESOURCES_DIR
from workflow_runs import count_rules, plan

README = (REPO_ROOT / "README.md").read_text()
BENCH = REPO_ROOT / "bench"
BENCH_README = (BENCH / "README.md").read_text()
PAPER = REPO_ROOT / "config" / "paper.yaml"
# Parquet metadata keys the docs name: dotted like a Python path, but no Python name.
METADATA_KEYS = frozenset({"uqroute.dtype"})


def stated_count(pattern: str) -> int:
    found = re.findall(pattern, README)
    assert len(found) == 1, f"README.md: {pattern!r} found {len(found)} times"
    return int(found[0].replace(",", ""))


def test_the_readme_states_the_jobs_the_paper_grid_plans(tmp_path):
    # The dry run's printed total counts the target rule `all` too, as this list does.
    stated = stated_count(r"`snakemake -n --profile profiles/slurm --configfile config/paper\.yaml` \(([\d,]+) jobs\)")
    assert stated == len(plan(tmp_path, configfiles=[PAPER]))


def test_the_readme_states_the_jobs_of_one_cell(tmp_path):
    stated = stated_count(r"\(for perplexity: dataset, greedy pass and its grading, uq: (\d+) jobs\)")
    config = yaml.safe_load(PAPER.read_text())
    target = f"results/uq/{config['slms'][0]}/{config['datasets'][0]}/perplexity.parquet"
    jobs = count_rules(plan(tmp_path, target, configfiles=[PAPER]))
    assert jobs == {"dataset": 1, "generate_replies": 1, "grade": 1, "uq": 1} and stated == sum(jobs.values())


def resolve(dotted: str) -> object:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_every_dotted_uqroute_name_in_the_docs_and_registries_exists():
    documents = [REPO_ROOT / "README.md", REPO_ROOT / "config" / "README.md", BENCH / "README.md",
                 *RESOURCES_DIR.glob("*.yaml")]
    missing = []
    for document in documents:
        for name in sorted(set(re.findall(r"\buqroute(?:\.[A-Za-z_]\w*)+", document.read_text())) - METADATA_KEYS):
            try:
                resolve(name)
            except (ImportError, AttributeError):
                missing.append(f"{document.relative_to(REPO_ROOT)}: {name}")
    assert not missing, missing


def test_bench_readme_describes_every_bench_script_and_names_only_files_that_exist():
    scripts = {path.name for path in BENCH.glob("*.py")}
    undescribed = {name for name in scripts if f"`{name}`" not in BENCH_README and f"bench/{name}" not in BENCH_README}
    assert not undescribed, f"bench/README.md does not describe {sorted(undescribed)}"
    repo_path = r"(?<![\w/.-])((?:bench|tests|workflow|config|docs|profiles|envs)/[\w./-]*\w)"
    named = set(re.findall(repo_path, BENCH_README))
    named |= {f"bench/{name}" for name in re.findall(r"`(\w+\.py)`", BENCH_README)}
    gone = sorted(path for path in named if not (REPO_ROOT / path).exists())
    assert not gone, f"bench/README.md names files that do not exist: {gone}"


def test_code_tests_and_configs_carry_no_issue_numbers():
    """Code says why in its own words: a comment or docstring that points at an issue number means nothing to a
    reader of the checkout (other projects' issues, written as owner/repo#N, are fine)."""
    pattern = re.compile(r"\bissues?\s+#?\d", re.IGNORECASE)
    folders = ("workflow", "tests", "config", "profiles", "bench")
    found = [f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
             for folder in folders for path in sorted((REPO_ROOT / folder).rglob("*"))
             if path.suffix in (".py", ".smk", ".yaml", ".sh", ".rst") and path.is_file()
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)
