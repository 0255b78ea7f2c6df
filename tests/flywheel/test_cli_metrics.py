"""`flywheel track` and `flywheel report` through the command line (docs/contract.md §4)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import metrics
from flywheel.lake import Lake
from tests.metrics.builders import add_log, at, batch


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    add_log(lake, "L1", {"a": 0, "b": 0, "c": 1}, ingested_h=2)
    batch(lake, "B1", "acme", 24, {"a": (4, 9), "b": (4, 12)})
    batch(lake, "B2", "acme", 24, {"c": (5, None)})
    return lake


def run(*args: str):
    from cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_track_then_report_json_holds_the_contract_keys(lake, tmp_path):
    root = str(lake.root)
    steps = [
        ("trained", "--batch", "B1", "--at", at(20).isoformat()),
        ("evaluated", "--at", at(22).isoformat(), "--attrs", '{"map": 0.71}'),
        ("deployed", "--at", at(30).isoformat()),
    ]
    for stage, *rest in steps:
        result = run("track", stage, "--model", "det-v1", *rest, "--lake", root)
        assert result.exit_code == 0, result.output
        assert stage in result.stdout
    out = tmp_path / "r.html"
    result = run("report", "--lake", root, "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"stages", "cycle", "wip", "bottleneck", "alerts"} <= set(data)
    for row in data["stages"]:
        assert {"stage", "count", "p50_s", "p90_s", "p99_s"} <= set(row)
    assert {"count", "p50_s", "p90_s"} <= set(data["cycle"])
    assert data["cycle"]["count"] == 2 and data["cycle"]["p50_s"] == pytest.approx(30 * 3600)
    assert data["wip"]["submitted"] == 1  # c, still at the vendor
    assert isinstance(data["bottleneck"], str) and data["bottleneck"] in metrics.STAGES
    # the SLA of B2's open task ran out long ago (the lake is from 2026-11-02)
    assert [a["id"] for a in data["alerts"]] == ["sla:acme"]
    assert out.is_file() and data["html"] == str(out)


def test_report_prints_a_summary_and_lists_an_alert_entities(lake):
    result = run("report", "--lake", str(lake.root))
    assert result.exit_code == 0, result.output
    assert "The bottleneck is" in result.stdout and "latency per stage" in result.stdout
    assert "flywheel report --alert sla:acme" in result.stdout
    assert (lake.root / "_reports" / "report.html").is_file()
    listed = run("report", "--lake", str(lake.root), "--alert", "sla:acme", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert [r["scene_id"] for r in json.loads(listed.stdout)] == ["c"]
    unknown = run("report", "--lake", str(lake.root), "--alert", "bogus")
    assert unknown.exit_code == 1 and "no alert 'bogus'" in unknown.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["trained", "--model", "m"], "needs what model 'm' was trained on"),
        (["trained", "--model", "m", "--batch", "NOPE"], "unknown label batch(es) NOPE"),
        (["evaluated", "--model", "never-trained"], "has no training record"),
        (["trained", "--model", "m", "--batch", "B1", "--at", "yesterday"], "not an ISO 8601"),
        (["trained", "--model", "m", "--batch", "B1", "--attrs", "[1]"], "JSON object"),
    ],
)
def test_track_refuses_what_would_corrupt_the_lineage(lake, args, message):
    result = run("track", *args, "--lake", str(lake.root))
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not lake.files("events") or "m" not in {
        r[0]
        for r in lake.connect()
        .execute("SELECT entity_id FROM events WHERE stage IN ('trained', 'evaluated')")
        .fetchall()
    }


def test_tracking_a_stage_again_replaces_it_and_order_is_checked(lake):
    root = str(lake.root)
    assert (
        run(
            "track",
            "trained",
            "--model",
            "m",
            "--batch",
            "B1",
            "--at",
            at(20).isoformat(),
            "--lake",
            root,
        ).exit_code
        == 0
    )
    early = run("track", "deployed", "--model", "m", "--at", at(10).isoformat(), "--lake", root)
    assert early.exit_code == 1 and "before it was trained" in early.stderr
    # a corrected training time replaces the first record: the model is trained once
    assert (
        run(
            "track",
            "trained",
            "--model",
            "m",
            "--batch",
            "B1",
            "--batch",
            "B2",
            "--at",
            at(25).isoformat(),
            "--lake",
            root,
        ).exit_code
        == 0
    )
    (model,) = metrics.build(lake, now=at(40)).lineage
    assert model["batches"] == ["B1", "B2"] and model["trained_at"].startswith("2026-11-03T01")
