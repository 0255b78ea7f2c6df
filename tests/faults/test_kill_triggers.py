"""SIGKILL during `trigger run`: no partial hits are ever visible, and a rerun completes the
work exactly once (the same hits as a run that was never interrupted)."""

from __future__ import annotations

import random
import shutil
import time

from flywheel.lake import Lake
from ingest import triggers
from tests.faults.conftest import Reader, run, start

DEFINED = {"brake": "accel < -2", "slow": "speed < 3", "near": "nearest_m < 20"}


def hits(lake) -> list[tuple]:
    return sorted(
        (name, h.log_id, h.start_ns, h.end_ns, tuple(h.scene_ids))
        for name in DEFINED
        for h in triggers.hits(lake, name).itertuples()
    )


def visible_without_a_run(lake) -> int:
    """Hits files on disk whose run never published, seen through the `trigger_hits` view."""
    import pyarrow.parquet as pq

    published = set(Lake(lake).read("trigger_runs")["run_id"].to_pylist())
    on_disk = {
        run for f in Lake(lake).files("trigger_hits")
        for run in pq.read_table(f, columns=["run_id"])["run_id"].to_pylist()
    }  # fmt: skip
    view = Lake(lake).connect().execute("SELECT DISTINCT run_id FROM trigger_hits").fetchall()
    return len({r[0] for r in view} & (on_disk - published))


def test_a_killed_trigger_run_leaves_no_partial_hits_and_a_rerun_completes_it(
    selection_lake, tmp_path, faults
):
    clean = tmp_path / "clean"
    shutil.copytree(selection_lake, clean)
    for name, when in DEFINED.items():
        triggers.define(clean, name, when)
    duration = run("triggers", clean)
    expected = hits(clean)
    assert expected
    rng = random.Random(5)
    for attempt in range(4):
        lake = tmp_path / f"killed-{attempt}"
        shutil.copytree(selection_lake, lake)
        for name, when in DEFINED.items():
            triggers.define(lake, name, when)
        with Reader(lake) as reader:
            process = start("triggers", lake)
            time.sleep(rng.uniform(0, duration))
            process.kill()
            process.wait()
        assert reader.errors == []
        # hits files a dead run wrote are never shown, by the API nor by the lake's view
        assert visible_without_a_run(lake) == 0
        partial = hits(lake)
        assert set(partial) <= set(expected)
        triggers.run(lake)
        assert hits(lake) == expected
        runs = (
            Lake(lake)
            .connect()
            .execute(
                'SELECT count(*), count(DISTINCT ("trigger", version, log_id)) FROM trigger_runs'
            )
        )
        total, distinct = runs.fetchone()
        faults.record("SIGKILL during trigger run", lost=int(total != distinct))
        assert total == distinct  # each (trigger, version, log) evaluated exactly once
        assert triggers.run(lake) == {name: 0 for name in DEFINED}
