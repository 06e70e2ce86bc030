"""The package layout and its import boundaries (ARCHITECTURE.md: who may import whom)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

OURS = {"sandbox", "verifier_server", "restem_client", "evals", "restem_proto"}
# package -> our packages it may import
ALLOWED = {
    "sandbox": set(),
    "restem_proto": set(),
    # the shared check records and verdicts (evals.checks, stdlib only) are the one exception
    "verifier_server": {"sandbox", "restem_proto", "evals"},
    "evals": set(),
    "restem_client": {"evals", "restem_proto", "verifier_server"},
}
# The sandbox imports the standard library only (it drives Docker through its CLI). The
# files that run inside the jail import the standard library and each other.
JAIL = REPO / "sandbox" / "jail"
JAIL_MODULES = {p.stem for p in JAIL.glob("*.py")} - {"__init__"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_package_imports_and_has_docstring(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__ and module.__doc__.strip(), f"{package} needs a module docstring"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_boundaries(package: str) -> None:
    violations = []
    for path in package_files(package):
        ours = (imported_top_levels(path) & OURS) - {package}
        for name in sorted(ours - ALLOWED[package]):
            violations.append(f"{path.relative_to(REPO)} imports {name}")
    assert not violations, violations


def test_sandbox_imports_only_stdlib() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for path in package_files("sandbox"):
        allowed = stdlib | (JAIL_MODULES if path.parent == JAIL else {"sandbox"})
        extra = sorted(imported_top_levels(path) - allowed)
        bad += [f"{path.relative_to(REPO)}: {n}" for n in extra]
    assert not bad, bad
    assert {"executor", "seccomp", "values"} <= JAIL_MODULES


def test_every_module_has_a_docstring() -> None:
    missing = [str(p.relative_to(REPO)) for pkg in sorted(OURS) for p in package_files(pkg)
               if "_pb2" not in p.name and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, f"modules without a docstring: {missing}"


def test_boundary_checker_sees_a_violation(tmp_path: Path) -> None:
    # The checker itself must be able to fail.
    bad = tmp_path / "bad.py"
    bad.write_text("import restem_client.cli\nfrom verifier_server import math\n")
    assert imported_top_levels(bad) == {"restem_client", "verifier_server"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Our modules a file imports anywhere (also inside functions): `from a.b import c` is
    a.b.c when that is a module, else a.b; `import a.b` is a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_between_our_modules() -> None:
    files = {module_name(p): p for pkg in sorted(OURS) for p in package_files(pkg)
             if "_pb2" not in p.name}
    known = set(files)
    # A package's __init__ importing its own submodules is how packages are built, not a
    # cycle; a submodule importing its package's __init__ for a helper is the edge we keep.
    graph = {name: {m for m in imported_modules(path, known)
                    if not (path.name == "__init__.py" and m.startswith(name + "."))}
             for name, path in files.items()}
    assert not import_cycles(graph), import_cycles(graph)


def test_cycle_finder_sees_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_verifier_server_takes_only_the_check_records_from_evals() -> None:
    """verifier_server may import evals for `evals.checks` (stdlib only) and nothing else,
    so a server never loads datasets, prompts or plotting."""
    known = {module_name(p) for p in package_files("evals")}
    wider = [f"{path.relative_to(REPO)} imports {name}" for path in package_files("verifier_server")
             for name in sorted(imported_modules(path, known) - {"evals.checks"})]
    assert not wider, wider


def test_protobuf_is_translated_only_at_the_two_ends_of_the_wire() -> None:
    """A check is a record from the caller down to the sandbox and back: `verifier_server.wire`
    is imported by the gRPC client and the gRPC service only, and protobuf itself only by
    them, the translator and the server that registers the service; the core, the in-process
    verifier, the protocol, the scorer and the loop never touch it."""
    known = {module_name(p) for package in ALLOWED for p in package_files(package)}
    wire = {"verifier_server.wire"}
    stubs = {"restem_proto.v1.verifier_pb2", "restem_proto.v1.verifier_pb2_grpc"}
    importers: dict[str, set[str]] = {"wire": set(), "stubs": set()}
    for package in ALLOWED:
        for path in package_files(package):
            found = imported_modules(path, known | wire | stubs)
            if found & wire:
                importers["wire"].add(module_name(path))
            if found & stubs and package != "restem_proto":
                importers["stubs"].add(module_name(path))
    assert importers["wire"] == {"restem_client.client", "verifier_server.service"}
    assert importers["stubs"] == {"restem_client.client", "verifier_server.service",
                                  "verifier_server.wire", "verifier_server.server"}
