"""No two modules of the project import each other, directly or around a circle.

Every module under pyproject's `package-dir` (robotrl, robotrl.sim, robotrl.tasks,
robotrl.drivers) is parsed with `ast`; every `import`/`from … import` counts, at module level
or inside a function, relative imports resolved. An edge goes to the most specific project
module named (`from robotrl.rl import sac` -> `robotrl.rl.sac`; `from robotrl.rl.sac import
Agent` -> `robotrl.rl.sac`). A circle found is named module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def project_modules() -> dict[str, Path]:
    """Module name -> source file, for every package pyproject maps into the namespace."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules: dict[str, Path] = {}
    for package, folder in setup["package-dir"].items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not all(p.isidentifier() for p in parts):
                continue
            name = ".".join((package, *parts))
            # A folder mapped to a package of its own (robotrl.sim = sim/) belongs to it.
            owner = max((p for p in setup["package-dir"] if name.startswith(p)), key=len)
            if owner == package:
                modules[name] = path
    return modules


def imported_names(module: str, path: Path) -> list[str]:
    """Every name `module` imports, absolute, anywhere in its file: `import a.b` gives `a.b`,
    `from a import b` gives `a.b` (a submodule or a name defined in `a`)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            names += [f"{origin}.{alias.name}" for alias in node.names]
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports: for each imported name, the most specific
    project module it names or lies in."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle_in(group, graph) for group in groups]


def _circle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return sorted(group)


def test_the_walk_sees_every_package():
    modules = project_modules()
    for name in (
        "robotrl.policies.checkpoint",
        "robotrl.rl.residual",
        "robotrl.sim.mujoco_env",
        "robotrl.tasks.push_t",
        "robotrl.drivers.ros_env",
    ):
        assert name in modules
    graph = import_graph()
    assert "robotrl.errors" in graph["robotrl.rl.residual"]


def test_function_level_and_relative_imports_count(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from .sibling import x\n    import robotrl.rl.sac\n")
    names = imported_names("robotrl.rl.m", path)
    assert "robotrl.rl.sibling.x" in names and "robotrl.rl.sac" in names


def test_a_circle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)
