"""The package's import graph, read from the source with ast (nothing is imported): no circle, each module
imports only from its own layer or lower ones, and every import inside a function says why it waits.

The graph counts every import of a uqroute module, at the top or in a function, relative or absolute; importing
``uqroute.a.b`` also runs ``uqroute.a``'s ``__init__``, so it counts as importing that package too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from uqroute import PACKAGE_DIR

ROOT = PACKAGE_DIR.name
DEFERRED_MARK = "# deferred:"

# Lowest first. A name stands for its module and, for a subpackage, every module below it; the root package
# (its __init__) stands for itself only. A module may import from its own layer and the ones before it.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["uqroute", "uqroute.paths", "uqroute.io", "uqroute.logs", "uqroute.machine"]),
    ("registries and stored files", ["uqroute.models", "uqroute.datasets", "uqroute.checkpoint", "uqroute.gguf"]),
    ("engines", ["uqroute.engines"]),
    ("grading", ["uqroute.grading"]),
    ("model passes and prompts", ["uqroute.passes", "uqroute.prompts"]),
    ("UQ methods", ["uqroute.uq"]),
    ("the study's plan", ["uqroute.plan"]),
    ("analysis", ["uqroute.analysis"]),
    ("figures and the figure families", ["uqroute.figures", "uqroute.paper_figures", "uqroute.figure_families"]),
    ("workflow jobs and their warm workers", ["uqroute.jobs", "uqroute.warm"]),
    ("the router", ["uqroute.serve"]),
    ("the command line", ["uqroute.cli"]),
]


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def syntax_tree(module: str) -> ast.Module:
    path = modules()[module]
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules that ``node`` (an import in ``module``) runs, parent packages included."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            package = module.split(".") if modules()[module].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from package import name` imports a submodule where one has that name.
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    ran = set()
    for name in names:
        parts = name.split(".")
        ran.update(".".join(parts[:end]) for end in range(2, len(parts) + 1) if ".".join(parts[:end]) in modules())
    return ran


def package_of(module: str) -> list[str]:
    """``module`` and the packages around it, which are imported already when its own code runs."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the package's modules it imports, anywhere in its code."""
    graph = {}
    for module in modules():
        targets = set()
        for node in ast.walk(syntax_tree(module)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= imported_modules(module, node)
        graph[module] = frozenset(targets - set(package_of(module)))
    return graph


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One import circle as its modules in order (the first repeated at the end), or None."""
    finished: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in finished:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            cycle = visit(target)
            if cycle:
                return cycle
        finished.add(path.pop())
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def covers(entry: str, module: str) -> bool:
    return module == entry or (entry != ROOT and module.startswith(entry + "."))


def layers_placing(module: str) -> list[int]:
    return [index for index, (_, entries) in enumerate(LAYERS) for entry in entries if covers(entry, module)]


def imports_in_functions(module: str) -> list[ast.Import | ast.ImportFrom]:
    """The imports of ``module`` that run when one of its functions is called, not when it is imported (those
    under ``if TYPE_CHECKING:`` never run, and count as the module's top)."""
    found = {}
    for node in ast.walk(syntax_tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.update((id(inner), inner) for inner in ast.walk(node)
                         if isinstance(inner, (ast.Import, ast.ImportFrom)))
    return sorted(found.values(), key=lambda node: node.lineno)


def imports_following_an_import(tree: ast.Module) -> dict[int, ast.stmt]:
    """id of each import statement -> the import statement right before it in the same block, if there is one."""
    previous = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for before, after in zip(block, block[1:]):
                    if all(isinstance(statement, (ast.Import, ast.ImportFrom)) for statement in (before, after)):
                        previous[id(after)] = before
    return previous


def says_why(line: str) -> bool:
    """A ``# deferred:`` comment with a reason after the colon."""
    comment = line[line.find(DEFERRED_MARK):] if DEFERRED_MARK in line else ""
    return len(comment.removeprefix(DEFERRED_MARK).strip()) >= 10


def test_every_module_is_read():
    assert len(modules()) > 50 and {"uqroute.paths", "uqroute.plan", "uqroute.cli"} <= set(modules())


def test_the_import_graph_has_no_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_every_module_has_one_layer():
    misplaced = {module: [LAYERS[index][0] for index in layers_placing(module)] for module in modules()
                 if len(layers_placing(module)) != 1}
    assert not misplaced, f"modules not in exactly one layer of LAYERS (module: its layers): {misplaced}"


def test_no_module_imports_from_a_higher_layer():
    # A module without its one layer is the test above's to report.
    layer = {module: placed[0] for module in modules() if len(placed := layers_placing(module)) == 1}
    upward = [f"{module} (layer {LAYERS[layer[module]][0]!r}) imports {target} (layer {LAYERS[layer[target]][0]!r})"
              for module, targets in import_graph().items() if module in layer
              for target in sorted(targets) if target in layer and layer[target] > layer[module]]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_each_layer_names_modules_that_exist():
    unknown = [entry for _, entries in LAYERS for entry in entries if entry not in modules()]
    assert not unknown, f"LAYERS names no such module: {unknown}"


def test_every_import_in_a_function_says_why_it_is_deferred():
    unexplained = []
    for module, path in modules().items():
        lines = path.read_text().splitlines()
        previous = imports_following_an_import(syntax_tree(module))
        for node in imports_in_functions(module):
            # A run of imports (blank lines may part its groups) shares the comment above its first one.
            first = node
            while id(first) in previous and not any(
                    line.strip() for line in lines[previous[id(first)].end_lineno:first.lineno - 1]):
                first = previous[id(first)]
            own_line, line_above = lines[node.lineno - 1], lines[first.lineno - 2] if first.lineno > 1 else ""
            if not (says_why(own_line) or (line_above.strip().startswith(DEFERRED_MARK) and says_why(line_above))):
                unexplained.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}: {own_line.strip()}")
    assert not unexplained, (f"imports in functions without a '{DEFERRED_MARK} <why>' comment on their line or the "
                             "line above (move them to the top unless waiting saves start-up time):\n"
                             + "\n".join(unexplained))
