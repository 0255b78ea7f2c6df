import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import schemas
from flywheel.errors import LakeError
from flywheel.lake import Lake, resolve


def gnss_rows(log_id: str, n: int = 3) -> pa.Table:
    return pa.table(
        {
            "log_id": [log_id] * n,
            "t_ns": list(range(n)),
            "lat": [42.0] * n,
            "lon": [-71.0] * n,
            "alt": [10.0] * n,
        }
    )


def logs_row(log_id: str) -> pa.Table:
    return pa.table(
        {
            "log_id": [log_id],
            "source_uri": ["file:///x"],
            "bytes": [1],
            "message_count": [3],
            "start_ns": [0],
            "end_ns": [2],
            "ingested_at": pa.array([0], schemas.UTC_TS),
        }
    )


def test_write_is_readable_by_any_tool_with_the_contract_glob(tmp_path):
    lake = Lake(tmp_path)
    lake.write("gnss", gnss_rows("a"), name="a")
    import duckdb

    glob = f"{tmp_path}/gnss/**/*.parquet"
    # a connection of its own: the module's default one may hold another test's open result
    count = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
    )
    assert count.fetchone()[0] == 3


def test_same_name_replaces_and_no_temporary_file_remains(tmp_path):
    lake = Lake(tmp_path)
    lake.write("gnss", gnss_rows("a", 3), name="a")
    lake.write("gnss", gnss_rows("a", 5), name="a")
    assert [p.name for p in lake.files("gnss")] == ["a.parquet"]
    assert [p.name for p in (tmp_path / "gnss").iterdir()] == ["a.parquet"]


def test_per_log_rows_are_hidden_until_the_log_is_published(tmp_path):
    lake = Lake(tmp_path)
    lake.write("gnss", gnss_rows("a"), name="a")
    assert lake.connect().execute("SELECT count(*) FROM gnss").fetchone()[0] == 0
    lake.write("logs", logs_row("a"), name="a")
    assert lake.connect().execute("SELECT count(*) FROM gnss").fetchone()[0] == 3


def test_every_contract_table_is_a_view_even_on_a_new_lake(tmp_path):
    con = Lake(tmp_path / "new").connect()
    for table in schemas.TABLES:
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        assert columns[: len(schemas.SCHEMAS[table])] == schemas.SCHEMAS[table].names
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_write_checks_the_schema_and_names_the_column(tmp_path):
    bad = gnss_rows("a").drop_columns(["lat"])
    with pytest.raises(LakeError, match="'lat' is missing"):
        Lake(tmp_path).write("gnss", bad, name="a")
    wrong = gnss_rows("a").set_column(2, "lat", pa.array(["n", "o", "p"]))
    with pytest.raises(LakeError, match="'lat'"):
        Lake(tmp_path).write("gnss", wrong, name="a")
    assert not Lake(tmp_path).files("gnss")


def test_a_writer_killed_mid_write_leaves_nothing_readers_see(tmp_path):
    # a child writes a temporary file and dies before the rename
    code = (
        "import os, pyarrow as pa, pyarrow.parquet as pq;"
        f"pq.write_table(pa.table({{'a': [1]}}), '{tmp_path}/gnss/.x.parquet.' + str(os.getpid())"
        " + '-ab.tmp'); os._exit(9)"
    )
    (tmp_path / "gnss").mkdir()
    subprocess.run([sys.executable, "-c", code], check=False)
    lake = Lake(tmp_path)
    assert lake.files("gnss") == []
    assert lake.connect().execute("SELECT count(*) FROM gnss").fetchone()[0] == 0
    assert lake.clean_temporary() == 1
    assert list((tmp_path / "gnss").iterdir()) == []


def test_clean_temporary_spares_a_live_writer(tmp_path):
    (tmp_path / "gnss").mkdir()
    mine = tmp_path / "gnss" / f".x.parquet.{os.getpid()}-ab.tmp"
    mine.write_bytes(b"partial")
    assert Lake(tmp_path).clean_temporary() == 0
    assert mine.exists()


