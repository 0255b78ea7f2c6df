"""Every query a person types is read-only and bounded (docs/contract.md §11): `mine sql`, `m.sql`,
`where` and trigger expressions refuse writes, file and network access and setting changes,
and a runaway query stops at its limit with a clear error, the lake untouched."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import mining
from flywheel import query
from flywheel.errors import QueryError
from flywheel.query import Limits
from ingest import triggers
from tests.faults.conftest import flywheel

ROOT = Path(__file__).resolve().parents[2]

# {out} is a folder outside the lake: nothing may appear in it
WRITES = [
    "COPY scenes TO '{out}/x.csv'",
    "COPY (SELECT 1) TO '{out}/x.parquet' (FORMAT parquet)",
    "COPY scenes FROM '{out}/x.csv'",
    "EXPORT DATABASE '{out}/db'",
    "ATTACH '{out}/x.duckdb' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA memory_limit = '1TB'",
    "CALL pragma_version()",
    "CREATE TABLE t AS SELECT 1",
    "CREATE OR REPLACE VIEW scenes AS SELECT 1 AS x",
    "INSERT INTO scenes SELECT * FROM scenes",
    "DELETE FROM events",
    "UPDATE scenes SET duration_s = 0",
    "DROP VIEW scenes",
    "SELECT 1; DELETE FROM events",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_parquet('{lake}/scenes/**/*.parquet')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM duckdb_settings()",
    "WITH x AS (SELECT 1) SELECT * FROM x, read_blob('/etc/passwd')",
    "SELECT * FROM main.scenes, other.db.t",
    "EXPLAIN ANALYZE COPY scenes TO '{out}/x.csv'",
    "VACUUM",
    "CHECKPOINT",
]

EIGHT_WAY = "SELECT count(*) FROM " + ", ".join(f"scenes s{i}" for i in range(8))


def state(*roots: Path) -> dict:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_locks" not in p.parts
    }


@pytest.fixture
def outside(tmp_path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "x.csv").write_text("scene_id\nplanted\n")  # what a COPY FROM would read
    return out


@pytest.mark.parametrize("text", WRITES)
def test_writes_and_reads_outside_the_lake_are_refused_everywhere(base_lake, outside, text):
    text = text.format(out=outside, lake=base_lake)
    miner = mining.open(base_lake)
    before = state(base_lake, outside)
    with pytest.raises(QueryError):
        miner.sql(text)
    result = flywheel("mine", "sql", text, "--lake", str(base_lake))
    assert result.returncode in (1, 2), result.stdout
    assert "Traceback" not in result.stderr and "refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # an error and its hint, no dump
    with pytest.raises(QueryError):  # as a trigger condition it is not even one expression
        triggers.check(text)
    assert state(base_lake, outside) == before
    assert miner.sql("SELECT count(*) AS n FROM scenes").n[0] == 72


def test_the_connection_itself_refuses_what_the_check_would(base_lake, outside):
    """The second lock, without the first: text that skipped the check still cannot write,
    read a file, load an extension or unlock the configuration."""
    con = query.connect(mining.open(base_lake).lake, Limits(timeout_s=10, memory="512MB"))
    for text in (
        f"COPY (SELECT 1) TO '{outside}/y.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"ATTACH '{outside}/y.duckdb' AS y",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET memory_limit = '1TB'",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(text)
    assert sorted(p.name for p in outside.iterdir()) == ["x.csv"]
    assert con.execute("SELECT count(*) FROM scenes").fetchall() == [(72,)]


def test_reads_of_every_kind_still_work(base_lake):
    miner = mining.open(base_lake)
    assert miner.sql("DESCRIBE scenes").shape[0] > 10
    assert miner.sql("SUMMARIZE SELECT duration_s FROM scenes").shape[0] == 1
    assert "scenes" in set(miner.sql("SHOW TABLES").name)
    assert miner.sql("EXPLAIN SELECT * FROM scenes").shape[0] >= 1
    joined = miner.sql(
        "WITH s AS (SELECT * FROM scenes) SELECT count(*) AS n FROM s JOIN logs USING (log_id) "
        "WHERE scene_id IN (SELECT scene_id FROM scenes) "
        "AND log_id IN (SELECT range::VARCHAR FROM range(0))"
    )
    assert joined.n[0] == 0


def test_a_runaway_query_stops_at_its_limit(base_lake):
    miner = mining.open(base_lake)
    miner.limits = Limits(timeout_s=1.0, memory="4GB")
    started = time.monotonic()
    with pytest.raises(QueryError, match="query_timeout_s"):
        miner.sql(EIGHT_WAY)
    assert time.monotonic() - started < 30
    miner.limits = Limits(timeout_s=20.0, memory="256MB")
    with pytest.raises(QueryError, match="query_memory"):
        miner.sql("SELECT length(string_agg(repeat('x', 1000000), '')) FROM range(5000)")
    miner.limits = Limits(timeout_s=1.0, memory="4GB")
    scene = miner.sql("SELECT scene_id FROM scenes LIMIT 1").scene_id[0]
    runaway = "(SELECT count(*) FROM " + ", ".join(f"scenes w{i}" for i in range(6)) + ") > 0"
    with pytest.raises(QueryError, match="query_timeout_s"):
        miner.similar(scene, k=3, where=runaway)
    with pytest.raises(QueryError, match="query_timeout_s"):
        miner.rare(k=3, where=runaway)
    assert miner.sql("SELECT count(*) AS n FROM scenes").n[0] == 72  # still usable


def test_limits_come_from_flywheel_toml_and_the_cli_exits_1(base_lake, tmp_path):
    (tmp_path / "flywheel.toml").write_text('[mining]\nquery_timeout_s = 1\nquery_memory = "4GB"\n')
    result = flywheel("mine", "sql", EIGHT_WAY, "--lake", str(base_lake), cwd=tmp_path)
    assert result.returncode == 1
    assert "query_timeout_s" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "flywheel.toml").write_text("[mining]\nquery_timeout_s = -1\n")
    bad = flywheel("mine", "sql", "SELECT 1", "--lake", str(base_lake), cwd=tmp_path)
    assert bad.returncode == 2 and "query_timeout_s" in bad.stderr


def test_ctrl_c_prints_one_line_and_exits_130(base_lake):
    before = state(base_lake)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "mine", "sql", EIGHT_WAY, "--lake", str(base_lake)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(6)  # imports done, the query running
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [err.strip().splitlines()[0]]
    assert "interrupted" in err and "Traceback" not in err
    assert state(base_lake) == before
