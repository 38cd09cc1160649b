"""
The app's import graph: no circle among users' modules, nothing imported from the project.

Every import counts, those inside functions too: a lazy import still ties
two modules together.
"""

import ast
from pathlib import Path

import users

APP = Path(users.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_by(path: Path) -> set[str]:
    """Return every module ``path`` imports, relative imports resolved, names as modules."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from . import x`` may name a module: count both the package and x.
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def app_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in APP.rglob("*.py")}
    return {
        name: {imported for imported in imported_by(path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return a circle of imports as a path that starts and ends at one module, or None."""
    done, path = set(), []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            circle = visit(imported)
            if circle:
                return circle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module)
        if circle:
            return circle
    return None


def test_no_module_of_the_app_imports_itself_back_through_others():
    # A package imports nothing of its own (empty __init__), so a circle here is a real one.
    assert find_circle(app_graph()) is None


def test_the_circle_finder_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def reaches_up(imported: str) -> bool:
    """Whether ``imported`` is a module of the project."""
    # The bare package comes with ``from usersite import x``: x counts.
    return imported.startswith("usersite.")


def test_the_app_imports_nothing_of_the_project():
    reaching_up = {
        (module_name(path), imported)
        for path in APP.rglob("*.py")
        for imported in imported_by(path)
        if reaches_up(imported)
    }
    assert reaching_up == set()


def test_an_import_of_the_project_is_seen():
    assert reaches_up("usersite.settings")
    assert reaches_up("usersite.daphne_server.Server")
    assert not reaches_up("usersite")
    assert not reaches_up("users.models")


def test_the_graph_sees_relative_and_lazy_imports():
    graph = app_graph()
    assert "users.live.publisher" in graph["users.apps"]  # inside ready()
    assert "users.metrics" in graph["users.live.fanout"]  # from .. import metrics
