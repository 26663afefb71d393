"""The architecture, checked.

The core never imports an algorithm, there are no import cycles, no core code names an
algorithm (docstrings may cite a paper as an example), and the developer guide's worked example
is the committed code.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fedplat", "strategies", "clients", "simulations", "attacks")
ALGORITHM_SIDE = ("strategies", "clients", "simulations", "attacks")
#: The architectures of the model zoo keep the names the literature gives them.
NAMES_ALLOWED_IN = ("fedplat/models/",)


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere (function-level imports included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _is_package_of(a: str, b: str) -> bool:
    """True when `a` is a package containing module `b` (its __init__ re-exports b)."""
    return b.startswith(a + ".")


def test_the_core_never_imports_an_algorithm() -> None:
    bad = sorted(f"{m} imports {t}" for m, targets in _graph().items() if m.startswith("fedplat")
                 for t in targets if t.split(".")[0] in ALGORITHM_SIDE)
    assert bad == []


def test_there_are_no_import_cycles() -> None:
    graph = {m: {t for t in ts if not _is_package_of(m, t) and not _is_package_of(t, m)}
             for m, ts in _graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


#: Strategy names that are also ordinary words of the core's vocabulary.
ORDINARY_WORDS = {"local"}


def _algorithm_names() -> list[str]:
    names = {p.stem.replace("_", "") for p in (REPO / "conf" / "strategy").glob("*.yaml")}
    return sorted(names - ORDINARY_WORDS)


def _code_tokens(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the names and non-docstring strings of a module."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(body[0].lineno)
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME or (tok.type == tokenize.STRING
                                         and tok.start[0] not in docstrings):
            out.append((tok.start[0], tok.string))
    return out


@pytest.mark.parametrize("path", sorted((REPO / "fedplat").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_core_code_names_an_algorithm(path: Path) -> None:
    rel = str(path.relative_to(REPO))
    if rel.startswith(NAMES_ALLOWED_IN):
        return
    names = _algorithm_names()
    hits = [f"{rel}:{line}: {text}" for line, text in _code_tokens(path)
            for name in names if name in text.lower().replace("-", "").replace("_", "")]
    assert hits == []


def test_the_guides_worked_example_is_the_committed_code() -> None:
    guide = (REPO / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"^`([\w/.]+)`:\n\n```\w+\n(.*?)```$", guide, flags=re.M | re.S)
    assert [name for name, _ in blocks] == ["strategies/fedprox.py", "clients/fedprox.py",
                                            "conf/strategy/fedprox.yaml"]
    for name, code in blocks:
        assert code == (REPO / name).read_text(), f"docs/architecture.md shows an old {name}"
