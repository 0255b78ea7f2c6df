"""Lineage at scale: `lineage source` and `lineage model` against a naive pandas join, one run.

    .venv/bin/python bench/lineage.py [--scenes 1000000] [--sources 100] [--versions 1000]
                                      [--models 200] [--out bench/out/lineage] [--repeat 5]

The lake, written straight to Parquet through `Lake.write` (the lake's own schemas): `--scenes`
scenes over logs of 500 scenes each, spread over `--sources` sources (one ending within the
warning window); `--versions` dataset versions of 1,000 scenes each, drawn from the lake; label
batches of 1,000 scenes; `--models` models, four in five trained on three dataset versions each,
the rest on five label batches (fixed in `model_inputs`), one in four deployed.

Flywheel: `flywheel.lineage` (DuckDB over the lake's views, a fresh `Lineage` per question, as
the command makes). The baseline: the same answers in pandas, reading the same tables from the
lake with `Lake.read` and merging the edge list (what a notebook user writes), and, for
reference, the merge alone on tables already in memory. Answers are compared before timing.
Prints the median seconds of each and the ratio. Target: each Flywheel question
under 1 s at 1M scenes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from flywheel import events, schemas
from flywheel.lake import Lake
from flywheel.lineage import lineage

SCENES_PER_LOG = 500
SCENES_PER_VERSION = 1000
SCENES_PER_BATCH = 1000
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def build(root: Path, n_scenes: int, n_sources: int, n_versions: int, n_models: int) -> dict:
    rng = np.random.default_rng(7)
    lake = Lake(root)
    today = dt.datetime.now(dt.UTC).date()
    names = [f"src-{i:03d}" for i in range(n_sources)]
    until = [today + dt.timedelta(days=int(d)) for d in rng.integers(5, 900, n_sources)]
    sources = pa.table(
        {
            "name": names,
            "license": [f"license of {n}" for n in names],
            "until": pa.array(until, pa.date32()),
            "uses": [["train", "eval"]] * n_sources,
            "added_at": pa.array([T0] * n_sources, schemas.UTC_TS),
        }
    )
    lake.write("sources", schemas.conform("sources", sources), name="all")
    n_logs = n_scenes // SCENES_PER_LOG
    log_ids = [f"log{i:06d}" for i in range(n_logs)]
    log_source = rng.integers(0, n_sources, n_logs)
    scene_ids = np.array([f"{log}-{k:05d}" for log in log_ids for k in range(SCENES_PER_LOG)])
    scene_log = np.repeat(np.arange(n_logs), SCENES_PER_LOG)
    for i, log in enumerate(log_ids):
        part = slice(i * SCENES_PER_LOG, (i + 1) * SCENES_PER_LOG)
        n = SCENES_PER_LOG
        scenes = {
            "scene_id": scene_ids[part].tolist(),
            "log_id": [log] * n,
            "start_ns": np.arange(n, dtype=np.int64) * 10**10,
            "end_ns": (np.arange(n, dtype=np.int64) + 1) * 10**10,
            "max_speed": np.zeros(n),
            "min_accel": np.zeros(n),
            "min_object_distance": np.zeros(n),
            "n_tracks": np.zeros(n, dtype=np.int64),
            "n_pedestrians": np.zeros(n, dtype=np.int64),
            "n_vehicles": np.zeros(n, dtype=np.int64),
            "tags": pa.array([[]] * n, pa.list_(pa.string())),
            "embedding": pa.array([[0.0, 1.0]] * n, pa.list_(pa.float32())),
            "embedding_version": ["bench"] * n,
        }
        lake.write("scenes", schemas.filled(scenes, schemas.SCHEMAS["scenes"], n), name=log)
        row = {
            "log_id": [log],
            "source_uri": [f"file:///drives/{log}.mcap"],
            "bytes": [1],
            "message_count": [1],
            "start_ns": [0],
            "end_ns": [n * 10**10],
            "ingested_at": pa.array([T0], schemas.UTC_TS),
            "source": [names[log_source[i]]],
        }
        lake.write("logs", schemas.filled(row, schemas.SCHEMAS["logs"], 1), name=log)
    # label batches: consecutive runs of scenes, one vendor each
    n_batches = n_scenes // SCENES_PER_BATCH
    batch_of = np.arange(n_scenes) // SCENES_PER_BATCH
    tasks = pa.table(
        {
            "batch_id": [f"b{b:05d}" for b in batch_of],
            "scene_id": scene_ids.tolist(),
            "vendor": ["simulated" if b % 2 else "label-studio" for b in batch_of],
            "external_id": [str(i) for i in range(n_scenes)],
            "status": ["labeled"] * n_scenes,
            "submitted_at": pa.array([T0] * n_scenes, schemas.UTC_TS),
            "completed_at": pa.array([T0] * n_scenes, schemas.UTC_TS),
        }
    )
    lake.write("tasks", schemas.conform("tasks", tasks), name="all")
    # dataset versions: random scene samples, each row carrying its log and source
    rows = []
    for v in range(n_versions):
        picked = rng.choice(n_scenes, SCENES_PER_VERSION, replace=False)
        rows.append((f"set-{v % 50:02d}", v // 50 + 1, picked))
    dataset_refs = []
    for name, version, picked in rows:
        n = len(picked)
        table = {
            "dataset": [name] * n,
            "version": [version] * n,
            "digest": [f"{name}{version}"] * n,
            "scene_id": scene_ids[picked].tolist(),
            "log_id": [log_ids[j] for j in scene_log[picked]],
            "source": [names[log_source[j]] for j in scene_log[picked]],
            "label": ['[{"value": {"choices": ["car"]}}]'] * n,
            "batch_id": [f"b{b:05d}" for b in batch_of[picked]],
            "vendor": ["simulated"] * n,
            "created_at": pa.array([T0] * n, schemas.UTC_TS),
            "created_by": ["bench"] * n,
        }
        lake.write(
            "datasets",
            schemas.filled(table, schemas.SCHEMAS["datasets"], n),
            name=f"{name}@{version}",
        )
        dataset_refs.append(f"{name}@{version}")
    # models: 4 in 5 on three dataset versions, the rest on five batches (fixed inputs)
    models, inputs = [], []
    for m in range(n_models):
        model = f"model-{m:03d}"
        if m % 5:
            used = sorted(rng.choice(dataset_refs, 3, replace=False).tolist())
            attrs = {"datasets": used, "batches": [], "by": "bench"}
        else:
            picked = sorted(rng.choice(n_batches, 5, replace=False).tolist())
            attrs = {"datasets": [], "batches": [f"b{b:05d}" for b in picked], "by": "bench"}
            for b in picked:
                part = slice(b * SCENES_PER_BATCH, (b + 1) * SCENES_PER_BATCH)
                inputs.append(
                    pd.DataFrame(
                        {
                            "model": model,
                            "batch_id": f"b{b:05d}",
                            "scene_id": scene_ids[part],
                            "log_id": [log_ids[j] for j in scene_log[part]],
                            "source": [names[log_source[j]] for j in scene_log[part]],
                            "vendor": "simulated",
                        }
                    )
                )
        models.append((model, attrs, m % 4 == 0))
    table = pa.Table.from_pandas(pd.concat(inputs), preserve_index=False)
    table = table.append_column("recorded_at", pa.array([T0] * table.num_rows, schemas.UTC_TS))
    lake.write("model_inputs", schemas.conform("model_inputs", table), name="all")
    ids = [m for m, _, _ in models]
    events.record(lake, ids, "trained", at=T0, attrs=[a for _, a, _ in models], name="trained")
    deployed = [m for m, _, d in models if d]
    events.record(lake, deployed, "deployed", at=T0 + dt.timedelta(days=1), name="deployed")
    return {"sources": names, "models": ids}


def naive_tables(root: Path) -> dict[str, pd.DataFrame]:
    lake = Lake(root)
    return {
        t: lake.read(t).to_pandas()
        for t in ("sources", "logs", "datasets", "model_inputs", "events", "tasks", "scenes")
    }


def naive_edges(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    trained = t["events"][t["events"].stage == "trained"]
    rows = []
    for model, attrs in zip(trained["entity_id"], trained["attrs"], strict=True):
        for ref in json.loads(attrs).get("datasets", []):
            rows.append((model, ref))
    named = pd.DataFrame(rows, columns=["model", "ref"])
    d = t["datasets"].assign(ref=t["datasets"].dataset + "@" + t["datasets"].version.astype(str))
    from_datasets = named.merge(d, on="ref")[["model", "ref", "scene_id", "log_id", "source"]]
    from_inputs = t["model_inputs"].assign(ref=None)[
        ["model", "ref", "scene_id", "log_id", "source"]
    ]
    return pd.concat([from_datasets, from_inputs])


def naive_source(t: dict[str, pd.DataFrame], source: str) -> list[str]:
    edges = naive_edges(t)
    return sorted(edges[edges.source == source].model.unique().tolist())


def naive_model(t: dict[str, pd.DataFrame], model: str) -> list[str]:
    edges = naive_edges(t)
    return sorted(edges[edges.model == model].log_id.unique().tolist())


def timed(work, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/out/lineage"))
    args = parser.parse_args()
    console = Console()
    shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    built = build(args.out, args.scenes, args.sources, args.versions, args.models)
    console.print(f"built the lake in {time.perf_counter() - start:.1f} s: {args.out}")
    source, model = built["sources"][3], built["models"][1]
    tables = naive_tables(args.out)

    def fresh(kind: str, key: str):  # what one command does: a new Lineage, one question
        return getattr(lineage(args.out), f"describe_{kind}")(key)

    fly_source, got_source = timed(lambda: fresh("source", source), args.repeat)
    fly_model, got_model = timed(lambda: fresh("model", model), args.repeat)
    # the naive way from the lake: read the tables with pandas, then join; and the join alone
    read_s, want_source = timed(lambda: naive_source(naive_tables(args.out), source), args.repeat)
    read_m, want_model = timed(lambda: naive_model(naive_tables(args.out), model), args.repeat)
    mem_s, _ = timed(lambda: naive_source(tables, source), args.repeat)
    mem_m, _ = timed(lambda: naive_model(tables, model), args.repeat)
    assert [m["model"] for m in got_source["models"]] == want_source, "lineage source differs"
    assert got_model["logs"] == want_model, "lineage model differs"

    table = Table(title=f"lineage over {args.scenes:,} scenes, {args.versions:,} versions")
    head = ("question", "flywheel s", "pandas from the lake s", "ratio", "pandas join alone s")
    for column in (*head, "target"):
        table.add_column(column, justify="right" if column != "question" else "left")
    rows = (
        ("lineage source", fly_source, read_s, mem_s),
        ("lineage model", fly_model, read_m, mem_m),
    )
    for name, fly, naive, alone in rows:
        verdict = "met" if fly < 1 else "MISSED"
        table.add_row(
            name, f"{fly:.3f}", f"{naive:.3f}", f"{naive / fly:.1f}x", f"{alone:.3f}",
            f"<1 s {verdict}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "flywheel: a fresh `flywheel.lineage` per question (lists the lake, makes its views, "
        "answers); pandas: read_parquet of the seven tables lineage reads, then merges; the "
        "join alone is that without the reading"
    )


if __name__ == "__main__":
    main()
