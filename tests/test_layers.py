"""The layer contracts (.importlinter) hold, a forbidden import really breaks them, and no modules import
each other in a cycle."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def _contract_name(contract_id: str) -> str:
    """The name of a contract of .importlinter, as lint-imports prints it."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return " ".join(config[f"importlinter:contract:{contract_id}"]["name"].split())


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the seispick sources (Python files only) that a test may break."""
    target = tmp_path / "seispick"
    shutil.copytree(
        ROOT / "seispick", target, ignore=shutil.ignore_patterns("*.onnx", "*.mseed", "__pycache__")
    )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        LINT + ["--config", str(where / ".importlinter")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_kept_on_the_tree(tmp_path: Path) -> None:
    result = _lint(_copy_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("seispick/picking/__init__.py", "seispick.service", "layers"),
        ("seispick/service/batcher.py", "seispick.training", "layers"),
        ("seispick/miniseed/__init__.py", "seispick.seedlink", "layers"),
        ("seispick/feed.py", "seispick.seedlink", "layers"),
        ("seispick/models/__init__.py", "seispick.picking", "layers"),
        ("seispick/service/ingest/__init__.py", "seispick.service.api", "service-layers"),
    ],
    ids=[
        "picking->service",
        "batcher->training",
        "miniseed->seedlink",
        "feed->seedlink",
        "models->picking",
        "ingest->api",
    ],  # fmt: skip
)
def test_upward_import_breaks_a_layered_contract(
    tmp_path: Path, importer: str, imported: str, contract: str
) -> None:
    where = _copy_package(tmp_path)
    module = where / importer
    module.write_text(module.read_text() + f"\nimport {imported}  # noqa: E402,F401\n")
    result = _lint(where)
    assert result.returncode != 0, result.stdout
    assert f"{_contract_name(contract)} BROKEN" in " ".join(result.stdout.split()), result.stdout


# -- import cycles ------------------------------------------------------------------------------------------


def _package_dir() -> Path:
    spec = importlib.util.find_spec("seispick")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _source(module: str, package_dir: Path) -> Path:
    base = package_dir.joinpath(*module.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _import_time_lines(path: Path) -> set[int]:
    """Lines of the import statements that run when the module is imported: everywhere but inside functions
    (class bodies and ``if``/``try`` at module level run at import; ``if TYPE_CHECKING`` grimp leaves out)."""
    lines: set[int] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return lines


def _import_time_graph() -> dict[str, dict[str, int]]:
    """``importer -> {imported: line}`` of the seispick modules, import-time imports only."""
    graph = grimp.build_graph("seispick", exclude_type_checking_imports=True, cache_dir=None)
    package_dir = _package_dir()
    edges: dict[str, dict[str, int]] = {module: {} for module in graph.modules}
    for importer in graph.modules:
        lines = _import_time_lines(_source(importer, package_dir))
        for imported in graph.find_modules_directly_imported_by(importer):
            details = graph.get_import_details(importer=importer, imported=imported)
            at = [d["line_number"] for d in details if d["line_number"] in lines]
            if at:
                edges[importer][imported] = min(at)
    return edges


def strongly_connected(graph: dict[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit on long import chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            following = next(successors, None)
            if following is not None:
                if following not in index:
                    index[following] = low[following] = len(index)
                    stack.append(following)
                    on_stack.add(following)
                    work.append((following, iter(sorted(graph.get(following, ())))))
                elif following in on_stack:
                    low[node] = min(low[node], index[following])
                continue
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
                components.append(sorted(component))
    return components


def _cycle_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """One cycle through the first module of a strongly connected component (breadth-first, shortest)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target in members and target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    return component


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return (
        " -> ".join(f"{a} (l.{graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))
        + f" -> {cycle[-1]}"
    )


def test_strongly_connected_finds_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d"], "f": []}
    components = sorted(strongly_connected(graph))
    assert components == [["a", "b", "c"], ["d", "e"], ["f"]]
    chain = {str(n): [str(n + 1)] for n in range(5000)}  # deeper than the recursion limit
    assert len(strongly_connected(chain)) == 5001


def test_no_import_cycles() -> None:
    """No two seispick modules import each other at import time, directly or through others."""
    graph = _import_time_graph()
    cycles = [_cycle_in(c, graph) for c in strongly_connected(graph) if len(c) > 1]
    described = "\n  ".join(_describe(cycle, graph) for cycle in cycles)
    assert not cycles, f"import cycles (module -> imported, at line):\n  {described}"


def test_no_two_packages_import_each_other() -> None:
    """No two top-level parts of seispick (``seispick.cli``, ``seispick.feed``...) import each other, at any
    point of a module (functions included)."""
    graph = grimp.build_graph("seispick", cache_dir=None)
    top = {module: ".".join(module.split(".")[:2]) for module in graph.modules}
    uses: dict[tuple[str, str], tuple[str, str]] = {}
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            pair = (top[importer], top[imported])
            if "seispick" not in pair and pair[0] != pair[1]:
                uses.setdefault(pair, (importer, imported))
    mutual = sorted(
        f"{a} <-> {b}: {' -> '.join(uses[(a, b)])}, {' -> '.join(uses[(b, a)])}"
        for a, b in uses
        if a < b and (b, a) in uses
    )
    assert not mutual, "packages that import each other:\n  " + "\n  ".join(mutual)
