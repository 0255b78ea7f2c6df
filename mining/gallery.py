"""Pictures of scenes: a bird's-eye view per scene, as SVG drawn from the lake's tables.

Each picture shows the scene's window from above, in the frame of the ego at the scene's
middle (its heading points right): the ego path coloured by speed with a tick each second, the
ego's path corridor (1.5 m either side of its centre line, as the triggers' "in path"), every
object track coloured by its category with its box at the middle instant, a scale bar and the
time span; and the camera keyframe beside it where the log has one (read from the source log,
embedded as a `data:` image). No network and no JavaScript: a gallery is one HTML fragment.

>>> g = gallery(lake, [scene])
>>> g.scene_ids == [scene], "<svg" in g._repr_html_()
(True, True)
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.output import write_output
from ingest.signals import GROUPS, PATH_HALF_WIDTH_M

WIDTH, HEIGHT = 340, 190  # px of one picture: wide, since a scene is a stretch of road
MARGIN_M = 6.0  # metres around what is drawn
MAX_RANGE_M = 60.0  # objects farther than this from the ego path are left out
MAX_POINTS = 40  # per track and for the ego path: enough for a curve, small for 100 pictures
# category -> colour, by the triggers' groups; a class in none is grey
COLOURS = {
    "vehicle": "#2f6fd6",
    "pedestrian": "#e0452f",
    "cyclist": "#d8a400",
    "animal": "#8a5a2b",
    "other": "#777777",
}
GROUP_OF = {category: group for group, members in GROUPS.items() for category in members}
# the ego path by speed: light to dark purple, apart from every category colour
SPEED_COLOURS = ("#d9c7ef", "#b99ae0", "#9a6fd0", "#7a45bd", "#5a22a0", "#3d0a7a")
SPEED_STEP = 5.0  # m/s per colour band
FEATURES = ("max_speed", "min_accel", "n_tracks", "n_pedestrians", "n_vehicles")


@dataclass
class Gallery:
    """Pictures of scenes with their id, score, tags and key features; renders in Jupyter
    (`_repr_html_`) and saves as one self-contained HTML file (`save`)."""

    scene_ids: list[str]
    cards: list[str] = field(repr=False)
    title: str = "scenes"

    def _repr_html_(self) -> str:
        return (
            f'<div class="fw-gallery" style="{GRID}">'
            + "".join(self.cards)
            + ("" if self.cards else "<p>no scenes</p>")
            + "</div>"
        )

    def __str__(self) -> str:
        return f"gallery of {len(self.scene_ids)} scenes ({self.title})"

    def html(self) -> str:
        """The gallery as a whole page (no script, no external resource)."""
        return (
            '<!doctype html><html><head><meta charset="utf-8">'
            f"<title>{escape(self.title)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'</head><body style="{BODY}"><h1 style="font-size:18px">{escape(self.title)}'
            f" <small>({len(self.scene_ids)} scenes)</small></h1>"
            f"{self._repr_html_()}</body></html>"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to `path` (atomically, through the one output writer)."""
        return write_output(path, self.html())


GRID = "display:flex;flex-wrap:wrap;gap:10px;font:12px/1.35 system-ui,sans-serif"
BODY = "margin:16px;font:13px/1.4 system-ui,sans-serif;color:#222"
CARD = "border:1px solid #ddd;border-radius:6px;padding:6px;background:#fff;width:{w}px"


def gallery(
    lake: str | os.PathLike | Lake | None,
    scenes: pd.DataFrame | Iterable[str],
    *,
    title: str | None = None,
    camera: bool = True,
    rows: pa.Table | None = None,
) -> Gallery:
    """A gallery of `scenes`: a DataFrame with `scene_id` (its `score` shown too, in its
    order) or scene ids. Unknown ids are left out. `camera` adds each scene's keyframe where the
    log has one (read from the source log; left out when the file is gone). `rows` are the
    scenes' rows when the caller holds them (a miner's catalog): the lake is not queried."""
    target = resolve(lake)
    if isinstance(scenes, pd.DataFrame):
        ids = [str(s) for s in scenes["scene_id"]]
        scores = dict(zip(ids, scenes["score"], strict=True)) if "score" in scenes else {}
        title = title or str(scenes.attrs.get("query") or "scenes")
    else:
        ids, scores = [str(s) for s in scenes], {}
    ids = list(dict.fromkeys(ids))
    if rows is None:
        found = _scene_rows(target, ids)
    else:
        found = rows.select([c for c in COLUMNS if c in rows.column_names]).to_pandas()
        found = found.set_index("scene_id", drop=False)
    rows_by_id = found
    known = [s for s in ids if s in rows_by_id.index]
    ego, objects = _samples(target, rows_by_id.loc[known])
    frames = _keyframes(target, rows_by_id.loc[known]) if camera else {}
    cards = []
    for scene_id in known:
        row = rows_by_id.loc[scene_id]
        svg = picture(row, ego.get(scene_id), objects.get(scene_id))
        cards.append(_card(scene_id, row, scores.get(scene_id), svg, frames.get(scene_id)))
    return Gallery(known, cards, title or "scenes")


