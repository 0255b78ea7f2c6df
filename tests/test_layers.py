"""The layout is the architecture: the imports obey the layers the README draws.

    cli/                                   top layer: the command line and the demo
    sim/   serve/                          the synthetic world (plays the car and the vendor);
                                           the web app over the lake (beside sim, not on it)
    ingest/ -> mining/ -> labeling/ -> metrics/      stages, in loop order
    flywheel/                              the core: config, lake, schemas, events, queries

A module may import its own package, the core, and the packages below it (never one beside
it: serve/ does not import sim/); nothing imports the top layer; no package imports another
package's private (underscore) module. Imports inside functions count: a lazy import is still
an edge.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lower rank = lower layer; an import may only point at a lower rank or at its own package
RANKS = {
    "flywheel": 0,
    "ingest": 1,
    "mining": 2,
    "labeling": 3,
    "metrics": 4,
    "sim": 5,
    "serve": 5,
    "cli": 6,
}


def modules() -> list[Path]:
    return sorted(p for package in RANKS for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from labeling import _store` names a private module too
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name[0] == "_"]
    return found


def violations() -> list[str]:
    broken = []
    for path in modules():
        here = module_name(path)
        home = here.split(".")[0]
        for line, target in imports(path):
            parts = target.split(".")
            if parts[0] not in RANKS:
                continue  # the standard library or a dependency
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if parts[0] == "cli" and home != "cli":
                broken.append(f"{where}: nothing imports the top layer")
            elif parts[0] != home and RANKS[parts[0]] > RANKS[home]:
                broken.append(f"{where}: {home} sits below {parts[0]}")
            elif parts[0] != home and RANKS[parts[0]] == RANKS[home]:
                broken.append(f"{where}: {home} sits beside {parts[0]}, not above it")
            elif parts[0] != home and any(p.startswith("_") for p in parts[1:]):
                broken.append(f"{where}: a private module of another package")
    return broken


def test_every_import_obeys_the_layers():
    assert violations() == []


def test_the_rule_catches_a_wrong_edge(tmp_path, monkeypatch):
    # the checker itself must be able to fail: a core module importing a stage is caught
    for package in RANKS:
        (tmp_path / package).mkdir()
    (tmp_path / "flywheel" / "bad.py").write_text("def f():\n    from mining import index\n")
    (tmp_path / "metrics" / "worse.py").write_text("from labeling import _store\nimport cli\n")
    (tmp_path / "sim" / "fine.py").write_text("from ingest import scenes\nfrom . import fine\n")
    (tmp_path / "serve" / "side.py").write_text("from metrics import build\nimport sim\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations()
    assert len(found) == 4, found
    assert any("serve sits beside sim" in f for f in found)
    assert any("flywheel sits below mining" in f for f in found)
    assert any("private module" in f for f in found)
    assert any("top layer" in f for f in found)


@pytest.mark.parametrize("package", sorted(RANKS))
def test_every_layer_exists(package):
    assert (ROOT / package / "__init__.py").is_file()
