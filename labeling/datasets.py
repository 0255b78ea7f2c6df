"""Dataset versions: immutable, content-addressed sets of labeled scenes (docs/contract.md §7).

`create` gathers scenes (of label batches, or of a saved selection, narrowed by a `where` over
`scenes`), gives each the latest accepted label the lake holds for it (one that no
`label reject` rejected), and hashes the sorted
(scene_id, label) pairs into a `digest`. A version of the same name with that digest is
returned as it is; otherwise the next version is written, one `datasets/<name>@<N>.parquet`
file, and never rewritten. So a relabeled scene changes the next version, never an old one,
and two creates with equal pairs give one version however they were asked for.

A version may hold only scenes whose source allows `train`, has not ended and is not revoked
(flywheel.sources): otherwise nothing is written and the error names each source and why.
`allow_expired` lets ended licenses through and records who allowed it; nothing lets a revoked
or non-`train` source through.

>>> create(lake, "pedestrians", selection="first")  # doctest: +ELLIPSIS
DatasetVersion(dataset='pedestrians', version=1, digest='...', scenes=3, created=True, ...)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import events, schemas, sources
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.lineage import parse_ref
from flywheel.names import check_name
from mining import where as where_expr

TABLE = "datasets"
SEP_FIELD, SEP_ROW = "\x1f", "\x1e"  # never in a scene id or in JSON text


@dataclass
class DatasetVersion:
    dataset: str
    version: int
    digest: str
    scenes: int
    created: bool  # False: an existing version had the same content
    created_at: str
    created_by: str
    left_out: int = 0  # scenes asked for that have no accepted label

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    def __str__(self) -> str:
        verb = "created" if self.created else "unchanged: same content as"
        return f"{verb} {self.ref} ({self.scenes} scenes, digest {self.digest[:12]})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ref": self.ref}


def create(
    lake: str | Lake | None,
    name: str,
    batches: Sequence[str] = (),
    selection: str | None = None,
    where: str | None = None,
    allow_expired: bool = False,
    by: str | None = None,
) -> DatasetVersion:
    """The version of dataset `name` holding the asked scenes and their labels (see the module
    docstring); InputError (exit 1) when a source refuses it, or nothing is asked or labeled."""
    lake = resolve(lake)
    check_name(name, "dataset")
    if bool(batches) == bool(selection):
        raise InputError("give the scenes of a dataset as --batch BATCH_ID… or --selection NAME")
    by = by or sources.user()
    rows, left_out = _gather(lake, list(batches), selection, where)
    if not rows.num_rows:
        raise InputError(
            f"no labeled scene in {_asked_text(batches, selection, where)}; nothing was created"
            + (f" ({left_out} scenes have no accepted label yet)" if left_out else "")
        )
    override = _check_sources(lake, rows, allow_expired, by)
    digest = digest_of(rows)
    with lake.lock(f"dataset-{name}"):
        existing = _versions(lake, name)
        for version, (known, created_at, created_by) in sorted(existing.items()):
            if known == digest:
                return DatasetVersion(
                    name, version, digest, rows.num_rows, False, created_at, created_by, left_out
                )
        version = max(existing, default=0) + 1
        created_at = events.now()
        asked = {"batches": sorted(batches), "selection": selection, "where": where}
        n = rows.num_rows
        table = rows.append_column("dataset", pa.array([name] * n, pa.string()))
        table = table.append_column("version", pa.array([version] * n, pa.int64()))
        table = table.append_column("digest", pa.array([digest] * n, pa.string()))
        table = table.append_column("created_at", pa.array([created_at] * n, schemas.UTC_TS))
        table = table.append_column("created_by", pa.array([by] * n, pa.string()))
        table = table.append_column("asked", pa.array([json.dumps(asked)] * n, pa.string()))
        table = table.append_column("override", pa.array([override] * n, pa.string()))
        lake.write(TABLE, table, name=f"{name}@{version}")
    return DatasetVersion(name, version, digest, n, True, created_at.isoformat(), by, left_out)


def digest_of(rows: pa.Table) -> str:
    """sha256 over the (scene_id, label) pairs, sorted by scene id: the version's content."""
    pairs = sorted(
        zip(rows.column("scene_id").to_pylist(), rows.column("label").to_pylist(), strict=True)
    )
    hasher = hashlib.sha256()
    for scene_id, label in pairs:
        hasher.update(f"{scene_id}{SEP_FIELD}{label}{SEP_ROW}".encode())
    return hasher.hexdigest()


