"""The report's Licenses section and `license:` alerts: one per source that ends within the
warning window (while something depends on it) or has ended under a deployed model; none for
an open-ended source, a far end, or an ended source that nothing deployed uses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from flywheel import sources
from flywheel.config import MetricsConfig
from labeling import datasets
from metrics.html import render
from metrics.report import build, contract_json
from metrics.track import track
from tests.flywheel.test_lineage import TODAY
from tests.flywheel.test_lineage import build as build_lake


def license_alerts(report) -> dict[str, dict]:
    return {a["id"]: a for a in report.alerts if a["id"].startswith("license:")}


def test_alerts_name_the_source_its_end_and_the_models(tmp_path):
    lake = build_lake(tmp_path / "lake")  # partner ends in 10 days, old ended 3 days ago
    sources.add(lake, "far", "long deal", until=TODAY + dt.timedelta(days=400))
    sources.assign(lake, "far", ["fb"])
    version = datasets.create(lake, "cars", batches=["b1"])
    track(lake, "trained", "m-cars", datasets=[version.ref])
    track(lake, "deployed", "m-cars")
    track(lake, "trained", "m-old", batches=["b3"])  # old ended; m-old is not deployed

    report = build(lake)
    alerts = license_alerts(report)
    assert set(alerts) == {"license:partner"}
    partner = alerts["license:partner"]
    assert (TODAY + dt.timedelta(days=10)).isoformat() in partner["title"]
    assert "m-cars (deployed)" in partner["detail"]
    assert partner["command"] == "flywheel lineage source partner"

    # the old source's license ended: once a model trained on it ships, that is an alert
    track(lake, "deployed", "m-old")
    alerts = license_alerts(build(lake))
    assert set(alerts) == {"license:partner", "license:old"}
    assert (
        "ended on" in alerts["license:old"]["title"]
        and "m-old (deployed)" in (alerts["license:old"]["detail"])
    )

    # the window is a setting: 5 days is too short for partner's 10
    narrow = dataclasses.replace(MetricsConfig(), license_warning_days=5)
    assert set(license_alerts(build(lake, config=narrow))) == {"license:old"}


def test_the_licenses_section_lists_every_source(tmp_path):
    lake = build_lake(tmp_path / "lake")
    report = build(lake)
    rows = {r["source"]: r for r in report.licenses}
    assert set(rows) == {"fleet", "partner", "old"}
    assert (rows["fleet"]["logs"], rows["fleet"]["scenes"], rows["fleet"]["days_left"]) == (
        2,
        6,
        None,
    )
    assert rows["partner"]["days_left"] == 10 and rows["old"]["status"] == "ended"
    page = render(report)
    assert 'id="licenses"' in page and "partner EULA" in page
    data = json.loads(json.dumps(contract_json(report), default=str))
    assert {r["source"] for r in data["licenses"]} == {"fleet", "partner", "old"}
