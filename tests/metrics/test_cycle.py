"""Stitching and the report's numbers on a small event set with hand-computed answers.

The scenario (hours after Monday 2026-11-02 00:00 UTC):

    scene  log  collected ingested mined submitted labeled trained evaluated deployed
    s1     L1   0         3        5     6 (B1)    10      20 (M1) 22 (M1)   44 (M2)
    s2     L1   0         3        7     8 (B1)    16      20 (M1) 22 (M1)   44 (M2)
    s3     L1   1         3        9     13 (B2)   15      40 (M2) 41 (M2)   44 (M2)
    s4     L1   2         3        -     -         -       -       -         -

M1 (B1) failed evaluation and never shipped; M2 (B1, B2) did, so s1 and s2 reach `deployed`
with M2. s1 was labeled again at 30 h: the first completion counts.
"""

from __future__ import annotations

import datetime as dt

import pytest

import metrics
from flywheel.lake import Lake
from tests.metrics.builders import H, add_log, at, batch, stage


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    add_log(lake, "L1", {"s1": 0, "s2": 0, "s3": 1, "s4": 2}, ingested_h=3)
    stage(lake, "mined", {"s1": 5, "s2": 7, "s3": 9}, selection="sel")
    stage(lake, "mined", {"s1": 50}, selection="again")  # saved again later: first counts
    batch(lake, "B1", "acme", 48, {"s1": (6, 10), "s2": (8, 16)})
    batch(lake, "B2", "acme", 48, {"s3": (13, 15)})
    stage(lake, "labeled", {"s1": 30}, batch_id="B1")
    metrics.track(lake, "trained", "M1", batches=["B1"], at=at(20))
    metrics.track(lake, "evaluated", "M1", at=at(22), attrs={"passed": False})
    metrics.track(lake, "trained", "M2", batches=["B1", "B2"], at=at(40))
    metrics.track(lake, "evaluated", "M2", at=at(41))
    metrics.track(lake, "deployed", "M2", at=at(44))
    return lake


def _hours(frame, scene):
    row = frame.set_index("scene_id").loc[scene]
    return [
        None if row[s] is None or row[s] != row[s] else (row[s] - metrics_t0()) / H
        for s in metrics.STAGES
    ]


def metrics_t0() -> float:
    return at(0).timestamp()


def test_each_scene_gets_the_time_of_each_stage_it_reached(lake):
    frame = metrics.cycle(lake)
    frame[list(metrics.STAGES)] = frame[list(metrics.STAGES)].apply(
        lambda c: c.map(lambda v: None if v is None or v != v else v.timestamp())
    )
    assert _hours(frame, "s1") == [0, 3, 5, 6, 10, 20, 22, 44]
    assert _hours(frame, "s2") == [0, 3, 7, 8, 16, 20, 22, 44]
    assert _hours(frame, "s3") == [1, 3, 9, 13, 15, 40, 41, 44]
    assert _hours(frame, "s4") == [2, 3, None, None, None, None, None, None]
    assert frame.set_index("scene_id")["last_stage"].to_dict() == {
        "s1": "deployed",
        "s2": "deployed",
        "s3": "deployed",
        "s4": "ingested",
    }


def test_stage_percentiles_match_hand_computed_values(lake):
    report = metrics.build(lake, now=at(60))
    got = {s["stage"]: s for s in report.stages}
    # (count, p50, p90, p99) in hours; linear interpolation between order statistics
    expected = {
        "ingested": (4, 2.5, 3.0, 3.0),  # [1, 2, 3, 3]
        "mined": (3, 4.0, 5.6, 5.96),  # [2, 4, 6]
        "submitted": (3, 1.0, 3.4, 3.94),  # [1, 1, 4]
        "labeled": (3, 4.0, 7.2, 7.92),  # [2, 4, 8]
        "trained": (3, 10.0, 22.0, 24.7),  # [4, 10, 25]
        "evaluated": (3, 2.0, 2.0, 2.0),  # [1, 2, 2]
        "deployed": (3, 22.0, 22.0, 22.0),  # [3, 22, 22]
    }
    for name, (count, p50, p90, p99) in expected.items():
        s = got[name]
        assert s["count"] == count, name
        assert (s["p50_s"] / H, s["p90_s"] / H, s["p99_s"] / H) == pytest.approx((p50, p90, p99)), (
            name
        )
    assert got["collected"]["count"] == 4 and got["collected"]["p50_s"] is None


