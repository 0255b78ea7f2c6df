"""The result objects a notebook shows: `str` is a short summary with the key numbers, and
`_repr_html_` a small table whose values are escaped."""

from __future__ import annotations

import datetime as dt

import pytest

import metrics
import mining
from ingest import ingest
from labeling import SimulatedVendor, submit, sync
from sim import generate

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    generate(folder / "drives", logs=2, seconds=20, seed=2)
    lake = folder / "lake"
    ingested = ingest([folder / "drives"], lake)
    m = mining.open(lake)
    m.save("all", m.sql("SELECT scene_id FROM scenes ORDER BY scene_id"))
    vendor = SimulatedVendor.for_lake(lake)
    submitted = submit(lake, "all", vendor, batch_size=3)
    vendor.advance(dt.timedelta(days=3))
    synced = sync(lake, vendor)
    return ingested, submitted, synced, metrics.build(lake)


def test_ingest_summary(results):
    summary = results[0]
    text = str(summary)
    assert "ingested 2 of 2 files" in text and f"{summary.as_dict()['scenes']} scenes" in text
    assert len(text.splitlines()) <= 4
    summary.source = HOSTILE
    html = summary._repr_html_()
    assert HOSTILE not in html and "&lt;script&gt;" in html and "<table>" in html


def test_submit_summary(results):
    summary = results[1]
    text = str(summary)
    assert "4 scenes" in text and "2 batches: 2 submitted" in text
    assert all(b.batch_id in text for b in summary.batches)
    summary.selection = HOSTILE
    html = summary._repr_html_()
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_sync_summary(results):
    summary = results[2]
    text = str(summary)
    assert "4 newly labeled" in text and "4 changes" in text
    summary.batches = [HOSTILE]
    html = summary._repr_html_()
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_report(results):
    report = results[3]
    text = str(report)
    assert f"{report.scenes} scenes" in text and len(text.splitlines()) == 3
    report.bottleneck = HOSTILE
    html = report._repr_html_()
    assert HOSTILE not in html and "&lt;script&gt;" in html and f"<td>{report.scenes}</td>" in html
