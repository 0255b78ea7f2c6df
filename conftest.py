"""The names the doctests use (`pytest --doctest-modules`): a small real lake, built once.

Each doctest gets its own copy of that lake, so an example may change it, and runs in its own
empty folder. The names:

- `lake`: the copy's path; 2 generated logs x 30 s ingested (6 scenes), selection ``brakes``
  (every scene, by hardest braking) and selection ``first`` (its first 3 scenes) submitted to
  the simulated vendor as batch `batch`, labeled and synced;
- `vendor`: the copy's simulated vendor; `batch`: that batch's id;
- `scene`: a scene id of the lake; `drives`: the generated logs; `log_file`: the first one;
- `empty_lake`: the path of a lake with nothing in it yet; `tmp`: the doctest's own folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def doctest_world(tmp_path_factory) -> dict:
    import mining
    from ingest import ingest
    from labeling import SimulatedVendor, submit, sync
    from sim import generate

    folder = tmp_path_factory.mktemp("doctest")
    drives = folder / "drives"
    generate(drives, logs=2, seconds=30, seed=1)
    lake = folder / "lake"
    assert ingest([drives], lake).exit_code == 0
    m = mining.open(lake)
    scenes = m.sql("SELECT scene_id, -min_accel AS score FROM scenes ORDER BY score DESC")
    m.save("brakes", scenes)
    m.save("first", scenes.sort_values("scene_id").head(3))
    vendor = SimulatedVendor.for_lake(lake)
    (batch,) = [b.batch_id for b in submit(lake, "first", vendor).batches]
    vendor.advance(dt.timedelta(days=3))
    sync(lake, vendor)
    return {
        "drives": drives,
        "lake": lake,
        "batch": batch,
        "scene": str(scenes["scene_id"].iloc[0]),
    }


@pytest.fixture(autouse=True)
def _doctest_names(request, tmp_path, monkeypatch):
    """Fill `doctest_namespace` for a doctest (other tests never build the lake)."""
    if not isinstance(request.node, DoctestItem):
        return
    from labeling import SimulatedVendor

    world = request.getfixturevalue("doctest_world")
    names = request.getfixturevalue("doctest_namespace")
    for name in ("FLYWHEEL_LAKE", "FLYWHEEL_WORKERS", "FLYWHEEL_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"], lake, ignore=shutil.ignore_patterns("_locks"))
    names.update(
        lake=str(lake),
        vendor=SimulatedVendor.for_lake(lake),
        batch=world["batch"],
        scene=world["scene"],
        drives=str(world["drives"]),
        log_file=str(sorted(Path(world["drives"]).glob("*.mcap"))[0]),
        empty_lake=str(tmp_path / "empty-lake"),
        tmp=tmp_path,
    )
