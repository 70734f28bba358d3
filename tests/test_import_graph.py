"""The project's import graph: no circle, and no project module imported inside a function (the
way a circle hides). Read from the source with ast, nothing is imported."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "taxonomy", "data_prep", "tiny_models", "rewards", "recipes", "evaluate", "benchmarks")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imported_names(node: ast.AST, importer: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        base = node.module
        if node.level:  # relative: from . import x
            base = ".".join(importer.split(".")[: -node.level] + [node.module])
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> project modules it imports; and the project imports made inside functions."""
    modules = project_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    in_functions = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        function_imports = {
            id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
        }
        for node in ast.walk(tree):
            targets = [t for t in imported_names(node, name) if t in modules and t != name]
            edges[name] |= set(targets)
            if targets and id(node) in function_imports:
                in_functions.append(f"{path.relative_to(REPO)}:{node.lineno} imports {targets[0]}")
    return edges, in_functions


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    edges, _ = graph()
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_no_project_module_is_imported_inside_a_function_of_the_recipes_or_core():
    _, in_functions = graph()
    hidden = [line for line in in_functions if line.startswith(("recipes/", "core/"))]
    assert not hidden, hidden


def test_evaluation_does_not_depend_on_the_training_layer():
    edges, _ = graph()
    assert not {target for name, targets in edges.items() if name.startswith("evaluate")
                for target in targets if target.startswith("recipes")}
