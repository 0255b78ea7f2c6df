"""The real recorded logs in shared/data/real-logs ingest, with the counts of their README."""

from __future__ import annotations

import pytest

from flywheel.lake import Lake
from ingest import ingest

from .conftest import REAL_LOGS

pytestmark = pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")


def ingested(tmp_path, name: str) -> tuple[Lake, str]:
    lake = Lake(tmp_path / "lake")
    summary = ingest([REAL_LOGS / name], lake)
    assert summary.exit_code == 0, summary.results
    (result,) = summary.results
    assert result.status == "ingested"
    return lake, result.log_id


def count(lake: Lake, table: str, log_id: str) -> int:
    query = f"SELECT count(*) FROM {table} WHERE log_id = ?"
    return lake.connect().execute(query, [log_id]).fetchone()[0]


def test_ros1_bag_from_a_ground_robot(tmp_path):
    lake, log_id = ingested(tmp_path, "robot_localization_test1_husky.bag")
    con = lake.connect()
    assert con.execute("SELECT message_count, format FROM logs").fetchone() == (16806, "ros1bag")
    assert count(lake, "ego", log_id) == 3952
    assert count(lake, "imu", log_id) == 11865
    assert count(lake, "gnss", log_id) == 989
    lat, lon = con.execute("SELECT avg(lat), avg(lon) FROM gnss").fetchone()
    assert 42.37 < lat < 42.38 and -71.15 < lon < -71.14
    # 395 s of data -> about 40 scenes of 10 s, with kinematics of a slow ground robot
    scenes, top_speed = con.execute("SELECT count(*), max(max_speed) FROM scenes").fetchone()
    assert 38 <= scenes <= 41
    assert 0 < top_speed < 5
    start, end = con.execute("SELECT start_ns, end_ns FROM logs").fetchone()
    assert abs(start / 1e9 - 1432235498.025) < 0.01 and abs(end / 1e9 - 1432235893.332) < 0.01


def test_ros2_mcap_from_a_flight_test(tmp_path):
    lake, log_id = ingested(tmp_path, "cubs2_cub_stabilize_2025_11_13.mcap")
    con = lake.connect()
    assert con.execute("SELECT message_count FROM logs").fetchone() == (21258,)
    assert count(lake, "ego", log_id) == 19703
    speed = con.execute("SELECT max(speed), avg(speed) FROM ego").fetchone()
    assert 0 < speed[1] < speed[0] < 100  # derived from successive poses, finite
    assert 18 <= count(lake, "scenes", log_id) <= 20


def test_ros2_db3_with_a_custom_type_is_a_log_without_scenes(tmp_path):
    lake, log_id = ingested(tmp_path, "nebula_ars548_radar_1708578204.db3")
    con = lake.connect()
    assert con.execute("SELECT message_count, status FROM logs").fetchone() == (
        2,
        "no_recognised_topics",
    )
    assert count(lake, "scenes", log_id) == 0
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_all_real_logs_in_one_parallel_run(tmp_path):
    lake = Lake(tmp_path / "lake")
    summary = ingest([REAL_LOGS], lake, workers=2)
    assert summary.exit_code == 0
    assert summary.count("ingested") == 3
    assert lake.connect().execute("SELECT sum(message_count) FROM logs").fetchone() == (38066,)
