"""The shape of src/jiyi, read from its source with `ast` (nothing is imported): no import cycle
between files, no private name imported across modules, no comparison with a task name outside
the task packages and the registry, no source file over 700 lines.

The import graph has one node per file and one edge per import of another jiyi file, wherever the
import sits: module level, inside a function (a lazy import is still an edge), `from jiyi.a import
b` where `b` is a submodule (edge to `jiyi/a/b.py`) or a name (edge to `jiyi/a/__init__.py`),
relative imports, and `importlib.import_module("jiyi.x")` with a literal name. Only imports under
`if TYPE_CHECKING:` are left out: they never run.

Print the counts with `python tests/test_architecture.py`.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 700
TASK_NAMES = frozenset({"ner", "qa", "seq2seq"})
# Where a task's name may be compared with: its own package and the task registry.
TASK_HOMES = ("jiyi/ner/", "jiyi/qa/", "jiyi/seq2seq/", "jiyi/tasks/")

# -- reading the tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    file: str  # relative to the source root, e.g. "jiyi/data/readers.py"
    module: str  # "jiyi.data.readers"; a package's __init__.py is the package: "jiyi.data"
    is_package: bool
    tree: ast.Module
    lines: int


@dataclass(frozen=True)
class Edge:
    importer: str  # file
    imported: str  # file
    line: int


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


@dataclass(frozen=True)
class Analysis:
    sources: dict[str, Source]  # by module name
    edges: list[Edge]
    private_imports: list[Violation]
    dispatch_sites: list[Violation]

    def cycles(self) -> list[list[str]]:
        """Strongly connected components of more than one file, each sorted, largest first."""
        graph: dict[str, set[str]] = defaultdict(set)
        for e in self.edges:
            if e.importer != e.imported:
                graph[e.importer].add(e.imported)
        nodes = sorted(s.file for s in self.sources.values())
        return sorted(
            (sorted(c) for c in strongly_connected(nodes, graph) if len(c) > 1),
            key=lambda c: (-len(c), c),
        )

    def cycle_edges(self, cycle: list[str]) -> list[Edge]:
        members = set(cycle)
        return [
            e
            for e in self.edges
            if e.importer in members and e.imported in members and e.importer != e.imported
        ]

    def long_files(self) -> list[tuple[str, int]]:
        return sorted(
            ((s.file, s.lines) for s in self.sources.values() if s.lines > MAX_LINES),
            key=lambda fl: -fl[1],
        )

    def largest(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(((s.file, s.lines) for s in self.sources.values()), key=lambda fl: -fl[1])[:n]


def read_sources(root: Path) -> dict[str, Source]:
    sources = {}
    for path in sorted((root / "jiyi").rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        text = path.read_text(encoding="utf-8")
        module = ".".join(parts)
        sources[module] = Source(
            file=rel.as_posix(),
            module=module,
            is_package=is_package,
            tree=ast.parse(text, filename=str(path)),
            lines=len(text.splitlines()),
        )
    return sources


def strongly_connected(nodes: Iterable[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: {a->b, b->a, b->c} -> [["c"], ["b", "a"]] (in some order)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
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
                    components.append(component)
    return components


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` (their `else:` still runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def task_name_in(expr: ast.expr) -> str | None:
    """`"ner"` -> "ner"; `("qa", "seq2seq")` -> "qa"; anything else -> None."""
    if isinstance(expr, ast.Constant) and expr.value in TASK_NAMES:
        return expr.value
    if isinstance(expr, ast.Tuple | ast.List | ast.Set):
        for elt in expr.elts:
            if isinstance(elt, ast.Constant) and elt.value in TASK_NAMES:
                return elt.value
    return None


def analyse(root: Path = SRC) -> Analysis:
    sources = read_sources(root)
    by_module = {m: s.file for m, s in sources.items()}
    edges: list[Edge] = []
    private: list[Violation] = []
    dispatch: list[Violation] = []

    def file_of(module: str) -> str | None:
        """The file that `import module` runs last: the module's own, or its nearest package's."""
        while module and module not in by_module:
            module = module.rpartition(".")[0]
        return by_module.get(module)

    for src in sources.values():
        package = src.module if src.is_package else src.module.rpartition(".")[0]
        module_aliases: dict[str, str] = {}  # local name -> jiyi module it is bound to

        def add_edge(module: str, line: int, src: Source = src) -> None:
            target = file_of(module)
            if target is not None and target != src.file:
                edges.append(Edge(src.file, target, line))

        for node in runtime_nodes(src.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "jiyi" or alias.name.startswith("jiyi."):
                        add_edge(alias.name, node.lineno)
                        if alias.asname:
                            module_aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    base_module = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_module = node.module or ""
                if not (base_module == "jiyi" or base_module.startswith("jiyi.")):
                    continue
                for alias in node.names:
                    submodule = f"{base_module}.{alias.name}"
                    if submodule in by_module:
                        add_edge(submodule, node.lineno)
                        module_aliases[alias.asname or alias.name] = submodule
                        if is_private(alias.name) and not src.module.startswith(base_module + "."):
                            private.append(
                                Violation(src.file, node.lineno, f"imports module {submodule}")
                            )
                    else:
                        add_edge(base_module, node.lineno)
                        if is_private(alias.name) and base_module != src.module:
                            private.append(
                                Violation(
                                    src.file, node.lineno, f"imports {base_module}.{alias.name}"
                                )
                            )
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if (
                    name == "import_module"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                    and node.args[0].value.startswith("jiyi")
                ):
                    add_edge(node.args[0].value, node.lineno)
            elif isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    task = task_name_in(operand)
                    if task:
                        dispatch.append(Violation(src.file, node.lineno, f"compares with {task!r}"))
                        break
            elif isinstance(node, ast.match_case):
                for pattern in ast.walk(node.pattern):
                    if isinstance(pattern, ast.MatchValue) and task_name_in(pattern.value):
                        dispatch.append(Violation(src.file, pattern.lineno, "matches a task name"))

        # `module._name`, where `module` is a jiyi module bound by an import in this file.
        for node in runtime_nodes(src.tree):
            if (
                isinstance(node, ast.Attribute)
                and is_private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and module_aliases[node.value.id] != src.module
            ):
                target = module_aliases[node.value.id]
                private.append(Violation(src.file, node.lineno, f"uses {target}.{node.attr}"))

    dispatch = [v for v in dispatch if not v.file.startswith(TASK_HOMES)]
    key = lambda v: (v.file, v.line)  # noqa: E731
    edges = sorted(set(edges), key=lambda e: (e.importer, e.line, e.imported))
    return Analysis(sources, edges, sorted(private, key=key), sorted(dispatch, key=key))


@cache
def analysis() -> Analysis:
    return analyse(SRC)


def describe_cycles(a: Analysis, cycles: list[list[str]]) -> str:
    lines = []
    for cycle in cycles:
        lines.append(f"cycle of {len(cycle)} files: {', '.join(cycle)}")
        lines += [f"    {e.importer}:{e.line} -> {e.imported}" for e in a.cycle_edges(cycle)]
    return "\n".join(lines)


# -- the checker checks what it should (a small tree written on the fly) ----------------------


def test_checker_finds_a_cycle_a_private_import_a_dispatch_and_a_long_file(tmp_path):
    files = {
        "jiyi/__init__.py": "",
        "jiyi/a.py": "from jiyi.sub import b\n",
        "jiyi/sub/__init__.py": "",
        "jiyi/sub/b.py": "def f():\n    from ..c import _helper\n    return _helper\n",
        "jiyi/c.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from jiyi import d\n"
            "import jiyi.a as mod_a\n"
            "def g(task):\n    return task in ('ner', 'x') or mod_a._secret\n"
        ),
        "jiyi/d.py": "from jiyi import c\n" + "x = 1\n" * MAX_LINES,
        "jiyi/ner/__init__.py": "def h(task):\n    return task == 'ner'\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    a = analyse(tmp_path)
    # a -> sub/b (submodule), sub/b -> c (relative, lazy), c -> a; c -> d only for type checkers.
    assert a.cycles() == [["jiyi/a.py", "jiyi/c.py", "jiyi/sub/b.py"]]
    assert [str(v) for v in a.private_imports] == [
        "jiyi/c.py:6: uses jiyi.a._secret",
        "jiyi/sub/b.py:2: imports jiyi.c._helper",
    ]
    assert [str(v) for v in a.dispatch_sites] == ["jiyi/c.py:6: compares with 'ner'"]
    assert a.long_files() == [("jiyi/d.py", MAX_LINES + 1)]


# -- src/jiyi ----------------------------------------------------------------------------------


def test_no_import_cycle_between_files():
    a = analysis()
    assert not a.cycles(), describe_cycles(a, a.cycles())


def test_no_private_name_imported_across_modules():
    found = [str(v) for v in analysis().private_imports]
    assert not found, "\n".join(found)


def test_no_task_name_compared_outside_task_packages():
    found = [str(v) for v in analysis().dispatch_sites]
    assert not found, "\n".join(found)


def test_no_source_file_over_700_lines():
    found = [f"{f}: {n} lines" for f, n in analysis().long_files()]
    assert not found, "\n".join(found)


def main() -> None:
    a = analysis()
    cycles = a.cycles()
    print(f"{len(a.sources)} files, {len(a.edges)} import edges between files")
    print(f"cycles: {len(cycles)} ({sum(map(len, cycles))} files)")
    if cycles:
        print(describe_cycles(a, cycles))
    print(f"private imports across modules: {len(a.private_imports)}")
    for v in a.private_imports:
        print(f"    {v}")
    per_file: dict[str, int] = defaultdict(int)
    for v in a.dispatch_sites:
        per_file[v.file] += 1
    print(f"task-name comparisons outside task packages: {len(a.dispatch_sites)}")
    for f, n in sorted(per_file.items(), key=lambda fn: -fn[1]):
        print(f"    {f}: {n}")
    print(f"files over {MAX_LINES} lines: {len(a.long_files())}")
    print("largest: " + ", ".join(f"{f} {n}" for f, n in a.largest()))


if __name__ == "__main__":
    sys.exit(main())
