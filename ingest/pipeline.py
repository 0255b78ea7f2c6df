"""Ingest: source files in, lake tables out, each log exactly once.

One log is one unit of work (`ingest_file`): hash the file, take the log's lock, decode, build
scenes and embeddings, write the per-log tables, then publish the `logs` row. Files run in
parallel on Dask (`workers` local processes, or an existing cluster at `scheduler`); each task
writes its own files, so rows are identical whatever the parallelism.

>>> ingest([drives], lake=empty_lake, workers=2).exit_code
0
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from flywheel import events, schemas
from flywheel.display import html_table
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.sources import UNASSIGNED, for_ingest

LOG_SUFFIXES = (".mcap", ".bag", ".db3")
WORKER_MODULES = (
    "ingest.pipeline", "ingest.readers", "ingest.scenes", "ingest.signals", "ingest.embed"
)  # fmt: skip
ROSBAG2_METADATA = "metadata.yaml"
LOG_ID_LENGTH = 20  # hex digits of the sha256 kept as the id: 80 bits, collisions negligible


@dataclass(frozen=True)
class IngestOptions:
    scene_seconds: float = 10.0
    force: bool = False
    topic_map: Mapping[str, str] | None = None
    embedder: str | None = None
    source: str | None = None  # recorded on every log; None: unassigned (kept on --force)


@dataclass
class FileResult:
    """What happened to one source: ingested, replaced, skipped, salvaged or quarantined."""

    source_uri: str
    status: str
    log_id: str | None = None
    bytes: int = 0
    message_count: int = 0
    n_scenes: int = 0
    seconds: float = 0.0
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    expected_messages: int | None = None  # what the file says it holds; None when nothing says
    complete: bool = True  # False when part of the file could not be read (see `reason`)
    tables: dict[str, str] = field(default_factory=dict)  # topic -> the table it went into

    @property
    def rejected(self) -> bool:
        return self.status in ("quarantined", "salvaged")


@dataclass
class IngestSummary:
    results: list[FileResult]
    seconds: float
    triggers: dict[str, int] = field(default_factory=dict)  # hits per trigger on the added logs
    source: str = "unassigned"  # the source recorded on the logs this run added
    warnings: list[str] = field(default_factory=list)  # for people: e.g. an ended license

    @property
    def exit_code(self) -> int:
        """0 when everything ingested, 1 when some input was rejected (docs/contract.md §4)."""
        return 1 if any(r.rejected for r in self.results) else 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 3),
            "files": len(self.results),
            "ingested": self.count("ingested") + self.count("replaced"),
            "skipped": self.count("skipped"),
            "salvaged": self.count("salvaged"),
            "quarantined": self.count("quarantined"),
            "bytes": sum(r.bytes for r in self.results),
            "messages": sum(r.message_count for r in self.results),
            "scenes": sum(r.n_scenes for r in self.results),
            "results": [asdict(r) for r in self.results],
            "triggers": dict(self.triggers),
            "source": self.source,
            "warnings": list(self.warnings),
        }

    def _rows(self) -> list[tuple[str, object]]:
        d = self.as_dict()
        keys = ("files", "ingested", "skipped", "salvaged", "quarantined", "scenes", "messages")
        rows: list[tuple[str, object]] = [(k, d[k]) for k in keys]
        rows += [("bytes", f"{d['bytes']:,}"), ("seconds", d["seconds"]), ("source", self.source)]
        rows += [(f"trigger {name}", hits) for name, hits in self.triggers.items()]
        return rows + [("warning", w) for w in self.warnings]

    def __str__(self) -> str:
        d = self.as_dict()
        lines = [
            f"ingested {d['ingested']} of {d['files']} files in {d['seconds']:.1f} s "
            f"({d['skipped']} skipped, {d['salvaged']} salvaged, {d['quarantined']} quarantined)",
            f"{d['scenes']} scenes, {d['messages']:,} messages, {d['bytes']:,} bytes; "
            f"source {self.source}",
        ]
        lines += [f"rejected {r.source_uri}: {r.reason}" for r in self.results if r.rejected]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def _repr_html_(self) -> str:
        return html_table("ingest", self._rows())


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Sources under `paths`: files as given, folders searched recursively for logs.

    In a folder, files ending in .mcap, .bag or .db3 are logs and a folder holding
    metadata.yaml is one rosbag2 log; other files there (a README, truth.json) are not
    logs and are left alone. A file named explicitly is always tried. Special files (FIFOs,
    sockets, devices) and paths that cannot be read are left out; `survey` says which.

    >>> [path.name for path in discover([drives])]  # truth.json beside them is not a log
    ['drive_0000.mcap', 'drive_0001.mcap']
    """
    return survey(paths)[0]