COLUMNS = ("scene_id", "log_id", "start_ns", "end_ns", "tags", "keyframe_t_ns", *FEATURES)


def _scene_rows(lake: Lake, ids: Sequence[str]) -> pd.DataFrame:
    """The scenes' rows. Ingest names a scene ``<log_id>-<n>``: those logs' `scenes` files are
    read alone (a lake of a million scenes has thousands of files); ids that do not follow
    the rule, or are not in their log's file, are looked up in the whole table."""
    snapshot = lake.snapshot(["scenes"])
    by_log = {f.unit[0]: f.rel for f in snapshot.files["scenes"]}
    wanted = set(ids)
    parts = []
    for log_id in sorted({i.rsplit("-", 1)[0] for i in ids} & set(by_log)):
        path = lake.get(by_log[log_id])
        if path is None:
            continue
        table = pq.read_table(path, columns=list(COLUMNS))
        parts.append(table.filter(pc.is_in(table["scene_id"], pa.array(sorted(wanted)))))
    found = pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=COLUMNS)
    missing = wanted - set(found["scene_id"])
    if missing:
        columns = ", ".join(f"s.{c}" for c in COLUMNS)
        con = lake.connect(snapshot=lake.snapshot(["scenes", "logs"]))
        con.register("_wanted", pa.table({"scene_id": pa.array(sorted(missing), pa.string())}))
        rest = con.sql(f"SELECT {columns} FROM scenes s JOIN _wanted USING (scene_id)")
        found = pd.concat([found, rest.to_arrow_table().to_pandas()], ignore_index=True)
    return found.set_index("scene_id", drop=False)


def _samples(lake: Lake, rows: pd.DataFrame) -> tuple[dict, dict]:
    """Per scene: its ego samples (t, x, y, yaw, speed) and its objects in the map frame; each
    log's files found in one listing of the lake, read for the scenes' windows only."""
    ego: dict[str, pd.DataFrame] = {}
    objects: dict[str, pd.DataFrame] = {}
    logs = sorted({str(log) for log in rows["log_id"]})
    files = {t: lake.published_files(t, logs) for t in ("ego", "objects")}

    def read(table: str, log_id: str, columns: list[str], window) -> pa.Table | None:
        rel = files[table].get(log_id)
        path = None if rel is None else lake.get(rel)
        return None if path is None else pq.read_table(path, columns=columns, filters=window)

    for log_id, scenes in rows.groupby("log_id"):
        lo, hi = int(scenes["start_ns"].min()), int(scenes["end_ns"].max())
        window = [("t_ns", ">=", lo), ("t_ns", "<", hi)]
        e = read("ego", str(log_id), ["t_ns", "x", "y", "yaw", "speed"], window)
        if e is None or not e.num_rows:
            continue
        e = e.to_pandas().sort_values("t_ns")
        o = read(
            "objects", str(log_id), ["t_ns", "track_id", "category", "x", "y", "length", "width"],
            window,
        )  # fmt: skip
        o = None if o is None or not o.num_rows else _to_map(o.to_pandas(), e)
        for scene in scenes.itertuples():
            inside = (e["t_ns"] >= scene.start_ns) & (e["t_ns"] < scene.end_ns)
            ego[scene.scene_id] = e[inside]
            if o is not None:
                mine = (o["t_ns"] >= scene.start_ns) & (o["t_ns"] < scene.end_ns)
                objects[scene.scene_id] = o[mine]
    return ego, objects


