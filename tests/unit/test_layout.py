"""Package layout: sizes of files, classes and functions, and no import cycles (STYLE.md)."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).parents[2] / "parallel_orch"

MAX_FILE_LINES = 400
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60

Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Module:
    """One ``.py`` file of the package, parsed."""

    name: str
    #: Path relative to the package's parent, as a failure message shows it.
    location: str
    is_package: bool
    lines: int
    tree: ast.Module


@dataclass(frozen=True)
class Oversized:
    """A file, class or function longer than its limit."""

    location: str
    line: int
    name: str
    lines: int

    def __str__(self) -> str:
        return f"{self.location}:{self.line}  {self.name}  {self.lines} lines"


@dataclass(frozen=True)
class Import:
    """One import of a module of the package by another."""

    source: str
    target: str
    location: str
    line: int

    def __str__(self) -> str:
        return f"{self.location}:{self.line}  {self.source} imports {self.target}"


def load_modules(package_dir: Path) -> dict[str, Module]:
    """Parse every module under ``package_dir``, keyed by dotted name (``pkg.sub`` for
    ``pkg/sub/__init__.py``)."""
    modules: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent)
        is_package = path.name == "__init__.py"
        parts = relative.with_suffix("").parts
        name = ".".join(parts[:-1] if is_package else parts)
        source = path.read_text(encoding="utf-8")
        modules[name] = Module(
            name=name,
            location=relative.as_posix(),
            is_package=is_package,
            lines=len(source.splitlines()),
            tree=ast.parse(source, filename=str(path)),
        )
    return modules


def definitions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, Definition]]:
    """Every class and function under ``node`` at any depth, with its dotted qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = f"{prefix}{child.name}"
            yield qualname, child
            yield from definitions(child, f"{qualname}.")
        else:
            yield from definitions(child, prefix)


def oversized_definitions(
    modules: Mapping[str, Module], kinds: tuple[type[Definition], ...], limit: int
) -> list[Oversized]:
    """Definitions of the given kinds spanning more than ``limit`` lines, decorators excluded."""
    found = []
    for module in modules.values():
        for qualname, node in definitions(module.tree):
            if not isinstance(node, kinds):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                found.append(Oversized(module.location, node.lineno, qualname, lines))
    return found


