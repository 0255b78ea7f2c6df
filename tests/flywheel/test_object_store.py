"""A lake on an object store: `--lake s3://bucket/prefix` against a local S3 server (moto).

The server is moto in server mode on loopback, started here as its own process (moto is a test
dependency, so `make test` installs it); credentials and the endpoint reach Flywheel only
through the standard AWS environment variables.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest
from sim import generate
from tests.faults.conftest import ROOT, Reader, flywheel, run, start
from tests.faults.test_kill import INGEST_TABLES, snapshot

STAMPS = ("ingested_at", "at")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.fail("moto_server is missing: `make test` installs the test extras")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"moto did not start: see {log.name}")
            time.sleep(0.1)
    yield url
    process.kill()
    process.wait()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket; the environment points Flywheel (and its subprocesses) at the server."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import fsspec

    bucket = f"lake-{random.randrange(1 << 30):x}"
    fsspec.filesystem("s3", use_listings_cache=False).mkdir(bucket)
    return f"s3://{bucket}/prefix/lake"


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s3-drives")
    generate(out, logs=3, seconds=40.0, seed=11)
    return out


@pytest.fixture(scope="module")
def local(drives, tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("local") / "lake")
    ingest([drives], lake)
    return lake


def test_ingest_into_s3_gives_the_rows_of_a_local_ingest(s3, drives, local):
    result = flywheel("ingest", str(drives), "--lake", s3, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert snapshot(s3, INGEST_TABLES, STAMPS) == snapshot(local.root, INGEST_TABLES, STAMPS)
    again = flywheel("ingest", str(drives), "--lake", s3)
    assert again.returncode == 0 and "3 already in the lake" in again.stdout


def test_a_killed_ingest_on_s3_leaves_it_readable_and_a_rerun_completes_it(s3, drives, local):
    duration = run("ingest", f"{s3}-clean", drives)  # the work alone, imports excluded
    rng = random.Random(7)
    for attempt in range(3):
        lake = f"{s3}-{attempt}"
        with Reader(lake) as reader:
            process = start("ingest", lake, drives)
            time.sleep(rng.uniform(0, duration))
            process.kill()
            process.wait()
        assert reader.errors == [] and process.returncode == -9
        assert flywheel("ingest", str(drives), "--lake", lake).returncode == 0
        assert snapshot(lake, INGEST_TABLES, STAMPS) == snapshot(local.root, INGEST_TABLES, STAMPS)


def test_index_mine_and_report_on_s3(s3, drives, local, tmp_path, monkeypatch):
    import mining

    assert flywheel("ingest", str(drives), "--lake", s3).returncode == 0
    index = ("index", "--lake", s3, "--kind", "hnsw", "--shard-size", "5", "--format", "json")
    built = flywheel(*index)
    assert built.returncode == 0, built.stderr
    manifest = json.loads(built.stdout)
    assert manifest["kind"] == "hnsw" and len(manifest["shards"]) > 1
    named = {n for shard in manifest["shards"] for n in shard["files"].values()}
    assert set(Lake(s3).listdir("_index")) == {"manifest.json", *named}
    again = json.loads(flywheel(*index).stdout)  # nothing changed: every shard is kept
    assert (again["shards_built"], again["shards_kept"]) == (0, len(manifest["shards"]))
    seed = mining.open(local).sql("SELECT scene_id FROM scenes ORDER BY scene_id").scene_id[0]
    on_s3 = flywheel(
        "mine", "similar", seed, "--k", "5", "--lake", s3, "--format", "json", "--save", "near"
    )
    assert on_s3.returncode == 0, on_s3.stderr
    expected = list(mining.open(local).similar(seed, k=5)["scene_id"])
    assert [r["scene_id"] for r in json.loads(on_s3.stdout)] == expected
    assert list(mining.open(s3).rare(k=3)["scene_id"]) == list(
        mining.open(local).rare(k=3)["scene_id"]
    )
    # two machines submit the same selection at once: the lease lock lets one in at a time,
    # so the second finds the first's batches and sends nothing again
    submit = ("label", "submit", "--selection", "near", "--vendor", "simulated", "--lake", s3)
    both = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cli", *submit, "--batch-size=2", "--format=json"],
            env=machine(tmp_path, name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    }
    skipped = {}
    for name, process in both.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        skipped[name] = json.loads(out)["skipped"]
    assert sorted(skipped.values()) == [0, 5]
    tasks = Lake(s3).connect().execute("SELECT count(*), count(DISTINCT scene_id) FROM tasks")
    assert tasks.fetchone() == (5, 5)
    # the simulated vendor keeps its state on the machine that used it: carry on from there
    submitter = min(skipped, key=skipped.get)
    monkeypatch.setenv("XDG_CACHE_HOME", machine(tmp_path, submitter)["XDG_CACHE_HOME"])
    assert flywheel("label", "sync", "--lake", s3).returncode == 0
    again = flywheel(
        "label",
        "submit",
        "--selection",
        "near",
        "--vendor",
        "simulated",
        "--lake",
        s3,
        "--format",
        "json",
    )
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 5  # never twice
    tasks = Lake(s3).connect().execute("SELECT count(*), count(DISTINCT scene_id) FROM tasks")
    assert tasks.fetchone() == (5, 5)
    report = flywheel("report", "--lake", s3, "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    counts = {s["stage"]: s["count"] for s in data["stages"]}
    assert counts["ingested"] == 12 and counts["mined"] == 5 and counts["submitted"] == 5
    assert data["html"] == f"{s3}/_reports/report.html"
    assert Lake(s3).read_text("_reports/report.html").startswith("<!doctype html>")


def machine(tmp_path: Path, name: str, **env: str) -> dict:
    """The environment of another machine: its own cache folder (file locks, downloads)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CACHE_HOME": str(tmp_path / f"machine-{name}"),
        **env,
    }


