"""The imports form layers: a call flows down (faces → pipeline → operations → cache /
credentials → upstream → the shared base), never up, and the two faces never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

#: Lowest first: a module may import its own layer's modules and those of layers before it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "headers", "enums", "metrics", "config", "config_checks", "log",
               "context", "tracing", "cancellation"}),
    frozenset({"upstream"}),
    frozenset({"cache", "credentials"}),
    frozenset({"operations"}),
    frozenset({"pipeline"}),
    frozenset({"rpc", "rest"}),
    frozenset({"app", "metrics_server", "__main__", "demo", "loop", "loop_lag",
               "supervisor"}),
)
#: The emulator stands for the upstream: it may use only the shared base.
EMULATOR_MAY_IMPORT = LAYERS[0] | {"emulator"}


def _unit(module: str) -> str:
    """``gateway.rest.app`` → ``rest``; ``gateway.errors`` → ``errors``."""
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(relative.parts)
        if name == "gateway.__init__":
            continue
        targets: set[str] = set()
        tree = ast.parse(path.read_text())
        # Imports for annotations only (``if TYPE_CHECKING:``) are not imports at run time.
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                       for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        found[name] = {t for t in targets if t.startswith("gateway.")}
    return found


def _layer(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"gateway.{unit} is in no layer: add it to LAYERS")


def test_every_import_points_down_or_sideways_within_a_layer() -> None:
    wrong = []
    for module, targets in _imports().items():
        unit = _unit(module)
        for target in targets:
            other = _unit(target)
            if unit == "emulator":
                if other not in EMULATOR_MAY_IMPORT:
                    wrong.append(f"{module} -> {target}")
                continue
            if other == "emulator":
                if unit not in {"demo", "__main__"}:
                    wrong.append(f"{module} -> {target}")
                continue
            if _layer(other) > _layer(unit):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_faces_do_not_import_each_other() -> None:
    imports = _imports()
    rest_to_rpc = [m for m, t in imports.items() if _unit(m) == "rest"
                   and any(_unit(x) == "rpc" for x in t)]
    rpc_to_rest = [m for m, t in imports.items() if _unit(m) == "rpc"
                   and any(_unit(x) == "rest" for x in t)]
    assert rest_to_rpc == [] and rpc_to_rest == []


def test_units_of_one_layer_form_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        graph.setdefault(_unit(module), set()).update(
            _unit(t) for t in targets if _unit(t) != _unit(module))
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(unit: str, path: list[str]) -> None:
        state = seen.get(unit)
        assert state != 1, f"import cycle: {' -> '.join([*path, unit])}"
        if state == 2:
            return
        seen[unit] = 1
        for other in sorted(graph.get(unit, ())):
            visit(other, [*path, unit])
        seen[unit] = 2

    for unit in sorted(graph):
        visit(unit, [])
