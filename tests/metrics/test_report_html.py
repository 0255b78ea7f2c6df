"""The HTML report: self-contained, and its charts really render in headless Chromium.

`make test` installs Debian's `chromium` and sets FLYWHEEL_REQUIRE_BROWSER=1, so there a
missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil

import pytest

import metrics
from flywheel.lake import Lake
from sim import simulate_history

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
CHARTS = ("latency", "cycle-trend", "cycle-count", "wip", "throughput", "vendors")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("report") / "lake")
    simulate_history(
        lake, weeks=8, scenes_per_week=120, now=NOW, slowdown=3.0, vendors=("acme", "bolt")
    )
    report = metrics.build(lake, now=NOW)
    return metrics.write_html(report, lake.root / "report.html"), report


def test_the_page_fetches_nothing(report_file):
    path, report = report_file
    page = path.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page and "<img" not in page
    outside = re.findall(r"https?://[^\s\"'<>]+", page)
    assert set(outside) <= {"http://www.w3.org/2000/svg"}, outside
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in page
    assert report.bottleneck_sentence in page
    for alert in report.alerts:  # each alert, with its command, links to a section that exists
        assert alert["command"] in page
        assert f'id="{alert["section"][1:]}"' in page


def _browser() -> str | None:
    found = os.environ.get("FLYWHEEL_BROWSER") or shutil.which("chromium")
    if found:
        return found
    if os.environ.get("FLYWHEEL_REQUIRE_BROWSER"):
        pytest.fail("chromium is required (make test installs Debian's chromium package)")
    pytest.skip("no chromium on this machine (make test installs it)")


def _ink(png: bytes) -> tuple[float, int]:
    """Share of non-background pixels and the number of distinct colours of a screenshot."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    inked = (np.abs(pixels - background).sum(axis=1) > 60).mean()
    return float(inked), len(colours)


def test_the_charts_render_in_headless_chromium(report_file, tmp_path):
    path, report = report_file
    executable = _browser()
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(offline=True, viewport={"width": 1000, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            assert page.title() == "Flywheel cycle-time report"
            page.screenshot(path=tmp_path / "report.png", full_page=True)
            for chart in CHARTS:
                svg = page.locator(f'svg[data-chart="{chart}"]')
                assert svg.count() == 1, chart
                box = svg.bounding_box()
                assert box and box["width"] > 300 and box["height"] > 60, (chart, box)
                shapes = svg.locator("rect, polyline, circle, line").count()
                assert shapes >= 3, (chart, shapes)
                ink, colours = _ink(svg.screenshot())
                assert ink > 0.01 and colours > 5, (chart, ink, colours)  # not blank
            # the latency chart draws one histogram row per stage with data
            rows = page.locator('svg[data-chart="latency"] text').all_text_contents()
            assert {"labeled", "trained", "deployed"} <= set(rows)
            assert page.locator(".alert").count() == len(report.alerts) > 0
        finally:
            browser.close()
    assert requests == [path.as_uri()]  # the page itself and nothing else