def _from_base(module: Module, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` reads from, or None if it climbs too far."""
    if node.level == 0:
        return node.module
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    keep = len(package) - (node.level - 1)
    if keep <= 0:
        return None
    base = package[:keep]
    if node.module:
        base += node.module.split(".")
    return ".".join(base)


def _imported_modules(module: Module, node: ast.AST, known: Mapping[str, Module]) -> Iterator[str]:
    """Modules of the package that one import statement loads by name.

    ``from pkg.sub import x`` means ``pkg.sub.x`` when that is a module, else ``pkg.sub``.
    The parent packages Python runs on the way (``pkg/__init__``) are not counted: otherwise
    a package re-exporting its submodules would be in a cycle with every one of them.
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = _from_base(module, node)
        if base is None:
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in known:
                yield submodule
            elif base in known:
                yield base


def package_imports(modules: Mapping[str, Module]) -> list[Import]:
    """Every import between modules of the package, at any depth (functions,
    ``if TYPE_CHECKING:``), relative ones resolved, once per statement; a module importing
    itself is left out."""
    imports = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            for target in _imported_modules(module, node, modules):
                if target != module.name:
                    line = getattr(node, "lineno", 1)
                    imports.append(Import(module.name, target, module.location, line))
    return list(dict.fromkeys(imports))


def import_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> Iterator[str]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return iter(sorted(graph[node]))

    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, visit(root))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    work.append((child, visit(child)))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def describe_cycles(imports: list[Import]) -> str:
    """Each cycle's modules, then the imports that close it with file:line."""
    report = []
    for cycle in import_cycles(imports):
        members = set(cycle)
        report.append(f"cycle of {len(cycle)} modules: {', '.join(cycle)}")
        closing = [edge for edge in imports if edge.source in members and edge.target in members]
        report.extend(f"    {edge}" for edge in sorted(closing, key=str))
    return "\n".join(report)


def failure(what: str, limit: int, offenders: Iterable[object]) -> str:
    """The failure message: every offender on its own line, located."""
    listed = "\n".join(f"  {offender}" for offender in offenders)
    return f"{what} over {limit} lines; split them:\n{listed}"


# -- the package -------------------------------------------------------------


def test_no_module_is_over_the_file_limit() -> None:
    """No file in parallel_orch/ is over MAX_FILE_LINES lines: one module per idea."""
    modules = load_modules(PACKAGE_DIR)
    offenders = [
        Oversized(m.location, 1, m.name, m.lines)
        for m in modules.values()
        if m.lines > MAX_FILE_LINES
    ]
    if offenders:
        pytest.fail(failure("modules", MAX_FILE_LINES, offenders), pytrace=False)


def test_no_class_is_over_the_class_limit() -> None:
    """No class in parallel_orch/ spans more than MAX_CLASS_LINES lines."""
    modules = load_modules(PACKAGE_DIR)
    offenders = oversized_definitions(modules, (ast.ClassDef,), MAX_CLASS_LINES)
    if offenders:
        pytest.fail(failure("classes", MAX_CLASS_LINES, offenders), pytrace=False)


def test_no_function_is_over_the_function_limit() -> None:
    """No function or method in parallel_orch/ spans more than MAX_FUNCTION_LINES lines."""
    modules = load_modules(PACKAGE_DIR)
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    offenders = oversized_definitions(modules, kinds, MAX_FUNCTION_LINES)
    if offenders:
        pytest.fail(failure("functions", MAX_FUNCTION_LINES, offenders), pytrace=False)


def test_modules_of_the_package_import_each_other_without_cycles() -> None:
    """No two modules of parallel_orch import each other, however indirectly or lazily."""
    imports = package_imports(load_modules(PACKAGE_DIR))
    if import_cycles(imports):
        pytest.fail("import cycles:\n" + describe_cycles(imports), pytrace=False)


# -- the checker itself ------------------------------------------------------


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    """Write a throwaway package ``pkg`` under ``root`` and return its directory."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root / "pkg"


def test_cycle_through_type_checking_and_a_lazy_relative_import_is_found(tmp_path: Path) -> None:
    """A TYPE_CHECKING import one way and a function-level relative import back form a cycle."""
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.b import B

                class A: ...
            """,
            "pkg/b.py": """
                def make() -> object:
                    from . import a
                    return a.A()
            """,
        },
    )
    imports = package_imports(load_modules(package))
    assert import_cycles(imports) == [["pkg.a", "pkg.b"]]
    assert describe_cycles(imports).splitlines() == [
        "cycle of 2 modules: pkg.a, pkg.b",
        "    pkg/a.py:4  pkg.a imports pkg.b",
        "    pkg/b.py:2  pkg.b imports pkg.a",
    ]


def test_package_reexporting_its_submodules_is_not_a_cycle(tmp_path: Path) -> None:
    """An __init__ importing its submodules, which import each other one way, has no cycle."""
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import sub\nfrom pkg.sub.model import Model\n",
            "pkg/sub/__init__.py": "from .model import Model\n",
            "pkg/sub/model.py": "class Model: ...\n",
            "pkg/sub/json.py": "from pkg.sub import model\nimport pkg.sub.model\n",
            "pkg/cli.py": "from pkg.sub import json\nfrom ..outside import x\n",
        },
    )
    imports = package_imports(load_modules(package))
    assert {(edge.source, edge.target) for edge in imports} == {
        ("pkg", "pkg.sub"),
        ("pkg", "pkg.sub.model"),
        ("pkg.sub", "pkg.sub.model"),
        ("pkg.sub.json", "pkg.sub.model"),
        ("pkg.cli", "pkg.sub.json"),
    }
    assert import_cycles(imports) == []


def test_sizes_count_from_the_def_line_to_the_last_line(tmp_path: Path) -> None:
    """Class and method sizes are end_lineno - lineno + 1 and carry their qualified name."""
    package = write_package(
        tmp_path,
        {"pkg/__init__.py": "class Big:\n    def method(self) -> None:\n" + "        pass\n" * 3},
    )
    modules = load_modules(package)
    functions = oversized_definitions(modules, (ast.FunctionDef,), 3)
    classes = oversized_definitions(modules, (ast.ClassDef,), 5)
    assert [str(o) for o in functions] == ["pkg/__init__.py:2  Big.method  4 lines"]
    assert classes == []
