"""The layer stack, read from the code: imports go one way, families stay self-contained, no cycles, no
private names borrowed across modules, small modules and functions.

    core -> families, data, reports
         -> choices (the registries of named choices), viz -> evaluation -> recipes -> grounding, report_grounding
         -> engine -> registry, api, verify, testing -> bench -> cli

Every import counts: at the top of a module, inside a function, or ``importlib.import_module("groundkit...")``
with a literal name (only imports under ``if TYPE_CHECKING:`` create no runtime dependency). A registry's
declared table of built-ins names where each one lives as text (``"module:attr"``, like an entry point); it
imports nothing until a name is asked for.
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
    "groundkit.choices": 2, "groundkit.viz": 2,
    "groundkit.evaluation": 3,  # metrics and protocols: below the engine, which never scores a map
    "groundkit.recipes": 4,
    "groundkit.grounding": 5, "groundkit.report_grounding": 5,  # results (a grounding, a grounded report)
    "groundkit.engine": 6,  # captures and post-processes; never evaluates, never parses a report
    "groundkit.registry": 7, "groundkit.api": 7, "groundkit.verify": 7, "groundkit.testing": 7, "groundkit": 7,
    "groundkit.bench": 8,
    "groundkit.cli": 9, "groundkit.__main__": 9,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


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
    return imports_in(path.read_text(), str(path))


def _dynamic(node: ast.AST) -> str | None:
    """The module of ``importlib.import_module("groundkit...")`` / ``__import__("groundkit...")`` with a literal name."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    arg = node.args[0].value
    return arg if name in ("import_module", "__import__") and isinstance(arg, str) and arg.startswith("groundkit") else None


def imports_in(source: str, where: str = "<source>") -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import in the source, top level or inside functions."""
    out = []
    tree = ast.parse(source)
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # type-only imports create no runtime dependency
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("groundkit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("groundkit"):
            assert node.level == 0, f"{where}:{node.lineno}: relative import (use absolute groundkit.* imports)"
            names = [a.name for a in node.names]
            for n in names:  # "from groundkit.x import y" may import the module groundkit.x.y
                sub = f"{node.module}.{n}"
                out.append((sub if sub in MODULES else node.module, [] if sub in MODULES else [n], node.lineno))
        elif _dynamic(node):
            out.append((_dynamic(node), [], node.lineno))
    return out


def upward_imports(mod: str, source: str, where: str = "<source>") -> list[str]:
    """Every import in ``source`` (the text of module ``mod``) of a module in a higher layer."""
    bad = []
    for imported, _, line in imports_in(source, where):
        t = _target(imported)
        if t is None or t == mod or mod == "groundkit":  # the package facade imports lazily from every layer
            continue
        if _layer(t) > _layer(mod):
            bad.append(f"{where}:{line}: {mod} (layer {_layer(mod)}) imports {t} (layer {_layer(t)})")
    return bad


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        for imported, _, _ in _imports(path):
            t = _target(imported)
            if t and t != mod:
                g[mod].add(t)
    return g


def test_imports_go_one_way_down_the_stack():
    bad = [line for mod, path in MODULES.items()
           for line in upward_imports(mod, path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert not bad, "imports that go up the stack:\n" + "\n".join(bad)


@pytest.mark.parametrize("source", [
    "from groundkit.engine.heatmap import threshold\n",  # at the top of the module
    "def f():\n    from groundkit.engine import heatmap\n    return heatmap\n",  # inside a function
    "class A:\n    def f(self):\n        import groundkit.api\n",  # inside a method
    "import importlib\n\ndef f():\n    return importlib.import_module('groundkit.bench.runner')\n",  # by name
])
def test_an_upward_import_anywhere_is_caught(source):
    """The check above is not vacuous: evaluation importing the engine, the API or the bench is reported
    wherever the import is written."""
    assert upward_imports("groundkit.evaluation.protocols", source)


def test_type_only_and_downward_imports_pass():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from groundkit.engine.pipeline import GroundingModel\n"
              "from groundkit.core.geometry import Geometry\n")
    assert upward_imports("groundkit.evaluation.protocols", source) == []


def test_the_engine_and_evaluation_stay_apart():
    """The two back-edges issue 26 named: evaluation imported the engine (the centre-prior baseline, now scored
    in groundkit.bench.baselines) and the engine imported report grounding (ground_report, now groundkit.api)."""
    assert _layer("groundkit.evaluation.baselines") < _layer("groundkit.engine.heatmap") < _layer("groundkit.bench.baselines")
    assert _layer("groundkit.report_grounding") < _layer("groundkit.engine.pipeline") < _layer("groundkit.api")
    for mod in ("groundkit.evaluation.baselines", "groundkit.evaluation.protocols", "groundkit.engine.pipeline"):
        assert not upward_imports(mod, MODULES[mod].read_text())


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
