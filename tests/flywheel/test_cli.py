"""The command line: help, usage errors, exit codes, JSON output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import cli


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.mark.parametrize(
    "command",
    ["generate", "ingest", "status", "demo", "config", "index",
     "mine sql", "mine similar", "mine rare", "mine diverse"],
)  # fmt: skip
def test_every_help_ends_with_a_runnable_example(run, command):
    result = run(*command.split(), "--help")
    assert result.exit_code == 0
    assert f"Example: flywheel {command}" in result.output


def test_usage_errors_exit_2(run, tmp_path):
    assert run("ingest").exit_code == 2
    missing = run("ingest", str(tmp_path / "nope"), "--lake", str(tmp_path / "lake"))
    assert missing.exit_code == 2
    assert "no such file" in missing.output
    bad_map = run("ingest", str(tmp_path), "--topic-map", "/odom=steering")
    assert bad_map.exit_code == 2
    assert "TOPIC=KIND" in bad_map.output
    both = run("ingest", str(tmp_path), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert both.exit_code == 2


def test_config_error_exits_2_and_says_where(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flywheel.toml").write_text("[ingest]\nworkers = 'lots'\n")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 2
    assert "flywheel.toml" in result.output


def test_generate_ingest_status_json(run, tmp_path):
    drives, lake = tmp_path / "drives", tmp_path / "lake"
    assert run("generate", str(drives), "--logs", "1", "--seconds", "20").exit_code == 0
    result = run("ingest", str(drives), "--lake", str(lake), "--format", "json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["ingested"] == 1 and summary["quarantined"] == 0
    status = json.loads(run("status", "--lake", str(lake), "--format", "json").stdout)
    assert status["logs"]["count"] == 1
    assert status["tables"]["scenes"] == summary["scenes"] > 0
    assert status["index"] is None
    assert "index: none yet" in run("status", "--lake", str(lake)).stdout
    assert run("index", "--lake", str(lake), "--shard-size", "2").exit_code == 0
    status = json.loads(run("status", "--lake", str(lake), "--format", "json").stdout)
    index = status["index"]
    assert index["scenes"] == summary["scenes"] and index["not_indexed"] == 0
    assert index["shards"] == -(-summary["scenes"] // 2) and index["complete"]
    assert f"{index['shards']} shard(s)" in run("status", "--lake", str(lake)).stdout
    again = run("ingest", str(drives), "--lake", str(lake))
    assert again.exit_code == 0
    assert "1 already in the lake" in again.output


def test_rejected_files_exit_1_and_are_named(run, tmp_path):
    bad = tmp_path / "in" / "broken.mcap"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 40)
    result = run("ingest", str(bad.parent), "--lake", str(tmp_path / "lake"))
    assert result.exit_code == 1
    assert "broken.mcap" in result.output
