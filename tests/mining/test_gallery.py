"""Pictures of scenes: m.show's gallery, `mine … --html` and the report's galleries, checked
in the markup (one self-contained picture per scene, tracks where the lake says) and in
headless Chromium (pictures are not blank)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

import metrics
import mining
from flywheel.lake import Lake
from tests.faults.conftest import flywheel
from tests.metrics.test_report_html import _browser, _ink


def crossing(drives: Path, lake: Path) -> tuple[str, dict]:
    """A scene holding most of a planted pedestrian crossing, and the event."""
    truth = json.loads((drives / "truth.json").read_text())
    con = Lake(lake).connect()
    query = "SELECT regexp_extract(source_uri, '[^/]+$'), log_id FROM logs"
    ids = dict(con.execute(query).fetchall())
    kinds = (e for e in truth["events"] if e["kind"] == "pedestrian_crossing")
    event = next(e for e in kinds if e["log"] in ids)
    (scene,) = con.execute(
        "SELECT scene_id FROM scenes WHERE log_id = ? ORDER BY "
        "least(end_ns, ?) - greatest(start_ns, ?) DESC LIMIT 1",
        [ids[event["log"]], event["end_ns"], event["start_ns"]],
    ).fetchone()
    return scene, event | {"log_id": ids[event["log"]]}  # fmt: skip


def drawn(svg: str, track_id: str) -> np.ndarray:
    """The pixel points of the polyline of `track_id` in one picture."""
    pattern = rf'<polyline points="([^"]+)"[^>]*data-track-id="{re.escape(track_id)}"'
    match = re.search(pattern, svg)
    assert match, f"track {track_id} is not drawn"
    return np.array([[float(v) for v in p.split(",")] for p in match.group(1).split()])


def test_a_picture_per_scene_self_contained_and_escaped(lake_copy):
    mined_lake = lake_copy.root
    m = mining.open(mined_lake)
    result = m.rare(k=6)
    g = m.show(result)
    html = g._repr_html_()
    assert g.scene_ids == result.scene_id.tolist()
    cards = re.findall(r'<div class="fw-scene" data-scene-id="([^"]+)"', html)
    assert cards == result.scene_id.tolist()
    assert html.count("<svg") == len(result)
    assert "<script" not in html and "url(" not in html
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("data:", "#")), ref
    assert len(html) < 6 * 30_000  # a few tens of kB a picture
    for scene_id, score in zip(result.scene_id, result.score, strict=True):
        card = html.split(f'data-scene-id="{scene_id}"', 1)[1]
        assert f"score {score:.3f}" in card.split("</div></div>", 1)[0]


def test_the_planted_crossing_is_drawn_where_the_lake_says(lake_copy, drives):
    mined_lake = lake_copy.root
    scene, event = crossing(drives, mined_lake)
    svg = mining.open(mined_lake).show(scene)._repr_html_()
    origin = [float(v) for v in re.search(r'data-origin="([^"]+)"', svg).group(1).split(",")]
    scale = float(re.search(r'data-scale="([^"]+)"', svg).group(1))
    cx, cy = (float(v) for v in re.search(r'data-center="([^"]+)"', svg).group(1).split(","))
    lake = Lake(mined_lake)
    con = lake.connect()
    start, end = con.execute(
        "SELECT start_ns, end_ns FROM scenes WHERE scene_id = ?", [scene]
    ).fetchone()
    rows = con.execute(
        "SELECT o.x, o.y, e.x AS ex, e.y AS ey, e.yaw AS eyaw FROM objects o ASOF JOIN ego e "
        "ON o.log_id = e.log_id AND o.t_ns >= e.t_ns "
        "WHERE o.log_id = ? AND o.track_id = ? AND o.t_ns >= ? AND o.t_ns < ? ORDER BY o.t_ns",
        [event["log_id"], event["track_id"], start, end],
    ).fetchall()
    assert rows, "the crossing pedestrian is not in the scene"
    ax, ay, ayaw = origin
    expected = []
    for x, y, ex, ey, eyaw in rows:  # ego frame -> map -> the picture's frame -> pixels
        mx = ex + math.cos(eyaw) * x - math.sin(eyaw) * y
        my = ey + math.sin(eyaw) * x + math.cos(eyaw) * y
        u = math.cos(ayaw) * (mx - ax) + math.sin(ayaw) * (my - ay)
        v = -math.sin(ayaw) * (mx - ax) + math.cos(ayaw) * (my - ay)
        expected.append((cx + u * scale, cy - v * scale))
    expected = np.array(expected)
    points = drawn(svg, event["track_id"])
    # every drawn point is one of the lake's detections of that track (to the rounding pixel)
    gaps = np.min(np.linalg.norm(points[:, None, :] - expected[None, :, :], axis=2), axis=1)
    assert gaps.max() <= 1.0, gaps.max()
    assert 'data-category="pedestrian"' in svg.split(f'data-track-id="{event["track_id"]}"')[1][:60]


def test_the_gallery_renders_in_headless_chromium(lake_copy, tmp_path):
    mined_lake = lake_copy.root
    executable = _browser()
    from playwright.sync_api import sync_playwright

    m = mining.open(mined_lake)
    page_file = m.show(m.rare(k=4)).save(tmp_path / "gallery.html")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            pictures = page.locator("svg[data-scene-id]")
            assert pictures.count() == 4
            for i in range(4):
                ink, colours = _ink(pictures.nth(i).screenshot())
                assert ink > 0.02 and colours > 8, (i, ink, colours)
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]


def test_mine_html_writes_the_gallery_and_needs_scene_ids(lake_copy, tmp_path):
    mined_lake = lake_copy.root
    out = tmp_path / "rare.html"
    done = flywheel("mine", "rare", "--k", "3", "--lake", str(mined_lake), "--html", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.count('class="fw-scene"') == 3
    refused = flywheel(
        "mine", "sql", "SELECT 1 AS one", "--lake", str(mined_lake), "--html", str(tmp_path / "x")
    )
    assert refused.returncode == 2 and "scene_id" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_the_report_links_alerts_batches_and_selections_to_their_scenes(lake_copy, tmp_path):
    mined_lake = lake_copy.root
    from labeling import SimulatedVendor, submit

    m = mining.open(mined_lake)
    m.save("peds", m.sql("SELECT scene_id, 1.0 AS score FROM scenes WHERE n_pedestrians > 0"))
    vendor = SimulatedVendor.for_lake(mined_lake)
    sent = submit(mined_lake, "peds", vendor, batch_size=4)
    report = metrics.build(mined_lake)
    written = Path(metrics.write_report(mined_lake, report, tmp_path / "report.html"))
    page = written.read_text()
    links = dict(re.findall(r'<a href="(galleries/[^"]+)" data-gallery>([^<]+)</a>', page))
    assert set(links.values()) >= {"peds", *(b.batch_id for b in sent.batches)}
    for href, name in links.items():
        gallery = (written.parent / href).read_text()
        count = gallery.count('class="fw-scene"')
        if name == "peds":
            assert count == min(len(m.selection("peds")), 100)
        assert count > 0
    # throughput is small multiples: one panel per stage
    stages = {r["stage"] for r in report.throughput}
    chart = page.split('data-chart="throughput"')[1].split("</svg>")[0]
    assert len(re.findall(r'<g data-panel="', chart)) == len(stages)


def test_a_log_with_a_camera_shows_its_keyframe(tmp_path):
    from ingest import ingest
    from sim import generate

    generate(tmp_path / "drives", logs=1, seconds=25.0, seed=2, camera=True)
    assert ingest(sorted((tmp_path / "drives").glob("*.mcap")), tmp_path / "lake").exit_code == 0
    m = mining.open(tmp_path / "lake")
    ids = m.sql("SELECT scene_id FROM scenes ORDER BY scene_id").scene_id.tolist()
    html = m.show(ids)._repr_html_()
    assert html.count('<img src="data:image/png;base64,') == len(ids) > 0
    assert m.show(ids, camera=False)._repr_html_().count("<img") == 0
