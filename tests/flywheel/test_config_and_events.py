import datetime as dt
import json

import pytest

from flywheel import events
from flywheel.config import load_config
from flywheel.errors import ConfigError
from flywheel.lake import Lake


def test_config_layers_and_sources(tmp_path, monkeypatch):
    (tmp_path / "flywheel.toml").write_text("[ingest]\nworkers = 3\nscene_seconds = 5\n")
    config = load_config(cwd=tmp_path)
    assert (config.ingest.workers, config.ingest.scene_seconds) == (3, 5.0)
    assert config.sources["ingest.workers"].endswith("flywheel.toml")
    monkeypatch.setenv("FLYWHEEL_WORKERS", "4")
    assert load_config(cwd=tmp_path).ingest.workers == 4
    flagged = load_config({"ingest.workers": 2, "ingest.scene_seconds": None}, cwd=tmp_path)
    assert flagged.ingest.workers == 2
    assert flagged.ingest.scene_seconds == 5.0
    assert flagged.sources["ingest.workers"] == "flag"


def test_config_errors_name_where_they_came_from(tmp_path):
    (tmp_path / "flywheel.toml").write_text("[ingest]\nworkers = 'many'\n")
    with pytest.raises(ConfigError, match=r"workers.*flywheel.toml"):
        load_config(cwd=tmp_path)
    (tmp_path / "flywheel.toml").write_text("[ingest]\nworkerz = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'workerz'"):
        load_config(cwd=tmp_path)
    (tmp_path / "flywheel.toml").write_text("[ingest\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(cwd=tmp_path)


def test_events_append_and_named_records_replace(tmp_path):
    lake = Lake(tmp_path)
    at = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    events.record(lake, ["a", "b"], "mined", at=at, attrs={"selection": "s"})
    events.record(lake, ["c"], "mined", at=at)
    events.record(lake, ["x"], "ingested", at=at, name="ingested-x")
    events.record(lake, ["x"], "ingested", at=at, name="ingested-x")
    rows = (
        lake.connect()
        .execute('SELECT entity_id, stage, "at", attrs FROM events ORDER BY 1')
        .fetchall()
    )
    assert [r[0] for r in rows] == ["a", "b", "c", "x"]
    assert rows[0][2] == at
    assert json.loads(rows[0][3]) == {"selection": "s"}
