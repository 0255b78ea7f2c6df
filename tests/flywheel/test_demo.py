"""`flywheel demo`: generate, ingest, summarise, on the default settings."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cli import cli


def test_demo_runs_the_loop_and_finds_the_planted_events(tmp_path):
    lake = tmp_path / "lake"
    result = CliRunner().invoke(cli, ["demo", "--lake", str(lake)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "generator truth vs scene tags" in result.stdout
    assert "mining vs truth" in result.stdout
    assert "labeling batches" in result.stdout
    import json

    from cli.demo import planted_events_found
    from flywheel.lake import Lake

    truth = json.loads((lake / "_demo" / "logs" / "truth.json").read_text())
    found = planted_events_found(Lake(lake), truth)
    planted = sum(n for n, _ in found.values())
    hits = sum(hit for _, hit in found.values())
    assert planted == len(truth["events"]) >= 8
    assert hits / planted >= 0.8, found  # tags recover most planted events
    assert found["hard_brake"][1] == found["hard_brake"][0]
    import mining

    demo = mining.open(lake).selection("demo")
    assert 1 <= len(demo) <= 8 and demo["scene_id"].is_unique
    import labeling

    batches = labeling.status(lake)
    batches = batches[batches["selection"] == "demo"]
    assert batches["tasks"].sum() == len(demo)  # every demo scene went to the vendor once
    # the loop closes: a model trained on the demo's batches is deployed, and the report says so
    report_path = Path(result.stdout.strip().splitlines()[-1].split("report:")[-1].strip())
    assert report_path.is_file() and report_path.read_text().startswith("<!doctype html>")
    import metrics

    report = metrics.build(lake)
    (model,) = [m for m in report.lineage if m["model_id"] == "demo-model-1"]
    assert model["batches"] == sorted(batches["batch_id"]) and model["deployed_at"]
    cycle = metrics.cycle(lake).set_index("scene_id").loc[list(demo["scene_id"])]
    assert (cycle["last_stage"] == "deployed").all()
    assert len(report.cycle_weekly) >= 4  # weeks of history: the trend has points
    # a second demo on the same lake reuses the logs: nothing is ingested twice
    again = CliRunner().invoke(cli, ["demo", "--lake", str(lake)], catch_exceptions=False)
    assert again.exit_code == 0
    # the demo ingests its logs under two sources, two each: every one is already there
    assert again.stdout.count("2 already in the lake") == 2
    assert metrics.build(lake).scenes == report.scenes  # the history is not written twice
