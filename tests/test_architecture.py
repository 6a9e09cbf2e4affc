"""The layer stack, read from the code: imports go one way, families stay self-contained, no cycles, no
private names borrowed across modules, small modules and functions.

    core -> families, data, reports -> engine, recipes, evaluation, grounding, viz -> registry, api, verify, testing
         -> bench -> cli
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "groundkit"
LAYERS = {
    "groundkit.core": 0,
    "groundkit.families": 1, "groundkit.data": 1, "groundkit.reports": 1,
    "groundkit.engine": 2, "groundkit.recipes": 2, "groundkit.evaluation": 2, "groundkit.grounding": 2, "groundkit.viz": 2,
    "groundkit.report_grounding": 2,
    "groundkit.registry": 3, "groundkit.api": 3, "groundkit.verify": 3, "groundkit.testing": 3, "groundkit": 3,
    "groundkit.bench": 4,
    "groundkit.cli": 5, "groundkit.__main__": 5,
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _target(name: str) -> str | None:
    """The groundkit module an imported dotted name refers to (a module, or a name inside one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import in the file, top level or inside functions."""
    out = []
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # type-only imports create no runtime dependency
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("groundkit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("groundkit"):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (use absolute groundkit.* imports)"
            names = [a.name for a in node.names]
            for n in names:  # "from groundkit.x import y" may import the module groundkit.x.y
                sub = f"{node.module}.{n}"
                out.append((sub if sub in MODULES else node.module, [] if sub in MODULES else [n], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        for imported, _, _ in _imports(path):
            t = _target(imported)
            if t and t != mod:
                g[mod].add(t)
    return g


def test_imports_go_one_way_down_the_stack():
    bad = []
    for mod, path in MODULES.items():
        for imported, _, line in _imports(path):
            t = _target(imported)
            if t is None or t == mod or mod == "groundkit":  # the package facade imports lazily from every layer
                continue
            if _layer(t) > _layer(mod):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mod} (layer {_layer(mod)}) imports {t} (layer {_layer(t)})")
    assert not bad, "imports that go up the stack:\n" + "\n".join(bad)


def test_families_are_self_contained():
    """A family imports core and the shared text encoders only; families never import each other."""
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith("groundkit.families."):
            continue
        family = mod.split(".")[2]
        for imported, _, line in _imports(path):
            t = _target(imported) or imported
            ok = t.startswith(("groundkit.core", "groundkit.families.text", f"groundkit.families.{family}")) or t == "groundkit.families.common"
            if not ok:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mod} imports {t}")
    assert not bad, "\n".join(bad)


def test_core_imports_nothing_but_core():
    bad = [f"{m} imports {t}" for m, ts in _graph().items() if m.startswith("groundkit.core") for t in ts
           if not t.startswith("groundkit.core")]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == "groundkit" or node == "groundkit":
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for mod in sorted(MODULES):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_names_imported_across_modules():
    bad = []
    for mod, path in MODULES.items():
        for imported, names, line in _imports(path):
            t = _target(imported)
            bad += [f"{path.relative_to(PACKAGE.parent)}:{line}: from {t} import {n}" for n in names
                    if n.startswith("_") and not n.startswith("__") and t != mod]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_small_modules_and_functions(mod):
    path = MODULES[mod]
    text = path.read_text()
    n = len(text.splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE.parent)}: {n} lines (> {MAX_MODULE_LINES})"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(PACKAGE.parent)}: functions over {MAX_FUNCTION_LINES} lines: {long}"
