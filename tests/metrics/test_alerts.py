"""Alerts: one per condition, with what, how much and since when; wiggles raise none."""

from __future__ import annotations

import pytest

import metrics
from flywheel.config import MetricsConfig
from flywheel.errors import InputError
from flywheel.lake import Lake
from tests.metrics.builders import add_log, at, batch

NOW_H = 24 * 40.0  # day 40 of the scenario
WEEK_H = 24 * 7.0


def _scenes(lake: Lake, log: str, n: int, end_h: float) -> list[str]:
    ids = [f"{log}-{i:03d}" for i in range(n)]
    add_log(lake, log, dict.fromkeys(ids, end_h), ingested_h=end_h + 1)
    return ids


def _labeled(lake: Lake, ids: list[str], batch_id: str, start_h: float, latency_h) -> None:
    """Scenes submitted at `start_h` + i/10 h and labeled `latency_h(i)` later."""
    tasks = {s: (start_h + i / 10, start_h + i / 10 + latency_h(i)) for i, s in enumerate(ids)}
    batch(lake, batch_id, "acme", 1000, tasks)


def _ids(alerts):
    return sorted(a.id if hasattr(a, "id") else a["id"] for a in alerts)


def test_one_sla_alert_per_late_vendor_naming_its_batches(tmp_path):
    lake = Lake(tmp_path / "lake")
    ids = _scenes(lake, "L", 6, end_h=0)
    now = NOW_H
    batch(
        lake,
        "late",
        "acme",
        24,
        {ids[0]: (now - 30, None), ids[1]: (now - 26, None), ids[2]: (now - 30, now - 20)},
    )
    batch(lake, "fresh", "acme", 24, {ids[3]: (now - 10, None)})
    batch(lake, "patient", "slowco", 72, {ids[4]: (now - 50, None)})
    report = metrics.build(lake, now=at(now))
    (alert,) = report.alerts
    assert alert["id"] == "sla:acme" and alert["kind"] == "sla_breach"
    assert alert["count"] == 2  # the finished task and the fresh batch are not breaches
    assert "late" in alert["detail"] and "fresh" not in alert["detail"]
    assert "24.0 h SLA" in alert["detail"] and "30.0 h" in alert["detail"]
    assert alert["since"] == at(now - 30 + 24).isoformat(timespec="seconds")
    assert alert["section"] == "#vendors"
    assert alert["command"] == "flywheel report --alert sla:acme"
    tasks = metrics.alert_entities(lake, "sla:acme", now=at(now))
    assert sorted(tasks["scene_id"]) == sorted(ids[:2])


def _slow_lake(tmp_path, this_week_latency_h, n_this_week=30) -> Lake:
    """40 labeled scenes over the 4 baseline weeks at ~10 h, then `n_this_week` this week."""
    lake = Lake(tmp_path / "lake")
    base = _scenes(lake, "base", 40, end_h=NOW_H - 5 * WEEK_H)
    _labeled(lake, base, "b-base", NOW_H - 4.5 * WEEK_H, lambda i: 8 + (i % 5))  # 8..12 h
    recent = _scenes(lake, "recent", n_this_week, end_h=NOW_H - 6 * 24)
    _labeled(lake, recent, "b-recent", NOW_H - 5 * 24, lambda i: this_week_latency_h + (i % 5))
    return lake


def test_a_stage_that_got_much_slower_raises_one_alert(tmp_path):
    lake = _slow_lake(tmp_path, this_week_latency_h=30)
    report = metrics.build(lake, now=at(NOW_H))
    slow = [a for a in report.alerts if a["kind"] == "slow_stage"]
    assert _ids(slow) == ["slow:labeled"]
    assert slow[0]["count"] == 30 and "32.0 h" in slow[0]["detail"]  # p50 of 30..34 h
    assert "10.0 h" in slow[0]["detail"]  # the baseline's p50
    scenes = metrics.alert_entities(lake, "slow:labeled", now=at(NOW_H))
    assert len(scenes) == 30 and scenes["latency_h"].iloc[0] == pytest.approx(34.0, abs=0.01)


@pytest.mark.parametrize("latency_h, n", [(12, 30), (30, 5)], ids=["wiggle", "thin-week"])
def test_a_wiggle_or_a_thin_week_raises_nothing(tmp_path, latency_h, n):
    lake = _slow_lake(tmp_path, this_week_latency_h=latency_h, n_this_week=n)
    report = metrics.build(lake, now=at(NOW_H))
    assert [a for a in report.alerts if a["kind"] == "slow_stage"] == []


def test_work_stuck_past_its_threshold_raises_one_alert_for_the_stage(tmp_path):
    lake = Lake(tmp_path / "lake")
    old = _scenes(lake, "old", 25, end_h=0)
    new = _scenes(lake, "new", 10, end_h=NOW_H - 72)
    _labeled(lake, old, "b-old", 10, lambda i: 5)  # labeled ~15 h: 39 days before now
    _labeled(lake, new, "b-new", NOW_H - 60, lambda i: 5)  # labeled 2 days before now
    config = MetricsConfig(stuck_labeled_days=14)
    report = metrics.build(lake, now=at(NOW_H), config=config)
    stuck = [a for a in report.alerts if a["kind"] == "stuck"]
    assert _ids(stuck) == ["stuck:labeled"]
    assert stuck[0]["count"] == 25 and "not yet trained" in stuck[0]["detail"]
    assert stuck[0]["since"] == at(15 + 14 * 24).isoformat(timespec="seconds")
    scenes = metrics.alert_entities(lake, "stuck:labeled", now=at(NOW_H), config=config)
    assert sorted(scenes["scene_id"]) == old
    # a threshold of 0 turns the check off
    quiet = metrics.build(lake, now=at(NOW_H), config=MetricsConfig(stuck_labeled_days=0))
    assert [a for a in quiet.alerts if a["kind"] == "stuck"] == []


def test_an_unknown_alert_id_is_a_clear_error(tmp_path):
    lake = Lake(tmp_path / "lake")
    _scenes(lake, "L", 1, end_h=0)
    with pytest.raises(InputError, match="sla:VENDOR, slow:STAGE, stuck:STAGE or license:SOURCE"):
        metrics.alert_entities(lake, "nonsense", now=at(NOW_H))
