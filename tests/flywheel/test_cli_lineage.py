"""`flywheel source|dataset|lineage`, `ingest --source`, `track trained --dataset` and the
report's license alert, through the command line, with docs/contract.md §7's JSON and exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.faults.conftest import flywheel

TODAY = dt.datetime.now(dt.UTC).date()
SOON = (TODAY + dt.timedelta(days=10)).isoformat()
ENDED = (TODAY - dt.timedelta(days=2)).isoformat()


def ok(*args: str, cwd: Path) -> dict | list:
    done = flywheel(*args, "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three logs: two from `fleet`, one from `partner` (ends in 10 days); all labeled."""
    here = tmp_path_factory.mktemp("cli-lineage")
    (here / "flywheel.toml").write_text(
        'lake = "lake"\n[labeling]\nturnaround_hours = 0.00003\n[ingest]\nsource = "fleet"\n'
    )
    assert (
        flywheel("generate", "drives", "--logs", "3", "--seconds", "20", cwd=here).returncode == 0
    )
    ok("source", "add", "fleet", "--license", "internal", cwd=here)
    ok("source", "add", "partner", "--license", "EULA v2", "--until", SOON, cwd=here)
    ok("source", "add", "old", "--license", "trial", "--until", ENDED, cwd=here)
    drives = sorted((here / "drives").glob("*.mcap"))
    ok("ingest", str(drives[0]), str(drives[1]), cwd=here)  # the default source: fleet
    ok("ingest", str(drives[2]), "--source", "partner", cwd=here)
    ok("mine", "sql", "SELECT scene_id, 1.0 AS score FROM scenes", "--save", "all", cwd=here)
    ok("label", "submit", "--selection", "all", "--vendor", "simulated", cwd=here)
    ok("label", "sync", cwd=here)
    return here


def test_the_contract_json_of_create_show_and_lineage(folder):
    created = ok("dataset", "create", "all", "--selection", "all", cwd=folder)
    assert (created["dataset"], created["version"], created["scenes"]) == ("all", 1, 6)
    assert len(created["digest"]) == 64 and int(created["digest"], 16) >= 0
    again = ok("dataset", "create", "all", "--selection", "all", cwd=folder)
    assert (again["version"], again["digest"]) == (1, created["digest"])
    shown = ok("dataset", "show", "all@1", cwd=folder)
    assert {k: shown[k] for k in ("dataset", "version", "digest", "scenes")} == {
        k: created[k] for k in ("dataset", "version", "digest", "scenes")
    }
    ok("track", "trained", "--model", "det-1", "--dataset", "all@1", "--code", "abc", cwd=folder)
    ok("track", "deployed", "--model", "det-1", cwd=folder)

    model = ok("lineage", "model", "det-1", cwd=folder)
    assert model["model"] == "det-1" and model["datasets"] == ["all@1"]
    assert model["scenes"] == 6 and len(model["logs"]) == 3 and model["vendors"] == ["simulated"]
    assert {s["name"]: s["until"] for s in model["sources"]} == {"fleet": None, "partner": SOON}
    assert model["batches"]  # the batch the labels came from
    source = ok("lineage", "source", "partner", cwd=folder)
    assert source == source | {
        "source": "partner",
        "logs": 1,
        "datasets": ["all@1"],
        "models": [{"model": "det-1", "deployed": True}],
    }
    expiring = ok("lineage", "expiring", "--within", "30", cwd=folder)
    assert [(e["source"], e["models"], e["deployed"]) for e in expiring] == [
        ("old", [], []),
        ("partner", ["det-1"], ["det-1"]),
    ]
    report = ok("report", cwd=folder)
    alert = next(a for a in report["alerts"] if a["id"] == "license:partner")
    assert SOON in alert["title"] and "det-1" in alert["detail"]
    assert alert["command"] == "flywheel lineage source partner"
    exported = ok("dataset", "export", "all@1", "--out", str(folder / "export"), cwd=folder)
    import pyarrow.parquet as pq

    table = pq.read_table(exported["file"])
    assert {"scene_id", "log_id", "source", "label"} <= set(table.column_names)
    assert table.num_rows == 6 and json.loads(table.column("label")[0].as_py())


def test_refusals_and_usage_errors_exit_as_the_contract_says(folder):
    ok("source", "add", "evalonly", "--license", "bench", "--uses", "eval", cwd=folder)
    done = flywheel("ingest", str(folder / "drives"), "--source", "nobody", cwd=folder)
    assert done.returncode == 2 and "known sources:" in done.stderr and "fleet" in done.stderr
    done = flywheel("dataset", "show", "all@99", cwd=folder)
    assert done.returncode == 1 and "all@99" in done.stderr
    logs = ok("mine", "sql", "SELECT log_id FROM logs WHERE source = 'fleet'", cwd=folder)
    ok("source", "assign", "old", "--log", logs[0]["log_id"], cwd=folder)
    done = flywheel("dataset", "create", "refused", "--selection", "all", cwd=folder)
    assert done.returncode == 1
    assert f"old (license ended on {ENDED})" in done.stderr and "Nothing was created" in done.stderr
    assert ok("dataset", "list", cwd=folder) == [
        r for r in ok("dataset", "list", cwd=folder) if r["dataset"] != "refused"
    ]
    ok("source", "assign", "fleet", "--log", logs[0]["log_id"], cwd=folder)
    done = flywheel("export", cwd=folder)
    assert done.returncode == 2
    (folder / "a-file").write_text("x")
    done = flywheel("dataset", "export", "all@1", "--out", str(folder / "a-file"), cwd=folder)
    assert done.returncode == 1 and "not a folder" in done.stderr


def test_revoke_purge_prints_what_went_and_the_models(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("_locks"))
    ok("index", cwd=copy)
    ok("dataset", "create", "all", "--selection", "all", cwd=copy)
    ok("track", "trained", "--model", "det-2", "--dataset", "all@1", cwd=copy)
    revoked = ok("source", "revoke", "partner", "--purge", cwd=copy)
    assert set(revoked) >= {"source", "revoked_at", "purged", "models"}
    assert revoked["purged"]["logs"] == 1 and revoked["purged"]["scenes"] > 0
    assert {m["model"] for m in revoked["models"]} >= {"det-2"}
    assert (
        ok("mine", "sql", "SELECT count(*) AS n FROM logs WHERE source = 'partner'", cwd=copy)[0][
            "n"
        ]
        == 0
    )
    done = flywheel("ingest", str(copy / "drives"), "--source", "partner", cwd=copy)
    assert done.returncode == 1 and "revoked" in done.stderr
    assert ok("lineage", "source", "partner", cwd=copy)["models"]
