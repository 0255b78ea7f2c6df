"""Lineage: which data trained which model, asked either way (docs/contract.md §7).

Every answer is one DuckDB query over one relation, `edges`: a row per (model, scene) a model
was trained on, with the dataset version and batch that brought the scene in, its log, the
log's source and the vendor that labeled it. A model's scenes come from

- the dataset versions its `trained` record names (`datasets`, immutable rows), and
- the label batches it names: the scenes `track trained` fixed in `model_inputs` when it was
  recorded, or, for records older than that table, the batch's tasks as they are now.

Both kinds of record outlive a purge (flywheel.purge keeps them), so a model still names the
logs and sources it used after their rows are gone.

>>> lin = lineage(lake)
>>> list(lin.expiring(30).columns)[:3]
['source', 'until', 'days_left']
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd

from flywheel.errors import InputError
from flywheel.lake import Lake, LakeConnection, resolve
from flywheel.sources import status_sql

# the scenes each model was trained on: of the dataset versions it names, and of the label
# batches it names as `track trained` fixed them in `model_inputs`
_DATASET_EDGES = """
SELECT n.model, n.ref AS dataset, d.batch_id, d.scene_id, d.log_id, d.source, d.vendor
FROM (SELECT model, unnest(datasets) AS ref FROM models) n
JOIN datasets d ON d.dataset || '@' || CAST(d.version AS VARCHAR) = n.ref
"""
_BATCH_EDGES = """
SELECT i.model, NULL AS dataset, i.batch_id, i.scene_id, i.log_id, i.source, i.vendor
FROM model_inputs i
"""
# batches named by records older than `model_inputs`: their scenes as the lake holds them now
_UNFIXED_BATCHES = """
SELECT n.model, n.batch_id FROM (SELECT model, unnest(batches) AS batch_id FROM models) n
WHERE NOT EXISTS (
    SELECT 1 FROM model_inputs f WHERE f.model = n.model AND f.batch_id = n.batch_id
)
"""
_LIVE_EDGES = f"""
SELECT n.model, NULL, n.batch_id, t.scene_id, s.log_id, l.source, t.vendor
FROM ({_UNFIXED_BATCHES}) n
JOIN tasks t USING (batch_id)
LEFT JOIN scenes s USING (scene_id)
LEFT JOIN logs l USING (log_id)
"""
EDGES_SQL = f"{_DATASET_EDGES} UNION ALL {_BATCH_EDGES} UNION ALL {_LIVE_EDGES}"
# what the fixed edges and the answers read; the live ones add tasks, scenes and logs (one
# small file per log: questions about logs read them on a connection of their own)
TABLES = ("events", "datasets", "model_inputs", "sources", "rejections")
LIVE_TABLES = (*TABLES, "tasks", "scenes", "logs")


# the distinct non-null values of a column of a group, sorted (an empty list, never null)
IDS = "coalesce(list_sort(list(DISTINCT x) FILTER (x IS NOT NULL)), [])"


def lineage(lake: str | Lake | None = None) -> Lineage:
    """Lineage queries over `lake` (default: the configured lake)."""
    return Lineage(resolve(lake))


def parse_ref(ref: str) -> tuple[str, int]:
    """``NAME@N`` -> (NAME, N).

    >>> parse_ref("pedestrians@3")
    ('pedestrians', 3)
    """
    name, at, version = ref.rpartition("@")
    if not at or not name or not version.isdigit() or int(version) < 1:
        raise InputError(f"{ref!r} is not a dataset version: write NAME@N, e.g. pedestrians@3")
    return name, int(version)


class Lineage:
    """Each method returns a pandas DataFrame; `describe_*` the dicts of the JSON of
    docs/contract.md §7."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._con: LakeConnection | None = None
        self._depth = 0  # nesting of `_session`
        self._batch_edges = _BATCH_EDGES  # the batch inputs' edges, live ones once needed

    @contextlib.contextmanager
    def _session(self) -> Iterator[LakeConnection]:
        """The connection of this object, brought up to date once per question (a `describe_*`
        and the frame it builds on are one question: one listing of the lake).

        It reads only the tables lineage needs; a lake with training records older than
        `model_inputs` adds tasks and scenes, which are many files at scale."""
        if self._depth:
            self._depth += 1
            try:
                yield self._con
            finally:
                self._depth -= 1
            return
        if self._con is None:
            self._con = self.lake.connect(snapshot=self.lake.snapshot(TABLES))
        else:
            self._con.refresh()
        con = self._con
        live = con.execute(f"SELECT count(*) FROM ({_UNFIXED_BATCHES})").fetchall()[0][0]
        if live and "scenes" not in con.snapshot.tables:
            con.close()
            con = self._con = self.lake.connect(snapshot=self.lake.snapshot(LIVE_TABLES))
        self._batch_edges = _BATCH_EDGES + (f" UNION ALL {_LIVE_EDGES}" if live else "")
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW edges AS {_DATASET_EDGES} UNION ALL {self._batch_edges}"
        )
        con.execute(f"CREATE OR REPLACE TEMP MACRO ids(x) AS {IDS}")
        self._depth = 1
        try:
            yield con
        finally:
            self._depth = 0

    def _df(self, query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # through Arrow: a license's date stays a date (DuckDB's own df() makes it a Timestamp)
        with self._session() as con:
            return con.sql(query, params=params or {}).to_arrow_table().to_pandas()

    # -- tables ----------------------------------------------------------------------------
    def edges(self) -> pd.DataFrame:
        """One row per (model, scene) trained on: model, dataset, batch_id, scene_id, log_id,
        source, vendor."""
        return self._df("SELECT * FROM edges ORDER BY model, scene_id")

    def models(self) -> pd.DataFrame:
        """The `models` view: one row per model."""
        return self._df("SELECT * FROM models ORDER BY model")

    def model(self, model: str) -> pd.DataFrame:
        """The logs `model` was trained on: log_id, source, license, until, scenes, datasets,
        batches, vendors (one row per log)."""
        self._require_model(model)
        return self._df(
            """
            SELECT e.log_id, coalesce(e.source, 'unassigned') AS source, s.license, s.until,
                count(DISTINCT e.scene_id) AS scenes,
                ids(e.dataset) AS datasets,
                ids(e.batch_id) AS batches,
                ids(e.vendor) AS vendors
            FROM edges e LEFT JOIN sources s ON s.name = e.source
            WHERE e.model = $model GROUP BY ALL ORDER BY e.log_id
            """,
            {"model": model},
        )

    def source(self, source: str) -> pd.DataFrame:
        """The models trained on `source`'s logs: model, deployed, datasets, scenes, logs."""
        with self._session() as con:
            self._source_rows(con, source)
            return self._df(
                f"""
                WITH e AS (
                    SELECT n.model, n.ref AS dataset, d.scene_id, d.log_id
                    FROM (SELECT model, unnest(datasets) AS ref FROM models) n
                    JOIN source_rows d USING (ref)
                    UNION ALL
                    SELECT model, NULL, scene_id, log_id FROM ({self._batch_edges})
                    WHERE coalesce(source, 'unassigned') = $source
                )
                SELECT e.model, coalesce(m.deployed, false) AS deployed,
                    ids(e.dataset) AS datasets,
                    count(DISTINCT e.scene_id) AS scenes, count(DISTINCT e.log_id) AS logs
                FROM e LEFT JOIN models m USING (model)
                GROUP BY ALL ORDER BY e.model
                """,
                {"source": source},
            )

    def _logs(self, query: str, params: list) -> list[tuple]:
        """`query` over `logs` alone, on a connection of its own."""
        with self.lake.connect(snapshot=self.lake.snapshot(["logs"])) as con:
            return con.execute(query, params).fetchall()

    def _count_logs(self, source: str, out: dict) -> None:
        try:
            out["logs"] = self._logs("SELECT count(*) FROM logs WHERE source = ?", [source])[0][0]
        except BaseException as exc:  # raised in the asking thread
            out["error"] = exc

    @staticmethod
    def _source_rows(con: LakeConnection, source: str) -> None:
        """Temp table `source_rows`: the dataset rows of `source` (ref, scene_id, log_id), read
        once per question: `datasets` is the largest table lineage reads."""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE source_rows AS SELECT dataset || '@' || "
            "CAST(version AS VARCHAR) AS ref, scene_id, log_id FROM datasets "
            "WHERE source = $source",
            {"source": source},
        )

    def source_models(self, source: str) -> pd.DataFrame:
        """model, deployed: the models trained on `source` (docs/contract.md §7's `models`)."""
        return self.source(source)[["model", "deployed"]]

    def dataset(self, ref: str) -> pd.DataFrame:
        """The logs of the dataset version `ref` (NAME@N): log_id, source, scenes."""
        name, version = self._require_dataset(ref)
        return self._df(
            """
            SELECT log_id, source, count(*) AS scenes FROM datasets
            WHERE dataset = $name AND version = $version GROUP BY ALL ORDER BY log_id
            """,
            {"name": name, "version": version},
        )

    def log(self, log_id: str) -> pd.DataFrame:
        """The models trained on the log `log_id`: model, deployed, datasets, scenes."""
        return self._df(
            """
            SELECT e.model, coalesce(m.deployed, false) AS deployed,
                ids(e.dataset) AS datasets,
                count(DISTINCT e.scene_id) AS scenes
            FROM edges e LEFT JOIN models m USING (model)
            WHERE e.log_id = $log GROUP BY ALL ORDER BY e.model
            """,
            {"log": log_id},
        )

    def expiring(self, within_days: float, on: dt.date | None = None) -> pd.DataFrame:
        """Sources whose license ends within `within_days` of `on` (default today, UTC), ended
        ones included: source, until, days_left, status, models, deployed (model ids)."""
        on = on or dt.datetime.now(dt.UTC).date()
        return self._df(
            f"""
            WITH used AS (
                SELECT DISTINCT e.source, e.model, coalesce(m.deployed, false) AS deployed
                FROM edges e LEFT JOIN models m USING (model)
            )
            SELECT s.name AS source, s.until, CAST(s.until - $on AS BIGINT) AS days_left,
                {status_sql("$on")} AS status,
                coalesce(list_sort(list(u.model) FILTER (u.model IS NOT NULL)), []) AS models,
                coalesce(list_sort(list(u.model) FILTER (u.deployed)), []) AS deployed
            FROM sources s LEFT JOIN used u ON u.source = s.name
            WHERE s.until IS NOT NULL AND s.until <= $on + CAST($days AS INTEGER)
            GROUP BY ALL ORDER BY s.until, s.name
            """,
            {"on": on, "days": int(within_days)},
        )

    # -- the JSON of docs/contract.md §7 -----------------------------------------------------------
    def describe_model(self, model: str) -> dict[str, Any]:
        with self._session() as con:
            logs = self.model(model)  # a scene is of one log: its rows add up to the model's
            info = con.execute(
                "SELECT trained_at, trained_by, code, params, deployed FROM models "
                "WHERE model = $model",
                {"model": model},
            ).fetchall()[0]
            # batches whose labels were rejected after the model used them (label reject)
            rejected = con.execute(
                "SELECT DISTINCT e.batch_id FROM edges e JOIN rejections r USING (batch_id) "
                "WHERE e.model = $model ORDER BY 1",
                {"model": model},
            ).fetchall()
        sources = (
            logs.groupby("source", dropna=False)
            .agg(license=("license", "first"), until=("until", "first"))
            .reset_index()
        )
        return {
            "model": model,
            "datasets": _union(logs["datasets"]),
            "batches": _union(logs["batches"]),
            "scenes": int(logs["scenes"].sum()),
            "logs": logs["log_id"].tolist(),
            "sources": [
                {"name": r.source, "license": _text(r.license), "until": _date(r.until)}
                for r in sources.itertuples()
            ],
            "vendors": _union(logs["vendors"]),
            "trained_at": info[0].isoformat() if info[0] else None,
            "trained_by": info[1],
            "code": info[2],
            "params": info[3],
            "deployed": bool(info[4]),
            "rejected_batches": [r[0] for r in rejected],
        }

    def describe_source(self, source: str) -> dict[str, Any]:
        # the source's logs in the lake: one small file each, so their count costs as much as
        # the rest of the answer; it runs on a connection of its own, beside the rest
        counted: dict[str, int] = {}
        counter = threading.Thread(target=self._count_logs, args=(source, counted))
        counter.start()
        try:
            with self._session() as con:
                models = self.source(source)
                datasets, terms = con.execute(
                    """
                SELECT (SELECT list(DISTINCT ref) FROM source_rows),
                    (SELECT list({'license': license, 'until': until, 'revoked_at': revoked_at})
                     FROM sources WHERE name = $s)
                """,
                    {"s": source},
                ).fetchall()[0]
        finally:
            counter.join()
        if "error" in counted:
            raise counted["error"]
        logs = counted["logs"]
        row = terms[0] if terms else None
        if row is None and source != "unassigned" and not len(models):
            raise InputError(f"unknown source {source!r} (`flywheel source list` lists them)")
        return {
            "source": source,
            "license": row["license"] if row else None,
            "until": _date(row["until"]) if row else None,
            "revoked_at": row["revoked_at"].isoformat() if row and row["revoked_at"] else None,
            "logs": int(logs),
            "datasets": sorted(datasets or [], key=parse_ref),
            "models": [
                {"model": r.model, "deployed": bool(r.deployed)} for r in models.itertuples()
            ],
        }

    def describe_dataset(self, ref: str) -> dict[str, Any]:
        name, version = parse_ref(ref)
        with self._session() as con:
            logs = self.dataset(ref)
            digest, scenes, created_at, created_by = con.execute(
                "SELECT any_value(digest), count(*), min(created_at), any_value(created_by) "
                "FROM datasets WHERE dataset = ? AND version = ?",
                [name, version],
            ).fetchall()[0]
            models = con.execute(
                "SELECT DISTINCT e.model, coalesce(m.deployed, false) FROM edges e "
                "LEFT JOIN models m USING (model) WHERE e.dataset = ? ORDER BY 1",
                [ref],
            ).fetchall()
        return {
            "dataset": name,
            "version": version,
            "digest": digest,
            "scenes": int(scenes),
            "created_at": created_at.isoformat(),
            "created_by": created_by,
            "logs": logs["log_id"].tolist(),
            "sources": sorted(set(logs["source"])),
            "models": [{"model": m, "deployed": bool(d)} for m, d in models],
        }

    def describe_log(self, log_id: str) -> dict[str, Any]:
        with self._session() as con:
            models = self.log(log_id)
            row = _first(
                self._logs(
                    "SELECT source, source_uri, n_scenes FROM logs WHERE log_id = ?", [log_id]
                )
            )
            used = con.execute(
                "SELECT any_value(source) FROM datasets WHERE log_id = ?", [log_id]
            ).fetchall()[0]
            datasets = con.execute(
                "SELECT DISTINCT dataset || '@' || version, dataset, version FROM datasets "
                "WHERE log_id = ? ORDER BY dataset, version",
                [log_id],
            ).fetchall()
        if row is None and not len(models) and not datasets:
            raise InputError(f"no log {log_id!r} in the lake or its lineage records")
        return {
            "log": log_id,
            "source": row[0] if row else used[0],
            "source_uri": row[1] if row else None,
            "in_lake": row is not None,
            "scenes": int(row[2] or 0) if row else 0,
            "datasets": [d[0] for d in datasets],
            "models": [
                {"model": r.model, "deployed": bool(r.deployed)} for r in models.itertuples()
            ],
        }

    def describe_expiring(self, within_days: float, on: dt.date | None = None) -> list[dict]:
        return [
            {
                "source": r.source,
                "until": _date(r.until),
                "days_left": int(r.days_left),
                "status": r.status,
                "models": list(r.models),
                "deployed": list(r.deployed),
            }
            for r in self.expiring(within_days, on).itertuples()
        ]

    # -- checks -------------------------------------------------------------------------------
    def _require_model(self, model: str) -> None:
        with self._session() as con:
            known = con.execute("SELECT count(*) FROM models WHERE model = ?", [model]).fetchall()[
                0
            ]
        if not known[0]:
            raise InputError(
                f"no model {model!r} was tracked as trained (`flywheel track trained --model "
                f"{model} …` records one)"
            )

    def _require_dataset(self, ref: str) -> tuple[str, int]:
        name, version = parse_ref(ref)
        with self._session() as con:
            found = con.execute(
                "SELECT count(*) FROM datasets WHERE dataset = ? AND version = ?", [name, version]
            ).fetchall()[0]
        if not found[0]:
            raise InputError(f"no dataset version {ref!r} (`flywheel dataset list` lists them)")
        return name, version


def _union(lists: Any) -> list:
    """The sorted union of a column of lists."""
    return sorted({v for values in lists for v in values})


def _first(rows: list[tuple]) -> tuple | None:
    return rows[0] if rows else None


def _date(value: Any) -> str | None:
    """A license date as YYYY-MM-DD (pandas hands dates back as Timestamps), or None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, dt.datetime):  # pd.Timestamp too
        value = value.date()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


__all__ = ["EDGES_SQL", "Lineage", "lineage", "parse_ref"]
