"""A lake is a boundary (docs/contract.md §11): folder names Flywheel did not write never become
SQL, a lake's path is never a glob, and `ingest --force` never makes a reader fail."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import mining
from flywheel import lake as lake_module
from flywheel.lake import Lake
from ingest import ingest
from sim import generate
from tests.faults.conftest import Reader, flywheel

# Folder names a stranger can create in a shared lake: each tries to close the view's quoted
# name, run a statement of its own, read or write a file, or render as terminal markup.
HOSTILE = [
    "scenes\" AS SELECT 1; COPY (SELECT 42) TO '{pwned}'; --",
    "x'; COPY (SELECT 42) TO '{pwned}'; --",
    "events\"; ATTACH '{pwned}' AS p; --",
    "[bold red]loud",  # (a folder name holds no slash, so no closing tag)
    "[reverse]x",
    "star*",
    "lake[1]",
    "new\nline",
]


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-drives")
    generate(out, logs=2, seconds=30.0, seed=3)
    return out


@pytest.fixture(scope="module")
def clean_lake(drives, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "lake"
    assert ingest([drives], root).exit_code == 0
    return root


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_locks" not in p.parts
    }


def plant(root: Path, pwned: Path) -> list[str]:
    """Folders with hostile names, each holding a valid Parquet file (a copy of a scenes file)."""
    scenes = next((root / "scenes").rglob("*.parquet"))
    names = []
    for template in HOSTILE:
        name = template.format(pwned=pwned)
        folder = root / name
        folder.mkdir()
        shutil.copy(scenes, folder / "evil.parquet")
        names.append(name)
    return names


def test_hostile_folder_names_are_never_read_nor_run(clean_lake, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(clean_lake, root)
    pwned = Path("pwned.csv")  # relative: a folder name holds no slash; cwd is where it would land
    names = plant(root, pwned)
    lake = Lake(root)
    before = tree(root)
    expected = mining.open(clean_lake).sql("SELECT count(*) AS n FROM scenes").n[0]

    assert sorted(lake.unknown_folders()) == sorted(names)
    assert mining.open(root).sql("SELECT count(*) AS n FROM scenes").n[0] == expected
    con = lake.connect()
    listed = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    views = {r[0] for r in listed}
    assert not views & set(names)

    status = flywheel("status", "--lake", str(root))
    report = flywheel("report", "--lake", str(root), "--out", str(tmp_path / "r.html"))
    mined = flywheel("mine", "sql", "SELECT count(*) AS n FROM scenes", "--lake", str(root))
    for result in (status, report, mined):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert "ignored 8 folder(s)" in status.stderr
    assert "[bold red]loud" in status.stderr  # printed as text, not rendered as markup
    assert str(expected) in mined.stdout
    assert not pwned.exists() and not any(tmp_path.glob("pwned*"))
    after = tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("_reports")} == before


def test_a_table_of_a_name_flywheel_does_not_declare_is_not_queryable(clean_lake, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(clean_lake, root)
    plant(root, Path("pwned.csv"))
    refused = flywheel("mine", "sql", 'SELECT * FROM "star*"', "--lake", str(root))
    assert refused.returncode == 1 and "not a table of the lake" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_lake_path_with_glob_characters_reads_only_itself(drives, tmp_path):
    logs = sorted(drives.glob("*.mcap"))
    mine_ = tmp_path / "runs" / "lake[1]"
    sibling = tmp_path / "runs" / "lake1"  # what `lake[1]` matches as a glob
    other = tmp_path / "runs" / "lake*"
    assert ingest(logs[:1], mine_).exit_code == 0
    assert ingest(logs, sibling).exit_code == 0
    assert ingest(logs, other).exit_code == 0
    for root, n in ((mine_, 1), (sibling, 2), (other, 2)):
        assert mining.open(root).sql("SELECT count(*) AS n FROM logs").n[0] == n
        scenes = Lake(root).connect().execute("SELECT count(DISTINCT log_id) FROM scenes")
        assert scenes.fetchone()[0] == n
    # the contract's glob for other tools is escaped too
    import duckdb

    glob = Lake(mine_).glob("logs")
    assert duckdb.connect().sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall() == [(1,)]
    shown = flywheel("status", "--lake", str(mine_))
    assert shown.returncode == 0 and "lake[1]" in shown.stdout


def test_readers_never_fail_while_ingest_force_replaces_logs(drives, tmp_path, monkeypatch):
    """Each --force rewrites every log with other content (another scene length): readers see
    the old or the new version of a log, never an error and never a mix."""
    root = tmp_path / "lake"
    assert ingest([drives], root, scene_seconds=10.0).exit_code == 0
    with Reader(root) as reader, Reader(root) as other:
        for seconds in (5.0, 10.0, 7.5) * 4 + (10.0,):
            assert ingest([drives], root, scene_seconds=seconds, force=True).exit_code == 0
    assert reader.errors == other.errors == []
    assert reader.reads + other.reads > 10  # the reads overlapped the replacements
    scenes = mining.open(root).sql("SELECT count(*) AS n FROM scenes").n[0]
    assert scenes == 2 * 3  # the last force: two 30 s logs of 10 s scenes
    # superseded generations stay for readers that listed them, then go
    assert len(list((root / "scenes").rglob("*.parquet"))) > 2
    monkeypatch.setattr(lake_module, "RETAIN_NS", 0)
    assert Lake(root).clean_temporary() > 0
    for table in ("logs", "scenes", "ego"):
        assert len(list((root / table).rglob("*.parquet"))) == 2, table
    assert mining.open(root).sql("SELECT count(*) AS n FROM scenes").n[0] == 6
