"""The import graph runs one way, inside the core as well as around it.

Every module of ``grm``, ``grm.training`` and ``grm.eval`` belongs to a layer (:data:`LAYERS`, the order in
docs/design.md); it may import modules of lower layers and of its own layer's group, never a higher layer, never a
sibling group of its rank (training and evaluation do not import each other), never another module's private
(``_name``) attribute, and no chain of imports may lead back to where it started. Imports inside functions count:
a lazy import is still a dependency. The graph is read from the source (``ast``), so the check sees every import
whether or not it runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"grm": ROOT / "grm", "grm.training": ROOT / "training", "grm.eval": ROOT / "eval"}

LAYERS: list[tuple[str, list[str]]] = [
    (
        "data types and seeding",
        [
            "grm.types",
            "grm.seeding",
            "grm.escaping",
            "grm.thinking",
            "grm.progress",
            "grm.jsonl",
            "grm.rule",
            "grm.metrics",
            "grm.extras",
        ],
    ),
    (
        "prompts, parsing, voting",
        ["grm.prompts", "grm.parsing", "grm.voting", "grm.judges", "grm.judges.", "grm.synthetic"],
    ),
    ("backends", ["grm.backends", "grm.backends."]),
    ("scoring", ["grm.scoring"]),
    ("the GRM", ["grm.model", "grm.meta_rm", "grm.assets", "grm"]),
    (
        "apps",
        [
            "grm.isolation",
            "grm.sources",
            "grm.rows",
            "grm.outputs",
            "grm.jobs",
            "grm.flags",
            "grm.settings",
            "grm.server",
            "grm.server.",
            "grm.distributed",
            "grm.search",
            "grm.search.",
            "grm.integrations",
            "grm.integrations.",
            "grm.tiny",
        ],
    ),
    ("training | evaluation", ["grm.training", "grm.training.", "grm.eval", "grm.eval."]),
    (
        "command lines and pipelines",
        ["grm.cli", "grm.eval.cli", "grm.training.cli", "grm.training.default_grm", "grm.training.default_grm_report"],
    ),
]
"""Layers from the bottom up: (name, module names). A name ending in ``.`` covers every module under it; an exact
name wins over a covering one. ``training | evaluation`` is one rank of two groups that may not import each other."""


@dataclass(frozen=True)
class Place:
    rank: int
    group: str


def place(module: str) -> Place | None:
    """The layer of ``module``: its exact entry, else its longest covering prefix."""
    best: tuple[int, Place] | None = None
    for rank, (name, entries) in enumerate(LAYERS):
        for entry in entries:
            exact = entry == module
            covering = entry.endswith(".") and module.startswith(entry)
            if exact or covering:
                weight = 10**6 if exact else len(entry)
                group = entry.rstrip(".").split(".")[1] if name == "training | evaluation" else name
                if best is None or weight > best[0]:
                    best = (weight, Place(rank, group))
    return None if best is None else best[1]


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every import in the file, resolved to known modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "grm"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != "grm":
                continue
            names = []
            for alias in node.names:
                if f"{source}.{alias.name}" in known:  # `from grm import voting`: the submodule itself
                    out.append((f"{source}.{alias.name}", [], node.lineno))
                else:
                    names.append(alias.name)
            if names:
                out.append((source, names, node.lineno))
    return out


def graph() -> dict[str, list[tuple[str, list[str], int]]]:
    found = modules()
    return {m: imports(m, p, set(found)) for m, p in found.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if place(m) is None]
    assert unplaced == [], f"add these modules to LAYERS (and docs/design.md): {unplaced}"


def test_imports_go_down_never_up_nor_sideways():
    wrong = []
    for module, edges in graph().items():
        here = place(module)
        for target, _, line in edges:
            there = place(target)
            if here is None or there is None:
                continue
            if there.rank > here.rank or (there.rank == here.rank and there.group != here.group):
                wrong.append(f"{module}:{line} ({here.group}) imports {target} ({there.group})")
    assert wrong == [], "\n".join(wrong)


def test_no_module_imports_a_private_name_of_another():
    wrong = [
        f"{module}:{line} imports {name} from {target}"
        for module, edges in graph().items()
        for target, names, line in edges
        for name in names
        if name.startswith("_") and not name.endswith("__") and target != module
    ]
    assert wrong == [], "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself): Tarjan's."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere():
    edges = {m: {t for t, _, _ in e if t != m} for m, e in graph().items()}
    assert cycles(edges) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_check_sees_a_cycle(edges, expected):
    assert cycles(edges) == expected


def test_the_checks_read_lazy_relative_and_submodule_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "from grm import voting\nfrom . import parsing\n"
        "def f():\n    from grm.cli import main\n    import grm.eval.runner\n    from grm.scoring import _private\n"
    )
    known = {"grm.voting", "grm.parsing", "grm.cli", "grm.eval.runner", "grm.scoring"}
    found = {(t, tuple(n)) for t, n, _ in imports("grm.m", path, known)}
    assert found == {
        ("grm.voting", ()),
        ("grm.parsing", ()),
        ("grm.cli", ("main",)),
        ("grm.eval.runner", ()),
        ("grm.scoring", ("_private",)),
    }
    assert place("grm.cli").rank > place("grm.eval.runner").rank > place("grm.scoring").rank
    assert place("grm.training.rft").group != place("grm.eval.runner").group
