"""edge/'s folders are its architecture: each layer imports only the layers below it.

commands -> daemon -> echo, model, devices -> io -> dsp -> errors. Packages on one floor do not import each
other (the model runner knows no ALSA; the devices know no model), and nothing imports upwards. Every import
counts, the lazy ones inside functions too, because a lazy upward import is still an upward dependency.
"""
import ast
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[1] / "edge"

# floor of each sub-package (and of the two top-level modules); higher floors may import lower ones
FLOORS = {"commands": 5, "daemon": 4, "echo": 3, "model": 3, "devices": 3, "io": 2, "dsp": 1, "errors": 0}
TOP_LEVEL_MODULES_AT_MOST = 12


def edge_imports(path):
    """(line, imported edge sub-package) for every import of an edge module in ``path``, relative ones resolved."""
    package = path.relative_to(EDGE.parent).with_suffix("").parts[:-1]      # ("edge", "daemon") for loop.py
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # "from edge import io" and "from . import pipewire" name sub-packages in their alias list
            names = [f"{module}.{alias.name}" for alias in node.names] if not node.module or module == "edge" \
                else [module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "edge" and len(parts) > 1 and parts[1] in FLOORS:
                found.append((node.lineno, parts[1]))
    return found


def layer_of(path):
    parts = path.relative_to(EDGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def violations():
    for path in sorted(EDGE.rglob("*.py")):
        own = layer_of(path)
        if own not in FLOORS:                                   # edge/__init__.py and __main__.py sit above all
            continue
        for line, imported in edge_imports(path):
            if imported != own and FLOORS[imported] >= FLOORS[own]:
                yield f"{path.relative_to(EDGE.parent)}:{line} ({own}, floor {FLOORS[own]}) imports " \
                      f"edge.{imported} (floor {FLOORS[imported]})"


def test_each_layer_imports_only_the_layers_below_it():
    assert list(violations()) == []


def test_every_sub_package_has_a_floor():
    packages = {path.name for path in EDGE.iterdir() if (path / "__init__.py").exists() or
                (path.is_dir() and any(path.glob("*.py")))}
    assert packages <= set(FLOORS), f"give {sorted(packages - set(FLOORS))} a floor in FLOORS"


def test_the_top_level_stays_small():
    modules = [path.name for path in EDGE.glob("*.py")] + \
              [path.name for path in EDGE.iterdir() if path.is_dir() and path.name != "__pycache__"]
    assert len(modules) <= TOP_LEVEL_MODULES_AT_MOST, sorted(modules)


@pytest.mark.parametrize("source, expected", [
    ("from edge.commands.run import check\n", [(1, "commands")]),
    ("from . import config\n", [(1, "daemon")]),                 # written inside edge/daemon/
    ("from ..model import engine\n", [(1, "model")]),
    ("from edge import io, dsp\n", [(1, "io"), (1, "dsp")]),
    ("def f():\n    import edge.commands.cli\n", [(2, "commands")]),
    ("import numpy\nfrom edge.errors import ModelError\n", [(2, "errors")]),
])
def test_the_scan_sees_every_kind_of_import(tmp_path, monkeypatch, source, expected):
    """Without this, a scan that missed relative or lazy imports would pass any layout."""
    monkeypatch.setattr(f"{__name__}.EDGE", tmp_path / "edge")
    (tmp_path / "edge" / "daemon").mkdir(parents=True)
    sample = tmp_path / "edge" / "daemon" / "sample.py"
    sample.write_text(source)
    assert edge_imports(sample) == expected


def test_an_upward_import_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.EDGE", tmp_path / "edge")
    (tmp_path / "edge" / "dsp").mkdir(parents=True)
    (tmp_path / "edge" / "dsp" / "leak.py").write_text("from edge.model.engine import ModelRunner\n")
    assert list(violations()) == ["edge/dsp/leak.py:1 (dsp, floor 1) imports edge.model (floor 3)"]
