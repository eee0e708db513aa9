"""The house of the package (docs/architecture.md): floors, and the arrows allowed between them.

Every import of a ``uwe`` module inside ``uwe/`` -- at module level, inside a function, or under
``TYPE_CHECKING`` -- must point to the module's own floor or a lower one, never into a sibling
wing, and the graph of the modules must have no cycle. The floors, bottom up:

    base     uwe (the version), uwe.constants, uwe.errors, uwe.io, uwe.config, uwe.precision,
             uwe.runtime
    data     uwe.data: sources, readers, curation, WorkBench tasks
    core     uwe.core: the method as pure functions (scorers, losses, batching, softness)
    model    uwe.model: the encoder, UWEModel, folders, model card, baselines, the registry
    train    uwe.train          |  infer  uwe.infer   (two wings: neither imports the other)
    bench    uwe.bench: metrics, evaluation, latency (may use infer, never train)
    top      uwe.pipeline, uwe.cli, uwe.workrb_adapter
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uwe.runtime import uwe_imports

PACKAGE = Path(__file__).resolve().parents[1] / "uwe"

BASE = {"uwe", "uwe.constants", "uwe.errors", "uwe.io", "uwe.config", "uwe.precision",
        "uwe.runtime"}
# floor -> the floors its modules may import (besides their own floor)
ALLOWED = {
    "base": set(),
    "data": {"base"},
    "core": {"base", "data"},
    "model": {"base", "data", "core"},
    "train": {"base", "data", "core", "model"},
    "infer": {"base", "data", "core", "model"},
    "bench": {"base", "data", "core", "model", "infer"},
    "top": {"base", "data", "core", "model", "train", "infer", "bench"},
}
TOP = {"uwe.pipeline", "uwe.cli", "uwe.workrb_adapter"}


def modules() -> dict[str, Path]:
    """Every module of the package -> its file (packages by their ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def module_of(name: str) -> str | None:
    """The module an imported name lives in (``uwe.core.scoring.EPS`` -> ``uwe.core.scoring``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def floor(module: str) -> str:
    if module in BASE:
        return "base"
    for top in TOP:
        if module == top or module.startswith(top + "."):
            return "top"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{module}: on no floor of tests/test_architecture.py; place it there "
                         "and in docs/architecture.md")


def edges() -> dict[str, set[str]]:
    """module -> the ``uwe`` modules it imports (itself excluded)."""
    out = {}
    for name, path in MODULES.items():
        targets = {module_of(n) for n in uwe_imports(path.read_text(encoding="utf-8"))}
        out[name] = {t for t in targets if t is not None and t != name}
    return out


EDGES = edges()


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            a, b = floor(src), floor(dst)
            if a != b and b not in ALLOWED[a]:
                bad.append(f"{src} ({a}) imports {dst} ({b})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_on_a_floor():
    for name in MODULES:
        floor(name)


def test_no_import_climbs_or_crosses_into_a_sibling_wing():
    bad = violations(EDGES)
    assert not bad, "imports against the floors of docs/architecture.md:\n" + "\n".join(bad)


def test_the_import_graph_has_no_cycle():
    assert cycles(EDGES) == []


def test_training_reaches_no_serving_code():
    """The import closure of the training loop holds no module of uwe.infer or uwe.bench (its
    validation scores through the model floor's torch path)."""
    seen, todo = set(), ["uwe.train.loop"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += EDGES.get(m, ())
    assert not {m for m in seen if floor(m) in ("infer", "bench", "top")}


@pytest.mark.parametrize("graph,expected", [
    ({"uwe.core.scoring": {"uwe.infer.kernels"}, "uwe.infer.kernels": set()},
     ["uwe.core.scoring (core) imports uwe.infer.kernels (infer)"]),
    ({"uwe.train.loop": {"uwe.infer.dense"}, "uwe.infer.dense": set()},
     ["uwe.train.loop (train) imports uwe.infer.dense (infer)"]),
    ({"uwe.infer.ranker": {"uwe.bench.metrics"}, "uwe.bench.metrics": set()},
     ["uwe.infer.ranker (infer) imports uwe.bench.metrics (bench)"]),
    ({"uwe.bench.evaluation": {"uwe.infer.model"}, "uwe.pipeline.claims": {"uwe.train.loop"}},
     []),
])
def test_the_rule_catches_a_climbing_import(graph, expected):
    assert violations(graph) == expected


def test_the_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
