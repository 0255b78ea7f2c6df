"""SIGKILL during `source revoke --purge`: readers never fail, and a rerun ends in the same lake
as a purge that was never interrupted (every table, row for row; the source's revocation
keeps its first time)."""

from __future__ import annotations

import random
import shutil
import time

from flywheel import schemas, sources
from flywheel.lake import Lake
from tests.faults.conftest import Reader, run, start
from tests.flywheel.test_purge import purge_lake


def state(root) -> dict[str, list]:
    lake = Lake(root)
    out = {}
    for table in schemas.TABLES:
        data = lake.read(table).to_pylist()
        if table == "sources":  # when the purge finished differs from run to run
            data = [{k: v for k, v in r.items() if k != "purged_at"} for r in data]
        out[table] = sorted(data, key=repr)
    return out


def test_a_killed_purge_reruns_to_the_same_lake(tmp_path, faults):
    built = purge_lake(tmp_path / "built")
    sources.revoke(built, "partner")  # revoked once, so every copy shares the time
    clean = tmp_path / "clean"
    shutil.copytree(built, clean)
    duration = run("purge", clean, "partner")
    expected = state(clean)
    assert not any(r["source"] == "partner" for r in expected["logs"])
    rng = random.Random(11)
    for attempt in range(4):
        lake = tmp_path / f"killed-{attempt}"
        shutil.copytree(built, lake)
        with Reader(lake) as reader:
            process = start("purge", lake, "partner")
            time.sleep(rng.uniform(0, duration))
            process.kill()
            process.wait()
        assert reader.errors == []
        sources.revoke(lake, "partner", purge=True)
        same = state(lake) == expected
        faults.record("SIGKILL during source revoke --purge", lost=int(not same))
        assert state(lake) == expected
        assert not Lake(lake).exists("logs", "x") and not list((lake / "_purge").glob("*"))