def test_resolve_order_flag_then_environment_then_toml_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve().root == tmp_path / "lake"
    (tmp_path / "flywheel.toml").write_text('lake = "from-toml"\n')
    assert resolve().root == tmp_path / "from-toml"
    monkeypatch.setenv("FLYWHEEL_LAKE", str(tmp_path / "from-env"))
    assert resolve().root == tmp_path / "from-env"
    assert resolve(tmp_path / "flag").root == tmp_path / "flag"


def test_tables_lists_only_known_tables_with_published_files(tmp_path):
    lake = Lake(tmp_path)
    (tmp_path / "empty").mkdir()
    lake.write("gnss", gnss_rows("a"), name="a")
    lake.write("custom_table", pa.table({"v": [1]}))  # not a table the core declares
    assert lake.tables() == ["gnss"]
    assert lake.unknown_folders() == ["custom_table", "empty"]
    con = lake.connect()
    assert con.sql("SELECT count(*) FROM gnss").fetchall() == [(0,)]  # no logs row yet
    tables = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "custom_table" not in tables


def test_published_files_names_each_logs_published_file_only(tmp_path):
    lake = Lake(tmp_path / "lake")
    for log_id in ("a", "b"):
        lake.write("gnss", gnss_rows(log_id), name=log_id)
    lake.write("logs", logs_row("a"), name="a")  # b is not published
    assert lake.published_files("gnss", ["a", "b", "c"]) == {"a": "gnss/a.parquet"}
    # what the views show: the rows of published logs only
    assert lake.connect().execute("SELECT DISTINCT log_id FROM gnss").fetchall() == [("a",)]


def _age(folder, seconds: float = 60.0) -> None:
    """Make `folder` look unchanged for `seconds`, so its listing is kept (Lake._list)."""
    past = os.stat(folder).st_mtime - seconds
    os.utime(folder, (past, past))


def test_a_kept_listing_still_sees_every_change_any_writer_makes(tmp_path):
    lake = Lake(tmp_path)
    lake.write("logs", logs_row("a"), name="a")
    _age(tmp_path / "logs")
    assert lake.file_stats("logs") == lake.file_stats("logs")  # listed, then kept
    assert [p.name for p in lake.files("logs")] == ["a.parquet"]
    # another process (a fresh Lake) adds, replaces and removes files: each is seen at once
    other = Lake(tmp_path)
    other.write("logs", logs_row("b"), name="b")
    assert [p.name for p in lake.files("logs")] == ["a.parquet", "b.parquet"]
    _age(tmp_path / "logs")
    before = dict((p, size) for p, _, size in lake.file_stats("logs"))
    other.write("logs", pa.concat_tables([logs_row("b")] * 50), name="b")
    after = dict((p, size) for p, _, size in lake.file_stats("logs"))
    b = str(tmp_path / "logs" / "b.parquet")
    assert after[b] > before[b]
    _age(tmp_path / "logs")
    lake.files("logs")
    os.remove(tmp_path / "logs" / "a.parquet")
    assert [p.name for p in lake.files("logs")] == ["b.parquet"]
    # a file in a new subfolder: the subfolder changes its parent's stamp
    _age(tmp_path / "logs")
    lake.files("logs")
    (tmp_path / "logs" / "part").mkdir()
    pq.write_table(logs_row("c"), tmp_path / "logs/part/c.parquet")
    assert "c.parquet" in [p.name for p in lake.files("logs")]
    # and a file written into that (aged) subfolder
    _age(tmp_path / "logs" / "part")
    _age(tmp_path / "logs")
    lake.files("logs")
    pq.write_table(logs_row("d"), tmp_path / "logs/part/d.parquet")
    assert "d.parquet" in [p.name for p in lake.files("logs")]
