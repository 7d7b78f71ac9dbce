"""The package's module graph: no import cycle, and every import (module-level or inside a function) goes down the
layers of docs/architecture.md, never up:

    base (validate, files, tables, compilation cache) -> envs -> dynamics -> models, policies -> rollout
    -> fitting (data collection, world-model fitting), objective (BPO's imagined objective)
    -> training, analysis, outcomes, memory -> run store (runs, the training driver, sweep, export)
    -> report, plots, conclusions, app, cli

Also: nothing in models/ imports the rollout (the rollout consumes the models' declared dynamics)."""
import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "gradlens"
LAYERS = [  # (layer, module-name prefixes), lowest first; a module's layer is that of its longest matching prefix
    ("base", ("gradlens", "gradlens.validate", "gradlens.files", "gradlens.tables", "gradlens.compilation_cache")),
    ("envs", ("gradlens.envs",)),
    ("dynamics", ("gradlens.dynamics",)),
    ("models", ("gradlens.models", "gradlens.policies")),
    ("rollout", ("gradlens.rollout",)),
    ("fitting and objective", ("gradlens.fitting", "gradlens.objective")),
    ("training and analysis", ("gradlens.training", "gradlens.analysis", "gradlens.outcomes", "gradlens.memory")),
    ("run store", ("gradlens.runs", "gradlens.training.train", "gradlens.sweep", "gradlens.tensorboard")),
    ("interfaces", ("gradlens.report", "gradlens.plots", "gradlens.outcome_plots", "gradlens.conclusions",
                    "gradlens.app", "gradlens.cli")),
]


def _modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        name = ".".join(("gradlens", *file.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = file
    return found


def _graph() -> nx.DiGraph:
    modules = _modules()

    def owner(name: str) -> str | None:  # the module a dotted name lives in ("gradlens.envs.make" -> gradlens.envs)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    for name, file in modules.items():
        graph.add_node(name)
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], base]).strip(".")
                targets = [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                dep = owner(target) if target.startswith("gradlens") else None
                if dep and dep != name:
                    graph.add_edge(name, dep)
    return graph


def layer(name: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or name.startswith(prefix + ".")]
    return max(matches)[1]


def test_the_module_graph_has_no_cycle():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_every_import_goes_down_the_layers():
    graph = _graph()
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})" for a, b in graph.edges
              if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)
    assert not [m for m in graph.predecessors("gradlens.rollout") if m.startswith("gradlens.models")]
    assert set(graph.successors("gradlens.dynamics")) <= {"gradlens.envs", "gradlens.envs.base"}
    assert len(graph) > 80 and graph.number_of_edges() > 150  # the walk saw the package


def test_the_walk_finds_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The check itself: an upward import hidden in a function body is an edge, as is a relative one."""
    fake = tmp_path / "gradlens"
    (fake / "envs").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "report.py").write_text("")
    (fake / "envs" / "__init__.py").write_text("from . import base\n")
    (fake / "envs" / "base.py").write_text("def f():\n    from gradlens.report import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = _graph()
    assert graph.has_edge("gradlens.envs.base", "gradlens.report") and graph.has_edge("gradlens.envs",
                                                                                     "gradlens.envs.base")