def _to_map(objects: pd.DataFrame, ego: pd.DataFrame) -> pd.DataFrame:
    """Objects (ego frame: x forward, y left) placed in the map frame by the ego's pose at or
    just before each detection (as the frame's ASOF join; `ego` sorted by time)."""
    t = objects["t_ns"].to_numpy()
    et = ego["t_ns"].to_numpy()
    at = np.searchsorted(et, t, side="right") - 1
    keep = at >= 0
    at = at[keep]
    placed = objects[keep].reset_index(drop=True)
    ex, ey = ego["x"].to_numpy()[at], ego["y"].to_numpy()[at]
    yaw = ego["yaw"].to_numpy()[at]
    x, y = placed["x"].to_numpy(), placed["y"].to_numpy()
    c, s = np.cos(yaw), np.sin(yaw)
    return placed.assign(mx=ex + c * x - s * y, my=ey + s * x + c * y, myaw=yaw)


def picture(row: Any, ego: pd.DataFrame | None, objects: pd.DataFrame | None) -> str:
    """One scene's bird's-eye view as an `<svg>` element. Its `data-origin` is the anchor pose
    (x, y, yaw of the ego at the scene's middle), `data-scale` the pixels per metre and
    `data-center` (cx, cy), so a map point is drawn at (cx + u·scale, cy − v·scale) with (u, v)
    the point in the anchor's frame: u forward (the heading points right), v to the left."""
    scene_id = escape(str(row["scene_id"]))
    if ego is None or ego.empty:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'data-scene-id="{scene_id}" role="img"><rect width="100%" height="100%" '
            'fill="#f4f4f4"/><text x="50%" y="50%" text-anchor="middle" fill="#777">'
            "no ego samples</text></svg>"
        )
    mid = ego.iloc[len(ego) // 2]
    ax, ay, ayaw = float(mid["x"]), float(mid["y"]), float(mid["yaw"])

    def local(x, y):
        dx, dy = np.asarray(x, float) - ax, np.asarray(y, float) - ay
        c, s = math.cos(ayaw), math.sin(ayaw)
        return c * dx + s * dy, -s * dx + c * dy  # (forward, left)

    eu, ev = local(ego["x"], ego["y"])
    tracks: list[_Track] = []
    if objects is not None and not objects.empty:
        ou, ov = local(objects["mx"], objects["my"])
        near = _near_path(ou, ov, eu, ev)
        tracks = _tracks(objects[near], ou[near], ov[near], int(mid["t_ns"]))
    u_all = np.concatenate([eu, *(t.u for t in tracks)])
    v_all = np.concatenate([ev, *(t.v for t in tracks)])
    span_u = max(float(u_all.max() - u_all.min()), 1.0) + 2 * MARGIN_M
    span_v = max(float(v_all.max() - v_all.min()), 1.0) + 2 * MARGIN_M
    scale = min((WIDTH - 10) / span_u, (HEIGHT - 30) / span_v)
    cu, cv = (u_all.max() + u_all.min()) / 2, (v_all.max() + v_all.min()) / 2
    cx, cy = WIDTH / 2 - cu * scale, (HEIGHT - 20) / 2 + cv * scale

    def px(u, v) -> str:
        xs, ys = cx + np.asarray(u) * scale, cy - np.asarray(v) * scale
        return " ".join(f"{a:.0f},{b:.0f}" for a, b in zip(xs, ys, strict=True))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" data-scene-id="{scene_id}" '
        f'data-origin="{ax:.3f},{ay:.3f},{ayaw:.5f}" data-scale="{scale:.4f}" '
        f'data-center="{cx:.2f},{cy:.2f}">',
        f"<title>{scene_id}: bird's-eye view, heading right</title>",
        '<rect width="100%" height="100%" fill="#fbfbf8"/>',
    ]
    # the corridor: a band of 2 x 1.5 m along the ego path
    step = max(1, len(eu) // MAX_POINTS)
    parts.append(
        f'<polyline points="{px(eu[::step], ev[::step])}" fill="none" stroke="#9fd49f" '
        f'stroke-opacity="0.45" stroke-width="{2 * PATH_HALF_WIDTH_M * scale:.1f}" '
        'stroke-linecap="round" stroke-linejoin="round" data-layer="corridor"/>'
    )
    for track in tracks:
        colour = COLOURS[GROUP_OF.get(track.category.lower(), "other")]
        t_step = max(1, len(track.u) // MAX_POINTS)
        tid = escape(track.track_id)
        points = px(track.u[::t_step], track.v[::t_step])
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6" '
            f'stroke-opacity="0.8" data-track-id="{tid}" '
            f'data-category="{escape(track.category)}"/>'
        )
        parts.append(_box(track, cx, cy, scale, ayaw, colour, tid))
    # the ego path by speed band, a tick each second
    bands = np.clip((ego["speed"].to_numpy() // SPEED_STEP).astype(int), 0, len(SPEED_COLOURS) - 1)
    for band in np.unique(bands):
        pieces = _runs(bands == band)
        for a, b in pieces:
            b = min(b + 1, len(eu) - 1)  # join up with the next band
            sl = slice(a, b + 1, max(1, (b - a) // MAX_POINTS))
            parts.append(
                f'<polyline points="{px(eu[sl], ev[sl])}" fill="none" '
                f'stroke="{SPEED_COLOURS[band]}" stroke-width="3" data-layer="ego"/>'
            )
    t = (ego["t_ns"].to_numpy() - int(row["start_ns"])) / 1e9
    ticks = np.flatnonzero(np.diff(np.floor(t)) > 0) + 1
    for i in ticks:
        parts.append(
            f'<circle cx="{cx + eu[i] * scale:.1f}" cy="{cy - ev[i] * scale:.1f}" r="1.8" '
            'fill="#222"/>'
        )
    parts.append(_ego_marker(cx, cy, scale))
    parts.append(_scale_bar(scale))
    duration = (int(row["end_ns"]) - int(row["start_ns"])) / 1e9
    speed = float(np.nanmax(ego["speed"])) if len(ego) else 0.0
    parts.append(
        f'<text x="6" y="{HEIGHT - 6}" fill="#333" font-size="11">{duration:.1f} s · '
        f"{len(tracks)} tracks · max {speed:.1f} m/s</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class _Track:
    """One track's points in the picture's frame and its box at the middle instant."""

    track_id: str
    category: str
    u: np.ndarray
    v: np.ndarray
    at: int  # index of the point nearest the middle instant
    length: float
    width: float
    yaw: float


def _tracks(objects: pd.DataFrame, u: np.ndarray, v: np.ndarray, mid_ns: int) -> list[_Track]:
    """The objects split by track with NumPy (one sort, slices): pandas per group is slow."""
    if not len(objects):
        return []
    ids = objects["track_id"].astype(str).to_numpy()
    t = objects["t_ns"].to_numpy()
    order = np.lexsort((t, ids))
    ids, t, u, v = ids[order], t[order], u[order], v[order]
    category = objects["category"].astype(str).to_numpy()[order]
    length = objects["length"].to_numpy(dtype=float, na_value=np.nan)[order]
    width = objects["width"].to_numpy(dtype=float, na_value=np.nan)[order]
    yaw = objects["myaw"].to_numpy(dtype=float)[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        at = a + int(np.abs(t[a:b] - mid_ns).argmin())
        out.append(
            _Track(str(ids[a]), str(category[a]), u[a:b], v[a:b], at - a, length[at], width[at],
                   yaw[at])
        )  # fmt: skip
    return out


def _near_path(ou, ov, eu, ev) -> np.ndarray:
    """Objects within MAX_RANGE_M of some ego sample (far ones would shrink the picture)."""
    if not len(eu):
        return np.zeros(len(ou), bool)
    step = max(1, len(eu) // 50)
    pu, pv = eu[::step], ev[::step]
    d2 = (np.asarray(ou)[:, None] - pu[None, :]) ** 2 + (np.asarray(ov)[:, None] - pv[None, :]) ** 2
    return d2.min(axis=1) <= MAX_RANGE_M**2


def _box(track: _Track, cx, cy, scale, ayaw, colour, tid) -> str:
    length = track.length if track.length > 0 else 1.0  # NaN compares false: 1 m
    width = track.width if track.width > 0 else 1.0
    # boxes are drawn along the ego's heading then (objects carry no yaw in the lake)
    angle = -math.degrees(track.yaw - ayaw)
    x, y = cx + track.u[track.at] * scale, cy - track.v[track.at] * scale
    w, h = length * scale, width * scale
    return (
        f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{max(w, 2):.1f}" '
        f'height="{max(h, 2):.1f}" fill="{colour}" fill-opacity="0.55" stroke="{colour}" '
        f'transform="rotate({angle:.1f} {x:.1f} {y:.1f})" data-box="{tid}"/>'
    )


def _ego_marker(cx, cy, scale) -> str:
    """The ego at the middle instant: a small triangle pointing right, along its heading."""
    s = max(4.0, 2.4 * scale)
    return (
        f'<polygon points="{cx + s:.1f},{cy:.1f} {cx - s / 2:.1f},{cy - s / 2:.1f} '
        f'{cx - s / 2:.1f},{cy + s / 2:.1f}" fill="#111" data-layer="ego-now"/>'
    )


def _scale_bar(scale: float) -> str:
    metres = next((m for m in (5, 10, 20, 50, 100, 200) if m * scale >= 40), 500)
    x0, y0 = WIDTH - 10 - metres * scale, HEIGHT - 10
    return (
        f'<line x1="{x0:.1f}" y1="{y0}" x2="{WIDTH - 10}" y2="{y0}" stroke="#333" '
        f'stroke-width="2"/><text x="{WIDTH - 10}" y="{y0 - 4}" text-anchor="end" '
        f'font-size="10" fill="#333">{metres} m</text>'
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[0::2].tolist(), (edges[1::2] - 1).tolist(), strict=True))


def _card(scene_id: str, row: Any, score: Any, svg: str, keyframe: str | None) -> str:
    tags = ", ".join(escape(str(t)) for t in (row["tags"] if row["tags"] is not None else []))
    facts = []
    for name in FEATURES:
        value = row[name]
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            facts.append(f"{escape(name)} {value:.1f}" if isinstance(value, float)
                         else f"{escape(name)} {escape(str(value))}")  # fmt: skip
    header = f"<b>{escape(scene_id)}</b>"
    if score is not None and not (isinstance(score, float) and math.isnan(score)):
        header += f" · score {float(score):.3f}"
    image = (
        f'<img src="{keyframe}" alt="camera keyframe" width="{WIDTH}" '
        'style="display:block;margin-top:4px">'
        if keyframe
        else ""
    )
    return (
        f'<div class="fw-scene" data-scene-id="{escape(scene_id)}" '
        f'style="{CARD.format(w=WIDTH)}">{svg}{image}<div>{header}</div>'
        f"<div>{tags or '<i>no tags</i>'}</div>"
        f'<div style="color:#555">{" · ".join(facts)}</div></div>'
    )


def _keyframes(lake: Lake, rows: pd.DataFrame) -> dict[str, str]:
    """scene_id -> the camera keyframe as a data: URI, for scenes that have one and whose
    source MCAP file is still where the lake says (others go without)."""
    wanted = rows[rows["keyframe_t_ns"].notna()]
    if wanted.empty:
        return {}
    from mcap.reader import make_reader

    from ingest.clip import source_path

    con = lake.connect()
    con.register("_logs", pa.table({"log_id": pa.array(sorted(set(wanted["log_id"])))}))
    logs = con.execute(
        "SELECT log_id, source_uri, topics FROM logs JOIN _logs USING (log_id)"
    ).fetchall()
    out: dict[str, str] = {}
    for log_id, uri, topics in logs:
        camera = [t["topic"] for t in json.loads(topics or "[]") if t.get("kind") == "camera"]
        try:
            path = source_path(uri or "")
        except InputError:  # not a local file: no keyframe to read
            continue
        if not camera or path.suffix != ".mcap" or not path.is_file():
            continue
        mine = wanted[wanted["log_id"] == log_id]
        try:
            with path.open("rb") as handle:
                reader = make_reader(handle)
                for scene in mine.itertuples():
                    t = int(scene.keyframe_t_ns)  # the time base may be a header stamp
                    for _schema, _channel, message in reader.iter_messages(
                        topics=camera[:1], starting_at=t - 50_000_000, ending_before=t + 500_000_000
                    ):
                        image = _image(message.data)
                        if image:
                            out[scene.scene_id] = image
                        break
        except Exception:  # a damaged or replaced source: the picture goes without it
            continue
    return out


def _image(data: bytes) -> str | None:
    """A CDR CompressedImage's bytes as a data: URI (PNG or JPEG found by its magic)."""
    for magic, kind in ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg")):
        at = data.find(magic)
        if at >= 0:
            return f"data:image/{kind};base64," + base64.b64encode(data[at:]).decode()
    return None


__all__ = ["Gallery", "gallery", "picture"]