def _gather(
    lake: Lake, batches: list[str], selection: str | None, where: str | None
) -> tuple[pa.Table, int]:
    """(scene_id, log_id, source, label, batch_id, vendor, annotator) of each asked scene with
    an accepted label, and how many asked scenes had none."""
    if where:
        where = where_expr.check(where)
    with lake.connect() as con:
        if batches:
            known = {r[0] for r in con.execute("SELECT DISTINCT batch_id FROM tasks").fetchall()}
            unknown = sorted(set(batches) - known)
            if unknown:
                raise InputError(
                    f"unknown label batch(es) {', '.join(unknown)} "
                    "(`flywheel label status` lists them)"
                )
            asked = con.sql(
                "SELECT DISTINCT scene_id FROM tasks WHERE list_contains($b, batch_id)",
                params={"b": batches},
            )
        else:
            found = con.execute(
                "SELECT count(*) FROM selections WHERE selection = ?", [selection]
            ).fetchall()[0]
            if not found[0]:
                raise InputError(
                    f"no selection {selection!r} (`flywheel mine … --save NAME` saves one)"
                )
            asked = con.sql(
                "SELECT DISTINCT scene_id FROM selections WHERE selection = ?", params=[selection]
            )
        con.register("asked", asked.to_arrow_table())
        scenes = con.sql(
            "SELECT s.* EXCLUDE (embedding) FROM scenes s JOIN asked USING (scene_id)"
        ).to_arrow_table()
        if where and scenes.num_rows:
            mask = where_expr.evaluate(where_expr.sandbox(scenes), where, scenes.num_rows)
            scenes = scenes.filter(pa.array(mask))
        con.register("wanted", scenes.select(["scene_id", "log_id"]))
        rows = con.sql(
            """
            WITH latest AS (
                SELECT scene_id, arg_max(result, completed_at) AS label,
                    arg_max(batch_id, completed_at) AS batch_id,
                    arg_max(vendor, completed_at) AS vendor,
                    arg_max(annotator, completed_at) AS annotator
                FROM labels l
                WHERE result IS NOT NULL AND scene_id IN (SELECT scene_id FROM wanted)
                    AND NOT EXISTS (  -- a rejected label is not accepted (labeling.quality)
                        SELECT 1 FROM rejections r WHERE r.batch_id = l.batch_id
                            AND (r.annotator IS NULL OR r.annotator = l.annotator))
                GROUP BY scene_id
            )
            SELECT w.scene_id, w.log_id, coalesce(l.source, 'unassigned') AS source,
                t.label, t.batch_id, t.vendor, t.annotator
            FROM wanted w JOIN latest t USING (scene_id) LEFT JOIN logs l USING (log_id)
            ORDER BY w.scene_id
            """
        ).to_arrow_table()
    return rows, scenes.num_rows - rows.num_rows


def _check_sources(lake: Lake, rows: pa.Table, allow_expired: bool, by: str) -> str | None:
    """None, or the override record when `allow_expired` let ended sources in; InputError
    naming every source that refuses the scenes."""
    known = sources.read(lake)
    used = sorted(set(rows.column("source").to_pylist()))
    refused, ended = [], []
    for name in used:
        row = known.get(name)
        if row is None:  # unassigned, or a source removed by hand: no terms to break
            continue
        state = sources.status(row)
        if state == "revoked":
            refused.append(f"{name} (revoked on {row['revoked_at']:%Y-%m-%d})")
        elif "train" not in (row["uses"] or []):
            refused.append(f"{name} (`train` not allowed: uses {', '.join(row['uses'] or [])})")
        elif state == "ended":
            ended.append(name)
            if not allow_expired:
                refused.append(f"{name} (license ended on {row['until']})")
    if refused:
        raise InputError(
            "dataset refused: scenes come from "
            + "; ".join(refused)
            + ". Nothing was created"
            + ("; --allow-expired lets ended licenses in" if ended and not allow_expired else "")
        )
    if ended:
        return json.dumps({"allow_expired": ended, "by": by, "at": events.now().isoformat()})
    return None


def _versions(lake: Lake, name: str) -> dict[int, tuple[str, str, str]]:
    """version -> (digest, created_at, created_by) of dataset `name`."""
    with lake.connect(snapshot=lake.snapshot([TABLE])) as con:
        rows = con.execute(
            "SELECT version, any_value(digest), min(created_at), any_value(created_by) "
            "FROM datasets WHERE dataset = ? GROUP BY version",
            [name],
        ).fetchall()
    return {v: (d, c.isoformat(), b) for v, d, c, b in rows}