def survey(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(sources, skipped): `discover`'s sources and each path skipped, with why.

    Never opens a file: a FIFO would block the run, so only its type is looked at (stat,
    which follows a symbolic link; a link to nothing is skipped too).
    """
    found: dict[Path, None] = {}
    skipped: dict[Path, str] = {}

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or ".").absolute()
        skipped.setdefault(where, f"cannot be read ({error.strerror or error})")

    for raw in paths:
        path = Path(raw)
        if not os.path.lexists(path):
            raise InputError(f"{raw}: no such file or folder", path=str(raw))
        what = _special(path)
        if what is not None:
            skipped[path.absolute()] = what
            continue
        if _is_rosbag2(path, unreadable) or not path.is_dir():
            found[path.absolute()] = None
            continue
        for folder, subfolders, files in os.walk(path, onerror=unreadable):
            here = Path(folder)
            subfolders.sort()
            for sub in list(subfolders):
                if _is_rosbag2(here / sub, unreadable):
                    found[(here / sub).absolute()] = None
                    subfolders.remove(sub)
            for name in sorted(files):
                if not name.endswith(LOG_SUFFIXES) or name.startswith("."):
                    continue
                what = _special(here / name)
                if what is None:
                    found[(here / name).absolute()] = None
                else:
                    skipped[(here / name).absolute()] = what
    return list(found), sorted(skipped.items())


def _special(path: Path) -> str | None:
    """Why `path` cannot be a log file or folder (a FIFO, a dangling link, ...), else None."""
    from ingest.readers._io import kind_of

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing (its target does not exist)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    what = kind_of(mode)
    return None if what in (None, "a folder") else f"{what}, not a log file"


def _is_rosbag2(path: Path, unreadable: Callable[[OSError], None]) -> bool:
    try:
        return (path / ROSBAG2_METADATA).is_file()
    except OSError as exc:  # an unreadable folder: Path.is_file raises PermissionError
        unreadable(exc)
        return False


def content_hash(path: Path) -> tuple[str, int]:
    """sha256 of the file (or of every file of a rosbag2 folder) and the byte count.

    Only regular files are read (a FIFO in a rosbag2 folder would block the read forever).
    """
    from ingest.readers._io import open_regular

    digest = hashlib.sha256()
    members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    size = 0
    for member in members:
        if path.is_dir():
            digest.update(str(member.relative_to(path)).encode())
        try:
            fd = open_regular(member)
        except InputError as exc:
            raise OSError(exc.message) from exc
        with open(fd, "rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


@functools.cache
def _embedder(spec: str | None):
    from ingest.embed import load_embedder

    return load_embedder(spec)


def ingest_file(root: str, source: str, options: IngestOptions) -> FileResult:
    """Ingest one source into the lake at `root`; safe in any process, any number of times."""
    from ingest.embed import add_embedding
    from ingest.readers import read_log
    from ingest.scenes import build_scenes
    from ingest.signals import frame_table

    started = time.perf_counter()
    lake = Lake(root)
    path = Path(source)
    uri = path.absolute().as_uri()
    try:
        sha, size = content_hash(path)
    except OSError as exc:
        reason = f"cannot read the file: {exc.strerror or exc}"
        return _quarantine(lake, uri, None, 0, reason, started)
    log_id = sha[:LOG_ID_LENGTH]
    result = FileResult(source_uri=uri, status="ingested", log_id=log_id, bytes=size)

    with lake.lock(f"log-{log_id}"):
        if lake.exists("logs", log_id) and not options.force:
            result.status = "skipped"
            result.reason = "already ingested (same content); rerun with --force to replace it"
            result.seconds = time.perf_counter() - started
            return result
        replacing = lake.exists("logs", log_id)
        source = options.source
        if replacing and source is None:  # a re-ingest keeps the source the log was given
            previous = lake.read_file("logs", log_id)
            if previous is not None and "source" in previous.column_names:
                source = previous.column("source")[0].as_py()
        try:
            log = read_log(path, topic_map=options.topic_map)
        except InputError as exc:
            return _quarantine(lake, uri, sha, size, exc.message, started, log_id)
        except Exception as exc:  # a bug or an input we never saw: keep going with the rest
            reason = f"unexpected {type(exc).__name__} while decoding ({exc}); please report it"
            return _quarantine(lake, uri, sha, size, reason, started, log_id)

        embedder = _embedder(options.embedder)
        try:
            scenes = build_scenes(
                log_id, log.ego, log.objects, log.gnss, log.camera, options.scene_seconds
            )
        except Exception as exc:  # a bug, or values we never imagined: the other files go on
            reason = (
                f"unexpected {type(exc).__name__} while building scenes ({exc}); please report it"
            )
            return _quarantine(lake, uri, sha, size, reason, started, log_id)
        log_rows = {"ego": log.ego, "objects": log.objects, "gnss": log.gnss, "imu": log.imu}
        scenes = add_embedding(scenes, embedder, log_rows)
        tables = {
            "ego": log.ego,
            "gnss": log.gnss,
            "imu": log.imu,
            "objects": log.objects,
            "scenes": scenes,
        }
        tables = {
            name: schemas.conform(name, _with_log_id(table, log_id))
            for name, table in tables.items()
            if table is not None and table.num_rows
        }
        if "ego" in tables:
            try:  # the triggers' per-sample frame, built once here rather than at every run
                tables["signals"] = frame_table(log_id, tables["ego"], tables.get("objects"))
            except Exception as exc:  # a bug, or values we never imagined: the others go on
                reason = f"unexpected {type(exc).__name__} while building the signal frame ({exc})"
                return _quarantine(lake, uri, sha, size, f"{reason}; please report it", started,
                                   log_id)  # fmt: skip
        for name in schemas.PER_LOG_TABLES:
            if name in tables:
                lake.write(name, tables[name], name=log_id)
            else:
                lake.remove(name, log_id)

        ingested_at = events.now()
        notes = list(log.warnings)
        if not log.complete:
            notes.insert(0, log.truncated)
        events.record(
            lake,
            [log_id],
            "ingested",
            at=ingested_at,
            attrs={"source_uri": uri, "n_scenes": scenes.num_rows},
            name=f"ingested-{log_id}",
        )
        if not log.complete:  # what landed is in the lake; the quarantine row says what did not
            _write_quarantine(lake, uri, sha, size, log.truncated, log_id)
        else:
            lake.remove("quarantine", log_id)
        lake.write(
            "logs",
            _logs_row(
                log_id, sha, uri, size, log, scenes, options, notes, ingested_at, embedder.version
            ).append_column("source", pa.array([source], pa.string())),
            name=log_id,
        )

    result.status = "salvaged" if not log.complete else ("replaced" if replacing else "ingested")
    result.reason = log.truncated
    result.message_count = log.message_count
    result.expected_messages = log.expected_messages
    result.complete = log.complete
    result.tables = dict(log.tables)
    result.n_scenes = scenes.num_rows
    result.notes = notes
    result.seconds = time.perf_counter() - started
    return result


def _with_log_id(table: pa.Table, log_id: str) -> pa.Table:
    if "log_id" in table.column_names:
        table = table.drop_columns(["log_id"])
    return table.add_column(0, "log_id", pa.array([log_id] * table.num_rows, pa.string()))


def _logs_row(log_id, sha, uri, size, log, scenes, options, notes, ingested_at, version):
    topics = [
        {
            "topic": t.topic,
            "msgtype": t.msgtype,
            "encoding": t.encoding,
            "count": t.count,
            "kind": t.kind,
            "table": log.tables.get(t.topic),  # where its rows went (None: nowhere)
        }
        for t in log.topics
    ]
    decoded = [t for t in log.topics if t.kind and t.kind != "ignore"]
    status = "salvaged" if not log.complete else ("ok" if decoded else "no_recognised_topics")
    return pa.table(
        {
            "log_id": [log_id],
            "source_uri": [uri],
            "bytes": pa.array([size], pa.int64()),
            "message_count": pa.array([log.message_count], pa.int64()),
            "expected_messages": pa.array([log.expected_messages], pa.int64()),
            "complete": pa.array([log.complete], pa.bool_()),
            "start_ns": pa.array([log.start_ns], pa.int64()),
            "end_ns": pa.array([log.end_ns], pa.int64()),
            "ingested_at": pa.array([ingested_at], pa.timestamp("us", tz="UTC")),
            "sha256": [sha],
            "format": [log.format],
            "status": [status],
            "topics": [json.dumps(topics)],
            "n_scenes": pa.array([scenes.num_rows], pa.int64()),
            "scene_seconds": [float(options.scene_seconds)],
            "embedding_version": [version],
            "notes": pa.array([notes], pa.list_(pa.string())),
        }
    )


def _write_quarantine(lake, uri, sha, size, reason, name):
    row = pa.table(
        {
            "source_uri": [uri],
            "reason": [reason],
            "at": pa.array([events.now()], pa.timestamp("us", tz="UTC")),
            "sha256": [sha],
            "bytes": pa.array([size], pa.int64()),
        }
    )
    lake.write("quarantine", row, name=name or hashlib.sha256(uri.encode()).hexdigest()[:20])


def _quarantine(lake, uri, sha, size, reason, started, log_id=None) -> FileResult:
    _write_quarantine(lake, uri, sha, size, reason, log_id)
    return FileResult(
        source_uri=uri,
        status="quarantined",
        log_id=log_id,
        bytes=size,
        reason=reason,
        seconds=time.perf_counter() - started,
    )


def ingest(
    paths: Sequence[str | os.PathLike],
    lake: str | os.PathLike | Lake | None = None,
    *,
    scene_seconds: float = 10.0,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    topic_map: Mapping[str, str] | None = None,
    embedder: str | None = None,
    source: str | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> IngestSummary:
    """Ingest every log under `paths` into `lake`; see the module docstring.

    >>> ingest([log_file], lake=empty_lake).count("ingested")
    1
    """
    started = time.perf_counter()
    target = resolve(lake)
    target.ensure()
    target.clean_temporary()
    sources, skipped = survey(paths)
    _embedder(embedder)  # fail fast on a bad embedder spec, before any work is sent out
    # an unknown or revoked source fails here, before any file is read
    recorded, warning = for_ingest(target, source)
    options = IngestOptions(
        scene_seconds,
        force,
        dict(topic_map) if topic_map else None,
        embedder,
        None if recorded == UNASSIGNED else recorded,
    )
    # largest first, so one big file does not finish last on an otherwise idle cluster
    sources.sort(key=_size, reverse=True)
    root = target.uri
    results: list[FileResult] = []

    def done(result: FileResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    for where, why in skipped:  # never opened: a quarantine line each, and the run goes on
        done(_quarantine(target, where.as_uri(), None, 0, f"skipped: {why}", time.perf_counter()))
    if scheduler is None and workers <= 1:
        for source in sources:
            done(ingest_file(root, str(source), options))
    else:
        _run_on_dask(root, sources, options, workers, scheduler, done)
    results.sort(key=lambda r: r.source_uri)
    added = [r.log_id for r in results if r.log_id and r.status in ADDED]
    found = _run_triggers(target, added)
    summary = IngestSummary(results, time.perf_counter() - started, found, recorded)
    summary.warnings = [warning] if warning else []
    return summary


ADDED = ("ingested", "replaced", "salvaged")  # statuses whose log is published now


def _run_triggers(lake: Lake, log_ids: list[str]) -> dict[str, int]:
    """Every defined trigger on the logs just added (docs/contract.md §9): `trigger run` then finds
    nothing to do for them. The runs publish like ingest: a crash leaves them to the rerun."""
    from ingest import triggers

    if not log_ids or not triggers.definitions(lake):
        return {}
    return triggers.run(lake, log_ids=log_ids)


def _run_on_dask(root, sources, options, workers, scheduler, done) -> None:
    if scheduler:
        _run_on_cluster(root, sources, options, scheduler, done)
        return
    # On one machine, Dask's process-pool scheduler: no scheduler/nanny processes competing
    # with the work for the two cores.
    import dask
    from dask.callbacks import Callback

    tasks = [
        dask.delayed(ingest_file, pure=False)(root, str(s), options, dask_key_name=f"ingest-{i}")
        for i, s in enumerate(sources)
    ]

    class Finished(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            done(result)

    # forkserver with the ingest modules preloaded: each worker starts as a fork of a clean
    # process that already imported them (spawn re-imports in every worker; plain fork would
    # copy whatever threads this process holds)
    multiprocessing.set_forkserver_preload(list(WORKER_MODULES))
    with Finished(), dask.config.set({"multiprocessing.context": "forkserver"}):
        # chunksize=1: Dask would otherwise hand out files in batches of 6, and one worker
        # ends with the last batch while the other idles (measured: 1.46x -> 1.75x on 2 cores)
        dask.compute(*tasks, scheduler="processes", num_workers=workers, chunksize=1)


def _run_on_cluster(root, sources, options, scheduler, done) -> None:
    from distributed import as_completed

    from flywheel.cluster import client as cluster_client

    with cluster_client(scheduler) as client:
        futures = [
            client.submit(
                ingest_file, root, str(s), options, key=f"ingest-{i}-{s.name}", pure=False
            )
            for i, s in enumerate(sources)
        ]
        for future in as_completed(futures):
            done(future.result())


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0
