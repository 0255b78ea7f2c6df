"""`where` accepts one expression over scenes and refuses everything else, changing nothing."""

from __future__ import annotations

import hashlib

import pytest

import mining
from flywheel.errors import QueryError

REFUSED = {
    "1=1; DROP TABLE scenes": "not one expression",
    "scene_id IN (SELECT * FROM read_csv('/etc/passwd'))": "read_csv",
    "(SELECT count(*) FROM logs) > 0": "'logs'",
    "CREATE TABLE x AS SELECT 1": "not one expression",
    "1) UNION SELECT 1 FROM logs WHERE (1": "adds a clause",
    "true) LIMIT (1": "adds a clause",
    "(SELECT count(*) FROM duckdb_settings()) > 0": "duckdb_settings",
    "length(read_text('/etc/passwd')) > 0": "failed",
    "(DELETE FROM scenes) IS NULL": "not one expression",
    "no_such_column > 1": "no_such_column",
    "": "empty",
}


def lake_state(lake) -> dict:
    return {
        str(p.relative_to(lake.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.root.rglob("*"))
        if p.is_file() and "_locks" not in p.parts
    }


@pytest.mark.parametrize("where", list(REFUSED))
def test_refused_and_nothing_changes(lake_copy, where):
    miner = mining.open(lake_copy)
    scene = miner.sql("SELECT scene_id FROM scenes LIMIT 1").scene_id[0]
    miner.similar(scene, k=3)  # builds the index first, so the state below includes it
    before = lake_state(lake_copy)
    with pytest.raises(QueryError, match=REFUSED[where]):
        miner.similar(scene, k=3, where=where)
    with pytest.raises(QueryError):
        miner.rare(k=3, where=where)
    assert lake_state(lake_copy) == before
    assert miner.sql("SELECT count(*) AS n FROM scenes").n[0] == 72


def test_accepted_expressions():
    assert mining.check_where(" n_pedestrians > 0 ") == "n_pedestrians > 0"
    assert mining.check_where("scene_id IN (SELECT scene_id FROM scenes WHERE max_speed > 3)")
    assert mining.check_where("list_contains(tags, 'night') AND NOT is_night IS NULL")
