"""The layout's promises, checked: no import cycle among the product's modules, and every path
the docs name exists. (Modules are sized by their concept, not by a line count: the old caps of
400 lines a module and 50 a function split concepts for size; issue 30 removed them.)

The import graph counts every import statement of a module, function-level ones included: a
cycle hidden behind a function-level import is still a cycle (it only moves the failure from
start-up to the first call).
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "drains", "halacha", "operations")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            modules[_module_name(path)] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``name`` imports (``from a import b`` counts ``a.b`` when it is a
    module, else ``a``). A package's own submodules importing it are not counted: Python
    initialises the package before any of its submodules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_among_product_modules():
    modules = _product_modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_hidden_behind_a_function_level_import(tmp_path):
    # The check itself can fail: two modules importing each other, one of them inside a function.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert import_cycles(graph) == [["a", "b"]]
    source = "def f():\n    from drains import runs\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    assert _imports("drains.x", path, {"drains.runs", "drains.x"}) == {"drains.runs"}


def test_the_framework_and_the_operations_app_speak_no_drain_s_domain():
    # drains/ and operations/ serve any drain: a drain names its own product ("halachot"), so no
    # module, template or script of theirs names the halacha drain's (migrations are history).
    named = [
        str(path.relative_to(ROOT))
        for package in ("drains", "operations")
        for path in sorted((ROOT / package).rglob("*"))
        if path.is_file() and path.suffix in {".py", ".html", ".js", ".css", ".txt"}
        and "migrations" not in path.parts and "halach" in path.read_text().lower()
    ]
    assert named == []


_DOC_PATH = re.compile(
    r"`((?:config|drains|halacha|operations|tests|bench|deploy|docs|scripts)/[\w./-]*\w)`"
)
_DOC_NAME = re.compile(r"`([\w-]+\.md)`")  # a document named alone: at the top or in docs/


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in _DOC_PATH.finditer(doc.read_text()):
            if not (ROOT / match.group(1)).exists():
                missing.append(f"{doc.name}: {match.group(1)}")
        for match in _DOC_NAME.finditer(doc.read_text()):
            name = match.group(1)
            if not ((ROOT / name).exists() or (ROOT / "docs" / name).exists()):
                missing.append(f"{doc.name}: {name}")
    assert missing == []


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        raise AssertionError(f"a model change has no migration:\n{out.getvalue()}") from exc
