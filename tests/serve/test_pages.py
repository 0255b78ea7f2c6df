"""The pages in headless Chromium, as a person uses them: the report and its links, galleries
that draw one picture per scene, and the buttons (token entered) approving once and rejecting.

`make test` installs Debian's `chromium` and sets FLYWHEEL_REQUIRE_BROWSER=1, so there a
missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import requests

import labeling

from ..metrics.test_report_html import _browser, _ink
from .conftest import TOKEN, stage_events, vendor_tasks

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _pictures_drawn(page, n: int) -> None:
    pictures = page.locator("[data-scene-id] svg")
    assert pictures.count() == n
    for i in range(n):
        box = pictures.nth(i).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        ink, colours = _ink(pictures.nth(i).screenshot())
        assert ink > 0.01 and colours > 5, (i, ink, colours)  # not blank


def test_the_pages_and_buttons_in_headless_chromium(world, tmp_path):
    executable = _browser()
    from playwright.sync_api import sync_playwright

    approve, reject = world.pending
    before = vendor_tasks(world.lake)
    requests_seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: requests_seen.append(r.url))
            page.goto(world.url)
            assert page.title() == "Flywheel cycle-time report"
            assert page.locator("#bottleneck").count() == 1  # the report itself
            page.screenshot(path=tmp_path / "home.png", full_page=True)
            for href in ("/selections/brakes", f"/batches/{approve}", "/alerts/sla%3Asimulated"):
                assert page.locator(f'a[href="{href}"]').count() >= 1, href
            # plain links lead to galleries: one picture per scene
            page.locator('a[href="/selections/brakes"]').first.click()
            page.wait_for_load_state()
            _pictures_drawn(page, 6)
            page.goto(world.url + "alerts/sla%3Asimulated")
            _pictures_drawn(page, 2)
            page.goto(world.url + f"batches/{approve}")
            _pictures_drawn(page, 2)
            page.screenshot(path=tmp_path / "batch.png", full_page=True)
            # the token, entered once, is carried by the buttons
            page.fill("#fw-token", TOKEN)
            page.fill("#fw-user", "dara")
            page.click("#fw-auth button[type=submit]")
            button = page.locator(f'button[data-action="/api/batches/{approve}/approve"]')
            out = page.locator("output[data-result]").first
            for _ in range(2):  # a double click submits once
                button.click()
                page.wait_for_function(
                    "el => el.getAttribute('data-status') !== null", arg=out.element_handle()
                )
                assert out.get_attribute("data-status") == "200"
                assert out.text_content() == "submitted"
                page.evaluate("el => el.removeAttribute('data-status')", out.element_handle())
            assert vendor_tasks(world.lake) == before + 2
            assert stage_events(world.lake, "approved") == [
                (approve, {"by": "dara", "via": "serve"})
            ]
            # the decisions page: reject the other batch
            page.goto(world.url + "decisions")
            row = page.locator(f'tr[data-batch-id="{reject}"]')
            row.locator("button.reject").click()
            result = row.locator("output[data-result]")
            result.wait_for()
            page.wait_for_function(
                "el => el.textContent === 'rejected'", arg=result.element_handle()
            )
        finally:
            browser.close()
    assert labeling.status(world.lake, reject)["state"].iloc[0] == "rejected"
    assert labeling.status(world.lake, approve)["state"].iloc[0] == "submitted"
    assert vendor_tasks(world.lake) == before + 2  # nothing sent for the rejected one
    assert [e for e, _ in stage_events(world.lake, "rejected")] == [reject]
    own = urlsplit(world.url).netloc
    assert all(urlsplit(u).netloc == own or u.startswith("data:") for u in requests_seen)


class _Refs(HTMLParser):
    """Every src/href (xlink:href too) of a page, and its CSS url()s."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if (
                name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action")
                and value
            ):
                self.refs.append(value)
            if name == "style" and value:
                self.css.append(value)
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def _own(ref: str) -> bool:
    ref = ref.strip()
    return ref.startswith(("data:", "#")) or (ref.startswith("/") and not ref.startswith("//"))


def test_every_page_is_self_contained(world):
    home = world.get("/")
    assert home.status_code == 200
    paths = ["/", "/decisions", *sorted(set(re.findall(r'href="(/[^"#]*)"', home.text)))]
    assert {"/selections/brakes", f"/batches/{world.pending[0]}", "/alerts/sla%3Asimulated"} <= set(
        paths
    )
    for path in paths:
        answer = world.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        refs = _Refs()
        refs.feed(answer.text)
        bad = [r for r in refs.refs if not _own(r)]
        assert bad == [], (path, bad)
        urls = [u for css in refs.css for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", css)]
        assert all(_own(u) for u in urls), (path, urls)


def test_names_in_paths_are_escaped(world):
    evil = 'x"><img src=x onerror=alert(1)>'  # no "/": ids never hold one
    for kind in ("selections", "batches", "alerts"):
        page = world.get(f"/{kind}/" + requests.utils.quote(evil, safe=""))
        assert page.status_code == 404, kind
        assert page.headers["content-type"].startswith("text/html")
        assert "<img src=x" not in page.text and "&lt;img src=x" in page.text, kind


def test_serve_refuses_a_public_host_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_SERVE_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    for token in (None, "", "  "):
        if token is not None:
            env["FLYWHEEL_SERVE_TOKEN"] = token
        out = subprocess.run(
            [sys.executable, "-m", "cli", "serve", "--host", "0.0.0.0", "--port", "0",
             "--lake", str(tmp_path / "lake")],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 2, (token, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "token" in out.stderr
        assert out.stdout == ""


def test_the_command_serves_and_prints_its_url(world, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLYWHEEL_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", "0", "--lake", str(world.lake.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        for _ in range(100):
            try:
                answer = requests.get(url.group(0) + "decisions", timeout=30)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer.status_code == 200 and world.pending[0] in answer.text
        wrong = requests.post(url.group(0) + f"api/batches/{world.pending[0]}/approve", timeout=30)
        assert wrong.status_code == 401
        # a page that rebinds its own name to 127.0.0.1 is refused
        rebound = requests.get(url.group(0), headers={"Host": "evil.example"}, timeout=30)
        assert rebound.status_code == 421
    finally:
        proc.terminate()
        proc.wait(timeout=30)
