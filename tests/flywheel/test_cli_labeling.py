"""`flywheel label …` with the simulated vendor: submit once, approve, sync, status."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner

import mining
from cli import cli
from ingest import ingest
from labeling import SimulatedVendor
from sim import generate


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_submit_skip_approve_sync_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # flywheel.toml: the simulated vendor labels in a second
    (tmp_path / "flywheel.toml").write_text("[labeling]\nturnaround_hours = 0.00003\n")
    lake = str(tmp_path / "lake")
    generate(tmp_path / "drives", logs=1, seconds=60, seed=4)
    ingest([tmp_path / "drives"], lake)
    m = mining.open(lake)
    m.save("batch", m.rare(k=5))

    first = run(
        "label",
        "submit",
        "--selection",
        "batch",
        "--vendor",
        "simulated",
        "--batch-size",
        "2",
        "--approval-threshold",
        "0.1",
        "--lake",
        lake,
        "--format",
        "json",
    )
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["scenes"] == 5 and len(summary["batches"]) == 3
    waiting = summary["pending_approval"]
    assert len(waiting) == 2  # two batches of 2 cost 0.16 > 0.1; the batch of 1 went out

    again = json.loads(
        run(
            "label",
            "submit",
            "--selection",
            "batch",
            "--vendor",
            "simulated",
            "--lake",
            lake,
            "--format",
            "json",
        ).stdout
    )
    assert again["batches"] == [] and again["skipped"] == 5

    for batch_id in waiting:
        assert run("label", "approve", batch_id, "--lake", lake).exit_code == 0
    too_dear = run(
        "label",
        "submit",
        "--selection",
        "batch",
        "--vendor",
        "simulated",
        "--relabel",
        "--max-cost",
        "0.01",
        "--lake",
        lake,
    )
    assert too_dear.exit_code == 1 and "0.01" in too_dear.output

    SimulatedVendor.for_lake(lake).advance(dt.timedelta(hours=1))  # its clock, seen by the CLI
    synced = run("label", "sync", "--lake", lake, "--format", "json")
    assert synced.exit_code == 0
    assert json.loads(synced.stdout)[0]["labeled"] == 5
    status = json.loads(run("label", "status", "--lake", lake, "--format", "json").stdout)
    assert sum(b["labeled"] for b in status["batches"]) == 5
    assert {b["state"] for b in status["batches"]} == {"submitted"}
    labels = m.sql("SELECT count(*) AS n, count(DISTINCT scene_id) AS s FROM labels")
    assert (labels["n"][0], labels["s"][0]) == (5, 5)


def test_label_studio_without_its_settings_names_both_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    result = run(
        "label",
        "submit",
        "--selection",
        "x",
        "--vendor",
        "label-studio",
        "--lake",
        str(tmp_path / "lake"),
    )
    assert result.exit_code == 2
    assert "LABEL_STUDIO_URL" in result.output and "LABEL_STUDIO_API_KEY" in result.output
