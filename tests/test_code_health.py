"""No module reaches into another package's private names (an upgrade or a refactor there would break it silently)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "training", "converter", "evaluation", "tests")
#: The deliberate exceptions, each checked where it is used (none at present).
ALLOWED = set()


def _sources():
    files = [path for package in PACKAGES for path in (REPO / package).rglob("*.py")]
    return files + [REPO / "scripts" / "arm64-check", REPO / "scripts" / "arm64" / "helpers.py"]


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _top(module, level, path):
    """The top-level package an import refers to (a relative import stays in the file's own package)."""
    return path.relative_to(REPO).parts[0] if level else module.split(".")[0]


def private_reaches(path):
    """``(line, dotted name)`` for each private name this file takes from a package other than its own."""
    own = path.relative_to(REPO).parts[0]
    tree = ast.parse(path.read_text(), str(path))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            top = _top(node.module or "", node.level, path)
            for alias in node.names:
                if _private(alias.name) and top != own:
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
                modules[alias.asname or alias.name] = (top, f"{node.module}.{alias.name}")
            parts = (node.module or "").split(".")
            if any(_private(part) for part in parts) and top != own and not node.level:
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                          if not _private(alias.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = (alias.name.split(".")[0], alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr)
                and node.value.id in modules
                and modules[node.value.id][0] != own):
            found.append((node.lineno, f"{modules[node.value.id][1]}.{node.attr}"))
    return found


def test_no_module_takes_a_private_name_from_another_package():
    reaches = [(str(path.relative_to(REPO)), line, name) for path in _sources()
               for line, name in private_reaches(path)]
    unexpected = [reach for reach in reaches if (reach[0], reach[2]) not in ALLOWED]
    assert unexpected == []
    assert {(path, name) for path, _, name in reaches} == ALLOWED        # the exception is still needed


def test_the_scan_sees_each_kind_of_reach(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "converter").mkdir()
    sample = tmp_path / "converter" / "sample.py"
    sample.write_text("from training.train import _shards\nfrom edge.model import engine\nfrom . import _own\n"
                      "import edge.commands.run as commands\n"
                      "engine._heads\ncommands._alsa_config_path()\nrunner._private_but_not_a_module\n")
    assert [name for _, name in private_reaches(sample)] == [
        "training.train._shards", "edge.model.engine._heads", "edge.commands.run._alsa_config_path"]
