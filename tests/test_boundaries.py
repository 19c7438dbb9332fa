"""The boundaries docs/ARCHITECTURE.md ("Boundaries") states, checked on the source with `ast`:

- the run store (chunky/store) owns run.sqlite: nothing else opens it, reads a store's `.conn` or imports the
  store's private names;
- TurfIndex (chunky/turf) owns the index directory: nothing else opens index.json or the index's tables by name;
- the report (chunky/web/report.py) never loads the Starlette app (chunky/web/app.py);
- the caller draws a steering result's figures: chunky/measure/steer.py never imports chunky/measure/plots.py.

Function-local imports count: they are imports too, only later.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "chunky"

# File names inside a run directory / an index directory, and the package that alone may open them.
OWNED_FILES = {
    "run.sqlite": "chunky.store",
    "index.json": "chunky.turf",
    **{f"{t}.parquet": "chunky.turf" for t in ("examples", "features", "feature_stats", "attributes", "clusters")},
}
# Calls that open (or read) a file they are given.
OPENERS = {"open", "read_text", "read_bytes", "connect", "read_table", "ParquetFile", "read_schema", "load",
           "read_parquet", "read_metadata"}


@dataclass
class Module:
    name: str  # dotted, e.g. chunky.web.report (a package is named after its folder)
    path: Path
    tree: ast.Module

    def is_in(self, package: str) -> bool:
        return self.name == package or self.name.startswith(package + ".")


def parse(name: str, source: str, path: Path = Path("<snippet>")) -> Module:
    return Module(name, path, ast.parse(source, filename=str(path)))


def package_modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        out[name] = parse(name, path.read_text(encoding="utf-8"), path)
    return out


MODULES = package_modules()


def where(m: Module, node: ast.AST) -> str:
    return f"{m.path.relative_to(PACKAGE.parent) if m.path.is_absolute() else m.path}:{getattr(node, 'lineno', '?')}"


# ---- imports ---------------------------------------------------------------------------------------


def _import_nodes(tree: ast.AST, *, module_level_only: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement; with module_level_only, not those inside functions (they run later, if ever)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _absolute(m: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = m.path.name == "__init__.py"
    base = m.name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(m: Module, *, module_level_only: bool = False) -> set[str]:
    """The chunky modules `m` imports: `from a.b import c` names a.b, and a.b.c when that is a module."""
    out: set[str] = set()
    for node in _import_nodes(m.tree, module_level_only=module_level_only):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        else:
            base = _absolute(m, node)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return {n for n in out if n == "chunky" or n.startswith("chunky.")}


def loaded_with(name: str) -> set[str]:
    """Every chunky module that importing `name` runs: its module-level imports, transitively, and the
    packages above each of them."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            if p in MODULES and p not in seen:
                seen.add(p)
                todo.extend(imported(MODULES[p], module_level_only=True))
    return seen


# ---- the checks (each returns its violations, one line each) -------------------------------------------