def test_cycle_wip_and_bottleneck(lake):
    report = metrics.build(lake, now=at(60))
    assert report.cycle["count"] == 3
    assert report.cycle["p50_s"] / H == pytest.approx(44.0)  # [43, 44, 44]
    assert report.cycle["p90_s"] / H == pytest.approx(44.0)
    assert report.wip == {
        "collected": 0,
        "ingested": 1,
        "mined": 0,
        "submitted": 0,
        "labeled": 0,
        "trained": 0,
        "evaluated": 0,
    }
    ingested = next(d for d in report.wip_detail if d["stage"] == "ingested")
    assert ingested["age_max_s"] / H == pytest.approx(57.0)  # s4, ingested at 3 h, now 60 h
    # medians over the deployed scenes: deployed 22 h of a 44 h median cycle
    assert report.bottleneck == "deployed"
    assert report.bottleneck_shares["deployed"] == pytest.approx(0.5)
    assert report.bottleneck_shares["trained"] == pytest.approx(10 / 44)
    assert "deployed" in report.bottleneck_sentence and "50%" in report.bottleneck_sentence


def test_lineage_and_vendor_turnaround(lake):
    report = metrics.build(lake, now=at(60))
    lineage = {m["model_id"]: m for m in report.lineage}
    assert lineage["M1"]["batches"] == ["B1"] and lineage["M1"]["deployed_at"] is None
    assert lineage["M2"]["batches"] == ["B1", "B2"] and lineage["M2"]["scenes"] == 3
    (acme,) = report.vendors
    assert (acme["vendor"], acme["tasks"], acme["labeled"], acme["batches"]) == ("acme", 3, 3, 2)
    assert acme["turnaround_p50_s"] / H == pytest.approx(4.0)  # [2, 4, 8]
    assert acme["within_sla"] == 1.0 and acme["open_past_sla"] == 0


def test_since_keeps_only_later_transitions(lake):
    report = metrics.build(lake, since=at(12), now=at(60))
    counts = {s["stage"]: s["count"] for s in report.stages}
    assert counts["ingested"] == 0 and counts["mined"] == 0
    assert counts["submitted"] == 1  # s3 at 13 h
    assert counts["labeled"] == 2  # s2 at 16 h, s3 at 15 h
    assert report.wip["ingested"] == 1  # work in progress is always as of now


def test_a_skipped_stage_counts_from_the_nearest_earlier_one(tmp_path):
    lake = Lake(tmp_path / "lake")
    add_log(lake, "L2", {"x": 0}, ingested_h=2)
    batch(lake, "B9", "acme", 24, {"x": (10, None)})  # submitted from a list never saved
    (submitted,) = [s for s in metrics.build(lake, now=at(11)).stages if s["stage"] == "submitted"]
    assert submitted["count"] == 1 and submitted["p50_s"] / H == pytest.approx(8.0)


def test_an_empty_lake_reports_nothing_without_failing(tmp_path):
    report = metrics.build(Lake(tmp_path / "empty"), now=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    assert report.scenes == 0 and report.bottleneck is None and report.alerts == []
    assert report.cycle["count"] == 0


def test_write_report_puts_the_page_in_the_lake_unless_told_where(tmp_path):
    lake = Lake(tmp_path / "empty")
    report = metrics.build(lake, now=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    assert metrics.write_report(lake, report) == lake.root / "_reports" / "report.html"
    assert (lake.root / "_reports" / "report.html").read_text().startswith("<!doctype html>")
    out = tmp_path / "here.html"
    assert metrics.write_report(lake, report, out) == out and out.is_file()
