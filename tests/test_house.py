"""The house: the imports of adapters/, suites/ and reports/ (lazy ones inside functions
too) have no circles, and none runs up a layer. The layers, bottom up:

    adapters/contract.py, adapters/toolkit/, adapters/spec/   the contract, shared helpers, the specification
    adapters/<framework>/                                     a framework's adapters, source, steps, declarations
    adapters/registry.py                                      the built-ins as data (imports the frameworks' steps)
    suites/                                                   the checks
    reports/                                                  the pages and records

A framework folder may use another's (the ONNX exports run torch's prelude); the
specification and the toolkit use no framework folder."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "embedding_conformance"
TOPS = ("adapters", "suites", "reports")
BASE = ("adapters/contract.py", "adapters/toolkit/", "adapters/spec/", "adapters/__init__.py")


def _files() -> list[Path]:
    return sorted(p for top in TOPS for p in (ROOT / top).rglob("*.py"))


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _resolve(name: str, known: dict[str, Path]) -> Path | None:
    """The file of ``name`` (a dotted module inside the three folders), or of its nearest package."""
    while name:
        if name in known:
            return known[name]
        name = name.rpartition(".")[0]
    return None


def imports() -> dict[Path, set[Path]]:
    """Each file -> the files of the three folders it imports (anywhere in it)."""
    files = _files()
    known = {_module_of(p): p for p in files}
    graph: dict[Path, set[Path]] = {p: set() for p in files}
    for path in files:
        here = _module_of(path).split(".")
        package = here if path.name == "__init__.py" else here[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1])
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for name in names:
                if name.startswith(PACKAGE + "."):
                    name = name[len(PACKAGE) + 1:]
                if name.split(".")[0] not in TOPS:
                    continue
                target = _resolve(name, known)
                if target is not None and target != path:
                    graph[path].add(target)
    return graph


def layer(path: Path) -> int:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("reports/"):
        return 4
    if rel.startswith("suites/"):
        return 3
    if rel == "adapters/registry.py":
        return 2
    if rel.startswith(BASE):
        return 0
    return 1  # a framework folder


def _circles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    found: list[list[Path]] = []

    def visit(v: Path) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_imports_have_no_circles():
    circles = _circles(imports())
    assert not circles, "\n".join(" <-> ".join(p.relative_to(ROOT).as_posix() for p in c) for c in circles)


def test_no_import_runs_up_a_layer():
    up = [f"{a.relative_to(ROOT)} (layer {layer(a)}) imports {b.relative_to(ROOT)} (layer {layer(b)})"
          for a, targets in imports().items() for b in targets if layer(b) > layer(a)]
    assert not up, "\n".join(up)


def test_the_graph_is_read():
    graph = imports()
    engine = ROOT / "suites" / "engine.py"
    assert ROOT / "adapters" / "contract.py" in graph[engine]  # absolute imports are followed
    assert ROOT / "suites" / "assertions.py" in graph[engine]  # relative ones too


_PATH = re.compile(r"(?<![\w/.-])((?:adapters|suites|reports|tests|scripts)/[\w/.-]*\w\.(?:py|toml|md|sh|json|j2))")


def test_every_project_path_named_in_the_sources_exists():
    # a comment or docstring that sends a reader to a file must send them somewhere real
    # (files moved in the house's reorganisation left such pointers behind)
    missing = []
    files = [*ROOT.glob("*.md"), *ROOT.glob("*.py"), *(p for top in ("adapters", "suites", "reports", "tests", "scripts")
                                                        for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".toml", ".sh", ".j2"))]
    for f in files:
        if "__pycache__" in f.parts or not f.is_file():
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in _PATH.finditer(line):
                target = m.group(1)
                # output folders (reports/latest/...) and node ids made up by a test are not files
                if "*" in target or "<" in target or "::" in line[m.end():m.end() + 2] or (
                        target.startswith("reports/") and target.count("/") > 1 and not target.startswith("reports/templates/")):
                    continue
                if not (ROOT / target).exists():
                    missing.append(f"{f.relative_to(ROOT)}:{n}: {target}")
    assert not missing, "\n".join(missing)