def private_store_names(m: Module) -> list[str]:
    """Imports of `_private` names from chunky.store.*, and `alias._private` on an imported store module."""
    if m.is_in("chunky.store"):
        return []
    bad, aliases = [], set()
    for node in _import_nodes(m.tree, module_level_only=False):
        if isinstance(node, ast.ImportFrom) and (_absolute(m, node) + ".").startswith("chunky.store."):
            for a in node.names:
                if a.name.startswith("_"):
                    bad.append(f"{where(m, node)}: imports {a.name} from {_absolute(m, node)}")
                elif f"{_absolute(m, node)}.{a.name}" in MODULES:
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            aliases.update(a.asname for a in node.names if a.asname and a.name.startswith("chunky.store"))
    for node in ast.walk(m.tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_")):
            bad.append(f"{where(m, node)}: uses {node.value.id}.{node.attr}")
    return bad


def store_connection_use(m: Module) -> list[str]:
    """Reads of a `.conn` attribute (the RunStore's SQLite connection: `st.conn.execute(...)`)."""
    if m.is_in("chunky.store"):
        return []
    return [
        f"{where(m, node)}: reads .conn (ask the RunStore, it owns run.sqlite)"
        for node in ast.walk(m.tree)
        if isinstance(node, ast.Attribute) and node.attr == "conn" and isinstance(node.ctx, ast.Load)
    ]


def _owned_names_in(node: ast.AST, variables: dict[str, set[str]]) -> set[str]:
    """The owned file names an expression spells out, directly or through a variable holding a path to one."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            for f in OWNED_FILES:
                if sub.value == f or sub.value.endswith("/" + f):
                    names.add(f)
        if isinstance(sub, ast.Name):
            names |= {"run.sqlite"} if sub.id == "DB_NAME" else variables.get(sub.id, set())
    return names


def _path_variables(m: Module) -> dict[str, set[str]]:
    """Variables assigned a path to an owned file (`attr_path = p / "attributes.parquet"`), module-wide."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Assign):
            found = _owned_names_in(node.value, {})
            for t in node.targets:
                if found and isinstance(t, ast.Name):
                    out.setdefault(t.id, set()).update(found)
    return out


def owned_files_opened(m: Module) -> list[str]:
    """Calls that open a file another package owns, named by its file name: `open(d / "index.json")`,
    `(d / "index.json").read_text()`, `pq.read_table(d / "attributes.parquet")`, `sqlite3.connect(d / DB_NAME)`.
    Looking a marker file up (`.exists()`, `.is_file()`, `.stat()`) is not opening it."""
    bad = []
    variables = _path_variables(m)
    for node in ast.walk(m.tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name not in OPENERS:
            continue
        parts: list[ast.AST] = [*node.args, *(k.value for k in node.keywords)]
        if isinstance(f, ast.Attribute):
            parts.append(f.value)  # (d / "index.json").read_text()
        for part in parts:
            for fname in _owned_names_in(part, variables):
                owner = OWNED_FILES[fname]
                if not m.is_in(owner):
                    bad.append(f"{where(m, node)}: opens {fname} ({owner} owns it)")
    return bad


def imports_of(m: Module, target: str) -> list[str]:
    return [f"{m.name} imports {target}"] if target in imported(m) else []


# ---- the boundaries ------------------------------------------------------------------------------------


def every(check) -> list[str]:
    return [v for m in MODULES.values() for v in check(m)]


def test_only_the_store_uses_its_private_names():
    assert every(private_store_names) == []


def test_only_the_store_touches_the_run_database_connection():
    assert every(store_connection_use) == []


def test_the_store_and_the_index_alone_open_their_files_by_name():
    assert every(owned_files_opened) == []


def test_the_report_never_loads_the_web_app():
    report = MODULES["chunky.web.report"]
    assert imports_of(report, "chunky.web.app") == []
    assert "chunky.web.app" not in loaded_with("chunky.web.report")


def test_steer_never_imports_its_plots():
    """plots draws a SteerResult (it imports steer); steer never imports plots, not even inside a function."""
    assert imports_of(MODULES["chunky.measure.steer"], "chunky.measure.plots") == []
    assert "chunky.measure.plots" not in loaded_with("chunky.measure.steer")


# ---- the checks can fail ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, source",
    [
        (private_store_names, "from chunky.store.runstore import _CAND_COLS, RunStore\n"),
        (private_store_names, "from chunky.store import runstore\nx = runstore._candidate\n"),
        (store_connection_use, "def f(st):\n    return st.conn.execute('SELECT 1').fetchall()\n"),
        (owned_files_opened, "import json\ndef f(p):\n    return json.loads((p / 'index.json').read_text())\n"),
        (owned_files_opened, "import pyarrow.parquet as pq\ndef f(p):\n    return pq.read_table(p / 'attributes.parquet')\n"),
        (owned_files_opened, "import sqlite3\nfrom chunky.store import DB_NAME\ndef f(d):\n    return sqlite3.connect(d / DB_NAME)\n"),
        (owned_files_opened, "import pyarrow.parquet as pq\ndef f(p):\n    f = p / 'clusters.parquet'\n    return pq.read_table(f)\n"),
        (lambda m: imports_of(m, "chunky.web.app"), "def f():\n    from chunky.web.app import run_overview\n"),
        (lambda m: imports_of(m, "chunky.measure.plots"), "def save():\n    from chunky.measure import plots\n"),
    ],
)
def test_each_check_catches_a_violation(check, source):
    assert check(parse("chunky.elsewhere.mod", source)) != []


def test_looking_up_a_marker_file_is_not_opening_it():
    m = parse("chunky.web.discover", "def f(d):\n    return (d / 'index.json').is_file() or (d / 'run.sqlite').exists()\n")
    assert owned_files_opened(m) == []
