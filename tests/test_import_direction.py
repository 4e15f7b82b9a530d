"""Imports in core/ run one way: from a higher room to a lower one, never back, never in a circle.

Every `import` and `from ... import` counts, wherever it stands: at the top of a module, inside a
function (a lazy import is still a dependency) and under `if TYPE_CHECKING:`. Only core/__init__.py,
the lazy public map, may name every room. The order of rooms is the one docs/architecture.md gives.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GROUND = ("errors", "lazy", "keyvalue")  # core/errors.py, ...: import nothing from core
ROOMS = ("plugin", "network", "data", "training", "files", "pipeline")  # low to high
OUTSIDE = ("plugins", "cli")  # core never imports these


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` under `root`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported name, line) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # `from core.data import preprocess` imports a module
                full = f"{base}.{alias.name}"
                found.append((full if full in known else base, node.lineno))
    return found


def room_of(name: str, package: str) -> str | None:
    """'ground', a room's name, or None for a module outside every room."""
    parts = name.split(".")
    if len(parts) == 2 and parts[1] in GROUND:
        return "ground"
    if len(parts) >= 2 and parts[1] in ROOMS:
        return parts[1]
    return None


def rank(room: str) -> int:
    return -1 if room == "ground" else ROOMS.index(room)


def violations(root: Path, package: str = "core") -> list[str]:
    """Every import that breaks the rule, and every circle, as one line each."""
    known = modules(root, package)
    problems, graph = [], {}
    for name, path in known.items():
        where = f"{path.relative_to(root)}"
        graph[name] = set()
        facade = name == package  # its lazy map names every room; only OUTSIDE is barred
        room = room_of(name, package)
        if room is None and not facade:
            problems.append(f"{where}: {name} is in no room (rooms: {', '.join(ROOMS)}; "
                            f"ground floor: {', '.join(GROUND)})")
        for target, line in imports_of(name, path, known):
            top = target.split(".")[0]
            if top in OUTSIDE:
                problems.append(f"{where}:{line}: {name} imports {target}: core never imports "
                                f"plugins/ or cli.py")
                continue
            if top != package or facade:
                continue
            if target == package:
                problems.append(f"{where}:{line}: {name} imports from the facade `{package}`: "
                                f"import the module that defines the name")
                continue
            while target not in known:  # `import core.x.y.name` -> the module core.x.y
                target = target.rpartition(".")[0]
            if target != name:
                graph[name].add(target)
            to_room = room_of(target, package)
            if room is not None and to_room is not None and rank(to_room) > rank(room):
                problems.append(f"{where}:{line}: {name} ({room}) imports {target} ({to_room}): "
                                f"upward; a room imports only the rooms below it")
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per back edge found by a depth-first walk (empty when the graph has none)."""
    state, stack, found = {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_core_imports_run_one_way_without_circles():
    found = violations(ROOT)
    assert not found, "imports in core/ must run one way:\n" + "\n".join(found)


def test_every_room_says_what_it_may_import():
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / "core" / room / "__init__.py").read_text()))
        assert doc and "import" in doc, f"core/{room}/__init__.py needs its one-paragraph docstring"


# The checker itself, on a small package written for each test, so that it can fail for real.

def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"core/__init__.py": "", "core/errors.py": "", "core/lazy.py": "",
                      **{f"core/{r}/__init__.py": '"""room"""' for r in ROOMS}, **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_clean_package_passes(tmp_path):
    write(tmp_path, {
        "core/plugin/registry.py": "from core.errors import NNError\n",
        "core/network/assemble.py": "from core.plugin.registry import Registry\n",
        "core/pipeline/run.py": "from core.network import assemble\nfrom .helpers import x\n",
        "core/pipeline/helpers.py": "import core.files.atomic\n",
        "core/files/atomic.py": "from ..errors import NNError\n",
        "core/__init__.py": "from core.pipeline.run import train\n",  # the facade may
    })
    assert violations(tmp_path) == []


@pytest.mark.parametrize("line", [
    "from core.pipeline.run import train",
    "import core.pipeline.run",
    "from core.pipeline import run",
    "from ..pipeline.run import train",
    "def late():\n    from core.pipeline.run import train",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.pipeline.run import train",
])
def test_an_upward_import_fails(tmp_path, line):
    write(tmp_path, {"core/pipeline/run.py": "", "core/network/assemble.py": line + "\n"})
    found = violations(tmp_path)
    assert len(found) == 1
    assert "core.network.assemble (network) imports core.pipeline.run (pipeline): upward" in found[0]


def test_a_circle_inside_one_room_fails(tmp_path):
    write(tmp_path, {
        "core/files/checkpoint.py": "from core.files.model_file import save\n",
        "core/files/model_file.py": "def save():\n    from core.files.result import R\n",
        "core/files/result.py": "from core.files import checkpoint\n",
    })
    assert violations(tmp_path) == [
        "import circle: core.files.checkpoint -> core.files.model_file -> core.files.result"
        " -> core.files.checkpoint"
    ]


@pytest.mark.parametrize("files, expected", [
    ({"core/training/loop.py": "from core import fit\n"}, "imports from the facade `core`"),
    ({"core/data/disk.py": "import plugins.linear\n"}, "core never imports plugins/ or cli.py"),
    ({"core/files/atomic.py": "from cli import main\n"}, "core never imports plugins/ or cli.py"),
    ({"core/__init__.py": "import plugins\n"}, "core never imports plugins/ or cli.py"),
    ({"core/errors.py": "from core.lazy import torch\nfrom core.plugin import registry\n"},
     "core.errors (ground) imports core.plugin.registry (plugin): upward"),
    ({"core/stray.py": ""}, "core.stray is in no room"),
    ({"core/attic/old.py": ""}, "core.attic.old is in no room"),
])
def test_other_breaches_fail(tmp_path, files, expected):
    write(tmp_path, {"core/plugin/registry.py": "", **files})
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def plugin_cross_imports(root: Path) -> list[str]:
    """Every import of one built-in plugin by another (a plugin package may import its own
    modules): they share code through core only."""
    known = modules(root, "plugins")
    return [f"{path.relative_to(root)}:{line}: {name} imports {target}"
            for name, path in known.items()
            for target, line in imports_of(name, path, known)
            if target.split(".")[0] == "plugins" and target.split(".")[:2] != name.split(".")[:2]]


def test_plugins_import_core_and_never_each_other():
    # A built-in plugin is an ordinary plugin: what two of them share (conv2d's and linear's
    # products) lives in core, where a third-party layer can use it too.
    assert plugin_cross_imports(ROOT) == []


def test_a_plugin_importing_another_fails(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "__init__.py").write_text("")
    (tmp_path / "plugins" / "linear.py").write_text("def helper(): pass\n")
    (tmp_path / "plugins" / "conv.py").write_text("from plugins.linear import helper\n")
    assert plugin_cross_imports(tmp_path) == ["plugins/conv.py:1: plugins.conv imports plugins.linear"]