def listing(lake: str | Lake | None = None) -> pd.DataFrame:
    """Every version: dataset, version, digest, scenes, logs, sources, created_at, created_by."""
    lake = resolve(lake)
    with lake.connect(snapshot=lake.snapshot([TABLE])) as con:
        return con.execute(
            """
            SELECT dataset, version, any_value(digest) AS digest, count(*) AS scenes,
                count(DISTINCT log_id) AS logs, list_sort(list(DISTINCT source)) AS sources,
                min(created_at) AS created_at, any_value(created_by) AS created_by,
                any_value(override) IS NOT NULL AS override
            FROM datasets GROUP BY dataset, version ORDER BY dataset, version
            """
        ).df()


def show(lake: str | Lake | None, ref: str) -> dict[str, Any]:
    """One version: what `dataset show --format json` prints (InputError when it does not exist)."""
    lake = resolve(lake)
    name, version = parse_ref(ref)
    rows = _rows(lake, name, version)
    first = rows.iloc[0]
    return {
        "dataset": name,
        "version": version,
        "digest": first["digest"],
        "scenes": len(rows),
        "logs": int(rows["log_id"].nunique()),
        "sources": sorted(rows["source"].unique().tolist()),
        "vendors": sorted(v for v in rows["vendor"].unique().tolist() if v),
        "batches": sorted(b for b in rows["batch_id"].unique().tolist() if b),
        "created_at": first["created_at"].isoformat(),
        "created_by": first["created_by"],
        "asked": json.loads(first["asked"]) if first["asked"] else None,
        "override": json.loads(first["override"]) if first["override"] else None,
    }


def diff(lake: str | Lake | None, old: str, new: str) -> pd.DataFrame:
    """scene_id, change (added | removed | relabeled), label_old, label_new: where two versions
    differ, by scene id."""
    lake = resolve(lake)
    a, b = parse_ref(old), parse_ref(new)
    _rows(lake, *a)
    _rows(lake, *b)
    with lake.connect(snapshot=lake.snapshot([TABLE])) as con:
        return con.execute(
            """
            WITH a AS (SELECT scene_id, label FROM datasets WHERE dataset = $an AND version = $av),
                 b AS (SELECT scene_id, label FROM datasets WHERE dataset = $bn AND version = $bv)
            SELECT coalesce(a.scene_id, b.scene_id) AS scene_id,
                CASE WHEN a.scene_id IS NULL THEN 'added' WHEN b.scene_id IS NULL THEN 'removed'
                     ELSE 'relabeled' END AS change,
                a.label AS label_old, b.label AS label_new
            FROM a FULL JOIN b USING (scene_id)
            WHERE a.scene_id IS NULL OR b.scene_id IS NULL OR a.label IS DISTINCT FROM b.label
            ORDER BY change, scene_id
            """,
            {"an": a[0], "av": a[1], "bn": b[0], "bv": b[1]},
        ).df()


def export(lake: str | Lake | None, ref: str, out: str | Path) -> Path:
    """Write the version as Parquet in the folder `out` (created; an existing file there is
    refused): one row per scene with its metadata, log, source and label; the file written."""
    lake = resolve(lake)
    name, version = parse_ref(ref)
    _rows(lake, name, version)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} exists and is not a folder; nothing was exported")
    folder.mkdir(parents=True, exist_ok=True)
    with lake.connect(snapshot=lake.snapshot([TABLE, "scenes"])) as con:
        table = con.sql(
            """
            SELECT d.dataset, d.version, d.digest, d.scene_id, d.log_id, d.source, d.label,
                d.batch_id, d.vendor, d.annotator, s.* EXCLUDE (scene_id, log_id)
            FROM datasets d LEFT JOIN scenes s USING (scene_id)
            WHERE d.dataset = ? AND d.version = ? ORDER BY d.scene_id
            """,
            params=[name, version],
        ).to_arrow_table()
    target = folder / f"{name}@{version}.parquet"
    temp = folder / f".{target.name}.tmp"
    pq.write_table(table, temp, compression="zstd")
    temp.replace(target)
    return target


def _rows(lake: Lake, name: str, version: int) -> pd.DataFrame:
    with lake.connect(snapshot=lake.snapshot([TABLE])) as con:
        rows = con.execute(
            "SELECT * FROM datasets WHERE dataset = ? AND version = ?", [name, version]
        ).df()
    if rows.empty:
        raise InputError(
            f"no dataset version {name}@{version} (`flywheel dataset list` lists them)"
        )
    return rows


def _asked_text(batches: Sequence[str], selection: str | None, where: str | None) -> str:
    asked = f"batch(es) {', '.join(batches)}" if batches else f"selection {selection!r}"
    return asked + (f" where {where}" if where else "")


__all__ = ["DatasetVersion", "create", "diff", "digest_of", "export", "listing", "show"]
