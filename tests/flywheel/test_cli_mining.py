"""`flywheel index` and `flywheel mine …`: the mining API behind a shell, same answers."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import mining
from cli import cli
from ingest import ingest
from sim import generate


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("mine")
    generate(root / "drives", logs=2, seconds=60, seed=3)
    ingest([root / "drives"], root / "lake")
    return root / "lake"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_index_then_similar_matches_the_api(lake):
    built = run("index", "--lake", str(lake), "--format", "json")
    assert built.exit_code == 0
    manifest = json.loads(built.stdout)
    assert manifest["kind"] == "flat" and manifest["count"] > 0
    again = run("index", "--lake", str(lake))  # nothing new: the shard is kept, not rebuilt
    assert again.exit_code == 0 and "0 built, 1 kept" in again.stdout
    scene = mining.open(lake).sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 1")
    scene_id = scene["scene_id"][0]
    result = run("mine", "similar", scene_id, "--k", "4", "--lake", str(lake), "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    expected = mining.open(lake).similar(scene_id, k=4)
    assert [r["scene_id"] for r in rows] == list(expected["scene_id"])
    assert scene_id not in {r["scene_id"] for r in rows}


def test_sql_csv_and_a_refused_where(lake):
    result = run(
        "mine",
        "sql",
        "SELECT scene_id, tags FROM scenes LIMIT 3",
        "--lake",
        str(lake),
        "--format",
        "csv",
    )
    assert result.exit_code == 0
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 3
    refused = run("mine", "rare", "--where", "true; DROP TABLE scenes", "--lake", str(lake))
    assert refused.exit_code == 1
    assert "not one expression" in refused.output


def test_save_replace_and_diverse_from_a_selection(lake):
    first = run("mine", "rare", "--k", "6", "--save", "cli-rare", "--lake", str(lake))
    assert first.exit_code == 0
    again = run("mine", "rare", "--k", "6", "--save", "cli-rare", "--lake", str(lake))
    assert again.exit_code == 1 and "--replace" in again.output
    replaced = run(
        "mine", "rare", "--k", "5", "--save", "cli-rare", "--replace", "--lake", str(lake)
    )
    assert replaced.exit_code == 0
    assert len(mining.open(lake).selection("cli-rare")) == 5
    picked = run(
        "mine", "diverse", "--from", "cli-rare", "--n", "3", "--lake", str(lake), "--format", "json"
    )
    assert picked.exit_code == 0
    ids = [r["scene_id"] for r in json.loads(picked.stdout)]
    assert len(ids) == 3 and set(ids) <= set(mining.open(lake).selection("cli-rare")["scene_id"])