HOLD = """
import sys, time
from flywheel.lake import Lake
with Lake(sys.argv[1]).lock("labeling-simulated"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print("released", time.time(), flush=True)
"""


def hold(lake: str, env: dict, seconds: float) -> subprocess.Popen:
    """Another machine takes the lock and holds it for `seconds`; returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, lake, str(seconds)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


def test_a_lock_holds_across_machines_and_is_renewed(s3, tmp_path, monkeypatch, capsys):
    # a 1 s lease held for 3 s: only its renewals keep the other machine out
    monkeypatch.setenv("FLYWHEEL_LOCK_LEASE_SECONDS", "1")
    holder = hold(s3, machine(tmp_path, "a"), 3)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-b"))
    with Lake(s3).lock("labeling-simulated"):
        acquired = time.time()
    released = float(holder.stdout.readline().split()[1])
    assert holder.wait(timeout=30) == 0 and acquired >= released
    assert "waiting for the lock" in capsys.readouterr().err
    assert Lake(s3).listdir("_locks") == []  # a released lease is deleted


def test_a_killed_holder_on_this_host_does_not_block_the_rerun(s3, tmp_path, monkeypatch):
    holder = hold(s3, machine(tmp_path, "a"), 600)
    holder.kill()
    holder.wait()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-b"))
    started = time.monotonic()
    with Lake(s3).lock("labeling-simulated"):
        pass
    assert time.monotonic() - started < 10  # its process is gone: not the 60 s lease


def test_a_lease_whose_holder_stopped_renewing_is_taken_over(s3, capsys):
    import fsspec

    fs = fsspec.filesystem("s3", use_listings_cache=False)
    key = f"{s3.removeprefix('s3://')}/_locks/labeling-simulated.lock"
    fs.pipe(key, json.dumps({"owner": "another-host:1:gone", "seconds": 1}).encode())
    started = time.monotonic()
    with Lake(s3).lock("labeling-simulated"):
        assert json.loads(fs.cat(key))["owner"] != "another-host:1:gone"
    assert time.monotonic() - started < 10
    assert "held by another-host:1:gone" in capsys.readouterr().err
    assert not fs.exists(key)


def test_hostile_prefixes_in_a_bucket_are_never_read_nor_run(s3, drives, local):
    """A stranger with write access to the bucket adds prefixes named to break out of a view's
    quoted name; readers ignore them (docs/contract.md §11) and nothing runs."""
    import fsspec

    import mining

    assert flywheel("ingest", str(drives), "--lake", s3).returncode == 0
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    found = fs.find(s3.removeprefix("s3://") + "/scenes")
    scenes = next(k for k in found if k.endswith(".parquet"))
    hostile = [
        "scenes\" AS SELECT 1; COPY (SELECT 42) TO 'pwned.csv'; --",
        "x'; COPY (SELECT 42) TO 'pwned.csv'; --",
        "[bold]loud",
        "lake*",
    ]
    for name in hostile:
        fs.copy(scenes, f"{s3.removeprefix('s3://')}/{name}/evil.parquet")
    assert sorted(Lake(s3).unknown_folders()) == sorted(hostile)
    expected = mining.open(local).sql("SELECT count(*) AS n FROM scenes").n[0]
    assert mining.open(s3).sql("SELECT count(*) AS n FROM scenes").n[0] == expected
    status = flywheel("status", "--lake", s3)
    assert status.returncode == 0 and "[bold]loud" in status.stderr
    assert not Path("pwned.csv").exists()


def test_a_purge_on_s3_deletes_what_it_deletes_locally(s3, drives, tmp_path):
    """The same lake built locally and on S3, the same source purged: the same rows remain,
    the index is brought up to date, the lineage records stay."""
    from flywheel import schemas
    from flywheel.lineage import lineage

    logs = sorted(drives.glob("*.mcap"))
    lakes = {"local": str(tmp_path / "lake"), "s3": s3}
    for lake in lakes.values():
        for name in ("fleet", "partner"):
            assert flywheel("source", "add", name, "--license", "x", "--lake", lake).returncode == 0
        for name, part in (("fleet", logs[:2]), ("partner", logs[2:])):
            done = flywheel("ingest", *map(str, part), "--source", name, "--lake", lake)
            assert done.returncode == 0, done.stderr
        query = "SELECT scene_id, 1.0 AS score FROM scenes ORDER BY scene_id"
        assert flywheel("mine", "sql", query, "--save", "all", "--lake", lake).returncode == 0
        assert flywheel("index", "--lake", lake, "--kind", "flat").returncode == 0
        done = flywheel(
            "source", "revoke", "partner", "--purge", "--lake", lake, "--format", "json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["purged"]["logs"] == 1

    def tables(lake):
        out = {}
        for table in ("logs", "ego", "gnss", "objects", "scenes", "selections", "events"):
            rows = Lake(lake).read(table).to_pylist()
            drop = {"ingested_at", "at", "created_at", "source_uri"}
            out[table] = sorted(repr({k: v for k, v in r.items() if k not in drop}) for r in rows)
        return out

    local, remote = tables(lakes["local"]), tables(lakes["s3"])
    assert local == remote
    assert local["logs"] and all("partner" not in r for r in local["logs"])
    assert not Lake(s3).listdir("_purge")
    assert lineage(s3).describe_source("partner")["logs"] == 0
    assert schemas.UNASSIGNED not in {r["source"] for r in Lake(s3).read("logs").to_pylist()}
    similar = flywheel("mine", "rare", "--k", "3", "--lake", s3, "--format", "json")
    assert similar.returncode == 0 and len(json.loads(similar.stdout)) == 3
