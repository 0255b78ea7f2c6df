"""Labeling against a real Label Studio: bulk submission and sync, in one run.

    .venv/bin/python bench/labeling.py [--tasks 10000] [--annotate N] [--threads 4]

Starts Label Studio 1.23.2 (the venv of tests/labeling/label_studio_server.py, started by its
`LabelStudioServer` helper on a free loopback port with a known token) on a fresh data dir
under --out, and always stops it at the end, errors included.

Data: a synthetic lake. N scenes are written straight to the `scenes` table with `Lake.write`
(ids, 100 per log, 10 s windows, a few tags, counts, random unit embeddings with the project's
FeatureEmbedder version and dim), then the `logs` rows that publish them, and saved as one
selection with `mining`; no drive log is generated or ingested, since only the selection's
rows and metadata matter to labeling. The
bench then goes through the project's own entry points, as the CLI would:

1. bulk: `labeling.submit(lake, selection, LabelStudioVendor)`, batches of 1,000 = one
   `POST /api/projects/ID/import` each, outbox writes included; baseline: one
   `POST /api/tasks` per task (same task data, a separate project) on a sample, extrapolated
   to N from its mean per-task time. Target: bulk >= 50x faster.
2. `labeling.sync` once (nothing labeled yet), then again with nothing changed. Target < 1 s.
3. annotate tasks as annotators would (`POST /api/tasks/ID/annotations/`, one per task, with
   --threads bounded loopback workers), then the sync that pulls them (incremental: one listing
   with the annotations in it) and a full re-sync (`full=True`, from the beginning: one export
   snapshot, the project being mostly labeled; see docs/labeling.md). Target: full sync < 5 s;
   the lake's `labels` count must equal the annotations made.
4. naive listing baseline: `GET /api/tasks?project=ID&page_size=1000` with the default fields
   (which hold no annotations), all pages.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import importlib.util
import json
import shutil
import sys
import threading
import time
from pathlib import Path

# this script is named like the package it measures: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import pyarrow as pa
import requests
from rich.console import Console
from rich.table import Table

import labeling
import mining
from flywheel.lake import Lake
from ingest.embed import FeatureEmbedder
from ingest.scenes import TAGS
from labeling.vendors.label_studio import LabelStudioVendor

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO, TARGET_NOOP_S, TARGET_FULL_S = 50.0, 1.0, 5.0
SELECTION = "bench"
BATCH = 1000

err = Console(stderr=True)
out = Console(width=150)


def log(message: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def mark(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]MISSED[/red]"


def server_module():
    """tests/labeling/label_studio_server.py, by path (tests is not an installed package)."""
    path = REPO / "tests" / "labeling" / "label_studio_server.py"
    spec = importlib.util.spec_from_file_location("label_studio_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- data ---------------------------------------------------------------------------------------
def write_lake(root: Path, n: int, seed: int = 0) -> Lake:
    """N synthetic scenes in `scenes`, saved as selection SELECTION (score = hardest braking)."""
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root)
    rng = np.random.default_rng(seed)
    dim = FeatureEmbedder.dim
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tags = [[t for t in TAGS if rng.random() < 0.15] for _ in range(n)]
    start = 1_767_225_600 * 10**9 + np.arange(n, dtype=np.int64) * 10**10  # 2026-01-01, 10 s
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    table = pa.table(
        {
            "scene_id": pa.array([f"bench-{i:08d}" for i in range(n)]),
            "log_id": pa.array([f"log-{i // 100:05d}" for i in range(n)]),
            "start_ns": pa.array(start),
            "end_ns": pa.array(start + 10**10),
            "max_speed": pa.array(rng.uniform(0, 30, n)),
            "min_accel": pa.array(rng.uniform(-8, 0, n)),
            "min_object_distance": pa.array(rng.uniform(0.5, 50, n)),
            "n_tracks": pa.array(rng.integers(0, 40, n)),
            "n_pedestrians": pa.array(rng.integers(0, 6, n)),
            "n_vehicles": pa.array(rng.integers(0, 30, n)),
            "tags": pa.array(tags, pa.list_(pa.string())),
            "embedding": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel())),
            "embedding_version": pa.array([FeatureEmbedder.version] * n),
        }
    )
    lake.write("scenes", table, name="part-000")
    log_ids = sorted(set(table.column("log_id").to_pylist()))
    firsts = [int(start[i * 100]) for i in range(len(log_ids))]
    logs = pa.table(
        {
            "log_id": pa.array(log_ids),
            "source_uri": pa.array([f"synthetic://{x}" for x in log_ids]),
            "bytes": pa.array([0] * len(log_ids), pa.int64()),
            "message_count": pa.array([0] * len(log_ids), pa.int64()),
            "start_ns": pa.array(firsts, pa.int64()),
            "end_ns": pa.array([f + 100 * 10**10 for f in firsts], pa.int64()),
            "ingested_at": pa.array([dt.datetime.now(dt.UTC)] * len(log_ids)),
        }
    )
    lake.write("logs", logs, name="logs")  # last: the `logs` rows publish the scenes
    m = mining.open(lake)
    m.save(SELECTION, m.sql("SELECT scene_id, -min_accel AS score FROM scenes"))
    return lake


# -- measurements -------------------------------------------------------------------------------
def baseline_submit(url: str, token: str, lake: Lake, sample: int) -> list[float]:
    """One POST /api/tasks per task, in a separate project; per-task seconds."""
    other = LabelStudioVendor(url, token, project_title="bench one-per-task")
    project = int(other.ensure_project())
    frame = mining.open(lake).selection(SELECTION).head(sample)
    session = requests.Session()
    headers = {"Authorization": f"Token {token}"}
    times = []
    for i, row in enumerate(frame.to_dict("records")):
        data = {
            "scene_id": row["scene_id"],
            "batch_id": "baseline",
            "log_id": row["log_id"],
            "tags_text": ", ".join(row["tags"]) or "no tags",
            "description": f"10 s of log {row['log_id']}",
            "start": str(row["start"]),
            "end": "",
        }
        started = time.perf_counter()
        r = session.post(
            f"{url}/api/tasks",
            json={"project": project, "data": data},
            headers=headers,
            timeout=30,
        )
        times.append(time.perf_counter() - started)
        if r.status_code != 201:
            raise RuntimeError(f"baseline POST /api/tasks answered {r.status_code}: {r.text[:200]}")
        if (i + 1) % 50 == 0:
            log(f"  baseline {i + 1}/{sample}")
    return times


def annotate(url: str, token: str, task_ids: list[int], threads: int) -> tuple[int, int, float]:
    """POST one annotation per task from `threads` workers; (made, failed, seconds)."""
    local = threading.local()
    headers = {"Authorization": f"Token {token}"}
    done = [0]
    lock = threading.Lock()

    def one(task_id: int) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        choice = TAGS[task_id % len(TAGS)]
        body = {
            "result": [
                {
                    "from_name": "scenario",
                    "to_name": "description",
                    "type": "choices",
                    "value": {"choices": [choice]},
                },
                {
                    "from_name": "note",
                    "to_name": "description",
                    "type": "textarea",
                    "value": {"text": [f"bench annotation of task {task_id}"]},
                },
            ],
            "lead_time": 3.5,
        }
        for attempt in range(5):  # SQLite under concurrent writers: retry what is transient
            try:
                r = session.post(
                    f"{url}/api/tasks/{task_id}/annotations/",
                    json=body,
                    headers=headers,
                    timeout=60,
                )
            except requests.RequestException:
                time.sleep(0.2 * 2**attempt)
                continue
            if r.status_code == 201:
                break
            if r.status_code < 500 and r.status_code != 429:
                return False
            time.sleep(0.2 * 2**attempt)
        else:
            return False
        with lock:
            done[0] += 1
            if done[0] % 500 == 0:
                log(f"  annotated {done[0]}/{len(task_ids)}")
        return True

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, task_ids))
    seconds = time.perf_counter() - started
    return sum(results), len(results) - sum(results), seconds


def naive_listing(url: str, token: str, project: str) -> tuple[int, float]:
    """Every task with the default fields via /api/tasks, 1,000 a page: (tasks, seconds)."""
    session = requests.Session()
    headers = {"Authorization": f"Token {token}"}
    started = time.perf_counter()
    seen, page = 0, 1
    while True:
        r = session.get(
            f"{url}/api/tasks",
            params={"project": project, "page": page, "page_size": 1000},
            headers=headers,
            timeout=300,
        )
        if r.status_code == 404:
            break
        r.raise_for_status()
        body = r.json()
        tasks = body.get("tasks", [])
        seen += len(tasks)
        if not tasks or seen >= int(body.get("total", 0)):
            break
        page += 1
    return seen, time.perf_counter() - started


def counts(lake: Lake) -> dict[str, int]:
    con = lake.connect()
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tasks", "labels")}


# -- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--baseline-sample", type=int, default=200)
    parser.add_argument("--annotate", type=int, default=None, help="tasks to annotate (all)")
    parser.add_argument("--threads", type=int, default=4, help="annotating workers (loopback)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "labeling")
    args = parser.parse_args()
    n = args.tasks

    srv = server_module()
    exe = srv.ensure_venv()
    data_dir = args.out / "label-studio"
    shutil.rmtree(data_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)

    log(f"building a synthetic lake of {n:,} scenes")
    lake, lake_s = timed(write_lake, args.out / "lake", n)
    log(f"  {lake_s:.1f} s")

    server = srv.LabelStudioServer(data_dir, exe)
    log("starting Label Studio (fresh data dir: migrations take ~35 s)")
    _, start_s = timed(server.start, 300)
    log(f"  {server.url} answered after {start_s:.1f} s")
    rows: list[tuple[str, str, str, str]] = []
    try:
        url, token = server.url, server.token
        vendor = LabelStudioVendor(url, token, chunk_size=BATCH)
        vendor.ensure_project()

        # 1. bulk vs one request per task
        log(f"1. labeling.submit: {n:,} tasks in batches of {BATCH}")
        summary, bulk_s = timed(labeling.submit, lake, SELECTION, vendor, batch_size=BATCH)
        submitted = sum(b.submitted for b in summary.batches)
        assert submitted == n, f"submitted {submitted} of {n}"
        sample = min(args.baseline_sample, n)
        log(f"   baseline: one POST /api/tasks per task, {sample} tasks")
        per_task = baseline_submit(url, token, lake, sample)
        per_task_s = float(np.mean(per_task))
        one_by_one_s = per_task_s * n
        ratio = one_by_one_s / bulk_s
        rows += [
            (
                f"bulk submit, {n:,} tasks (labeling.submit)",
                f"{bulk_s:.2f} s ({n / bulk_s:,.0f} tasks/s)",
                "",
                "",
            ),
            (
                f"one POST per task, {sample} measured",
                f"{per_task_s * 1000:.1f} ms/task (p50 {np.median(per_task) * 1000:.1f}, "
                f"p99 {np.percentile(per_task, 99) * 1000:.1f})",
                "",
                "",
            ),
            (
                f"one POST per task, extrapolated to {n:,}",
                f"{one_by_one_s:.1f} s",
                "",
                "",
            ),
            ("bulk speedup", f"{ratio:.0f}x", f">= {TARGET_RATIO:g}x", mark(ratio >= TARGET_RATIO)),
        ]

        # 2. sync, then sync again with nothing changed
        log("2. first sync (nothing labeled), then a sync with nothing changed")
        first, first_s = timed(labeling.sync, lake, vendor)
        noop, noop_s = timed(labeling.sync, lake, vendor)
        rows += [
            (
                f"first sync ({first.changes:,} changes, no labels)",
                f"{first_s:.2f} s",
                "",
                "",
            ),
            (
                f"sync, nothing changed ({noop.changes} changes)",
                f"{noop_s:.3f} s",
                f"< {TARGET_NOOP_S:g} s",
                mark(noop_s < TARGET_NOOP_S),
            ),
        ]

        # 3. annotate, then sync them in
        task_ids = sorted(int(i) for i in labeling.batches(lake)["external_id"])
        if args.annotate is not None:
            task_ids = task_ids[: args.annotate]
        log(f"3. annotating {len(task_ids):,} tasks, {args.threads} threads")
        made, failed, annotate_s = annotate(url, token, task_ids, args.threads)
        log(f"   {made:,} made, {failed} failed in {annotate_s:.0f} s")
        incr, incr_s = timed(labeling.sync, lake, vendor)
        after_incr = counts(lake)
        full, full_s = timed(labeling.sync, lake, vendor, full=True)
        after_full = counts(lake)
        ok_count = after_full["labels"] == made and after_incr["labels"] == made
        rows += [
            (
                f"annotate {len(task_ids):,} tasks via API ({args.threads} threads)",
                f"{annotate_s:.0f} s ({annotate_s / max(made, 1) * 1000:.1f} ms each, "
                f"{made:,} made, {failed} failed)",
                "",
                "",
            ),
            (
                f"sync pulling the annotations ({incr.changes:,} changes, "
                f"{incr.labeled:,} newly labeled)",
                f"{incr_s:.2f} s",
                "",
                "",
            ),
            (
                f"full sync (full=True), {full.changes:,} tasks, {made:,} annotations",
                f"{full_s:.2f} s",
                f"< {TARGET_FULL_S:g} s",
                mark(full_s < TARGET_FULL_S),
            ),
            (
                "lake labels = annotations made",
                f"{after_full['labels']:,} labels, {after_full['tasks']:,} tasks; {made:,} made",
                "equal",
                mark(ok_count),
            ),
        ]

        # 4. the naive sync: every task with every field
        log("4. naive listing: /api/tasks, default fields, page_size 1000")
        listed, naive_s = naive_listing(url, token, vendor.ensure_project())
        rows.append(
            (
                f"naive listing: {listed:,} tasks, default fields (no annotations)",
                f"{naive_s:.2f} s ({naive_s / full_s:.1f}x the full sync)",
                "",
                "",
            )
        )
    finally:
        log("stopping Label Studio")
        server.stop()

    table = Table(title=f"Labeling against Label Studio 1.23.2 ({server.url}, {n:,} tasks)")
    for column in ("measure", "result", "target", ""):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print(
        f"lake {lake_s:.1f} s to build (synthetic scenes + selection); Label Studio answered "
        f"after {start_s:.1f} s; " + json.dumps({"batches": len(summary.batches)})
    )


if __name__ == "__main__":
    main()
