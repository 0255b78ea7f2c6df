"""--topic-map entries are checked: one naming no topic of the log, one giving a recognised type
another kind, or one whose type has none of the kind's fields is reported, never silent; and the
summary says which topic went into which table.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import cli
from flywheel.lake import Lake
from ingest import ingest

from .conftest import REAL_LOGS


def test_the_result_says_which_topic_went_into_which_table(drives, tmp_path):
    summary = ingest([drives / "drive_0000.mcap"], Lake(tmp_path / "lake"))
    (result,) = summary.results
    assert result.tables == {
        "/odom": "ego",
        "/gnss/fix": "gnss",
        "/perception/objects": "objects",
    }
    topics = Lake(tmp_path / "lake").connect().execute("SELECT topics FROM logs").fetchone()[0]
    assert {t["topic"]: t["table"] for t in json.loads(topics)}["/odom"] == "ego"


def test_a_recognised_type_mapped_to_another_kind_is_refused(drives, tmp_path):
    lake = Lake(tmp_path / "lake")
    summary = ingest(
        [drives / "drive_0000.mcap"],
        lake,
        topic_map={"/odom": "imu", "/no/such/topic": "gnss"},
    )
    (result,) = summary.results
    assert summary.exit_code == 0 and result.tables["/odom"] == "ego"  # not read as IMU
    assert lake.connect().execute("SELECT count(*) FROM imu").fetchone() == (0,)
    notes = " | ".join(result.notes)
    assert "--topic-map /odom=imu refused" in notes and "ego data" in notes
    assert "--topic-map /no/such/topic=gnss matched nothing" in notes


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")
def test_a_type_without_the_kinds_fields_is_not_used_as_that_kind(tmp_path):
    # a LaserScan has no pose: mapped to ego it would give rows of NaN positions
    lake = Lake(tmp_path / "lake")
    scan = "/test/sensor_msgs/laser_scan"
    summary = ingest([REAL_LOGS / "rosbags_rs_test_bag_mcap"], lake, topic_map={scan: "ego"})
    (result,) = summary.results
    assert scan not in result.tables and result.tables["/test/nav_msgs/odometry"] == "ego"
    assert any(scan in n and "not used as ego" in n for n in result.notes)
    query = "SELECT count(*) FROM ego WHERE isnan(x) OR x IS NULL"
    assert lake.connect().execute(query).fetchone() == (0,)


def test_the_command_line_summary_prints_the_tables_and_the_topic_map_warnings(drives, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "ingest",
            str(drives / "drive_0000.mcap"),
            "--lake",
            str(tmp_path / "lake"),
            "--topic-map",
            "/odom=gnss",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "topics into tables: /odom -> ego" in result.output
    assert "topic map: --topic-map /odom=gnss refused" in result.output
