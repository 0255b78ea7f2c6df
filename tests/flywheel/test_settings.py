"""Settings are validated at load: every key's type and range, wherever the value comes from.

A malformed or out-of-range value in flywheel.toml, an environment variable or a flag exits 2
with the file (or the variable, or the flag), the key and what is allowed; never a traceback,
for any input.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import cli
from flywheel.config import (
    SECTIONS,
    Config,
    IngestConfig,
    LabelingConfig,
    MetricsConfig,
    MiningConfig,
    load_config,
)
from flywheel.errors import ConfigError


def run(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)
    assert "Traceback" not in result.output
    return result


def write(tmp_path, text: str):
    path = tmp_path / "flywheel.toml"
    path.write_text(text)
    return path


# (section, key, a TOML value that must be refused, a word the allowed part must hold)
REFUSED = [
    ("ingest", "scene_seconds", "0.001", ">= 1"),
    ("ingest", "scene_seconds", "0", ">= 1"),
    ("ingest", "scene_seconds", "-5", ">= 1"),
    ("ingest", "scene_seconds", "nan", "finite"),
    ("ingest", "scene_seconds", "inf", "finite"),
    ("ingest", "scene_seconds", "-inf", "finite"),
    ("ingest", "scene_seconds", "1e9", "<= 3600"),
    ("ingest", "scene_seconds", "true", "number"),
    ("ingest", "scene_seconds", '"10"', "number"),
    ("ingest", "workers", "true", "integer"),
    ("ingest", "workers", "false", "integer"),
    ("ingest", "workers", "0", ">= 1"),
    ("ingest", "workers", "-1", ">= 1"),
    ("ingest", "workers", "2.5", "integer"),
    ("ingest", "workers", "2.0", "integer"),
    ("ingest", "workers", '"4"', "integer"),
    ("ingest", "workers", "[1]", "integer"),
    ("ingest", "workers", "{a = 1}", "integer"),
    ("ingest", "workers", "1979-05-27", "integer"),
    ("ingest", "embedder", '"not a spec"', "package.module:attr"),
    ("ingest", "source", '"two words"', "a source name"),
    ("ingest", "embedder", "3", "package.module:attr"),
    ("ingest", "embedder", '""', "package.module:attr"),
    ("mining", "query_timeout_s", "0", "> 0"),
    ("mining", "query_timeout_s", "-1", "> 0"),
    ("mining", "query_timeout_s", "nan", "finite"),
    ("mining", "query_timeout_s", "true", "number"),
    ("mining", "query_memory", '"lots"', "4GB"),
    ("mining", "query_memory", '"4"', "4GB"),
    ("mining", "query_memory", '"-1GB"', "4GB"),
    ("mining", "query_memory", '"1KB"', "16MB"),
    ("mining", "query_memory", '"150%"', "4GB"),
    ("mining", "query_memory", "4", "4GB"),
    ("labeling", "batch_size", "0", ">= 1"),
    ("labeling", "batch_size", "true", "integer"),
    ("labeling", "batch_size", "1.5", "integer"),
    ("labeling", "max_cost", "-1", ">= 0"),
    ("labeling", "max_cost", "nan", "finite"),
    ("labeling", "max_cost", "true", "number"),
    ("labeling", "approval_threshold", "-0.01", ">= 0"),
    ("labeling", "approval_threshold", "inf", "finite"),
    ("labeling", "price_per_task", "-0.08", ">= 0"),
    ("labeling", "price_per_task", "false", "number"),
    ("labeling", "sla_hours", "0", "> 0"),
    ("labeling", "sla_hours", "-24", "> 0"),
    ("labeling", "turnaround_hours", "0", "> 0"),
    ("labeling", "label_studio_project", '"ab"', "3 to 50"),
    ("labeling", "label_studio_project", '"' + "x" * 51 + '"', "3 to 50"),
    ("labeling", "label_studio_project", "7", "text"),
    ("labeling", "simulated", "{ error_rate = 2 }", "error_rate (0 to 1)"),
    ("labeling", "simulated", '{ faults = [{ kind = "flip" }] }', 'kind = "swap"'),
    ("labeling", "simulated", '{ faults = [{ kind = "swap", classes = ["a"] }] }', "classes"),
    ("labeling", "simulated", '{ faults = [{ kind = "random", after = "soon" }] }', "ISO 8601"),
    ("ingest", "source", '"../x"', "a source name"),
    ("metrics", "license_warning_days", "-1", ">= 0"),
    ("metrics", "slow_factor", "0.5", ">= 1"),
    ("metrics", "slow_min_hours", "-1", ">= 0"),
    ("metrics", "slow_min_scenes", "0", ">= 1"),
    ("metrics", "slow_min_scenes", "true", "integer"),
    ("metrics", "baseline_weeks", "0", ">= 1"),
    ("metrics", "stuck_labeled_days", "-1", ">= 0"),
    ("metrics", "stuck_mined_days", "nan", "finite"),
    ("metrics", "stuck_trained_days", "-7", ">= 0"),
    ("metrics", "stuck_evaluated_days", "true", "number"),
    ("triggers", "columns", "3", "a table of lowercase names"),
    ("triggers", "columns", '{ KMH = "speed" }', "a table of lowercase names"),
    ("", "lake", "3", "text"),
    ("", "lake", '""', "1 to"),
    ("", "lake", "true", "text"),
]


@pytest.mark.parametrize(("section", "key", "value", "allowed"), REFUSED)
def test_a_refused_value_in_the_file_exits_2_naming_file_key_and_what_is_allowed(
    tmp_path, monkeypatch, section, key, value, allowed
):
    path = write(tmp_path, f"[{section}]\n{key} = {value}\n" if section else f"{key} = {value}\n")
    monkeypatch.chdir(tmp_path)
    result = run("config")
    assert result.exit_code == 2, result.output
    message = result.output
    assert str(path) in message
    assert f"'{key}'" in message and (f"[{section}]" in message if section else True)
    assert "allowed:" in message and allowed in message
    assert result.stdout == ""  # nothing printed as if the setting were fine


def test_every_setting_is_covered_by_a_refusal():
    declared = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    declared.add(".lake")
    assert declared == {f"{section}.{key}" for section, key, _, _ in REFUSED}


def test_good_values_load_and_ints_become_floats(tmp_path):
    write(
        tmp_path,
        """
lake = "s3://bucket/lake"
[ingest]
scene_seconds = 5
workers = 4
embedder = "ingest.embed:FeatureEmbedder"
[mining]
query_timeout_s = 0.5
query_memory = "512MiB"
[labeling]
max_cost = 0
price_per_task = 0
label_studio_project = "abc"
[metrics]
slow_factor = 1
stuck_mined_days = 0
""",
    )
    config = load_config(cwd=tmp_path)
    assert config.ingest.scene_seconds == 5.0 and isinstance(config.ingest.scene_seconds, float)
    assert config.ingest.workers == 4 and config.mining.query_memory == "512MiB"
    assert config.labeling.max_cost == 0.0 and config.metrics.slow_factor == 1.0
    for memory in ("4GB", "4 GB", "16MB", "1.5GiB", "80%"):
        write(tmp_path, f'[mining]\nquery_memory = "{memory}"\n')
        assert load_config(cwd=tmp_path).mining.query_memory == memory


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[ingest]\nworkerz = 1\n", ["unknown setting 'workerz'", "[ingest]", "workers"]),
        ("[ingets]\nworkers = 1\n", ["unknown section [ingets]", "[ingest]", "[metrics]"]),
        ("lak = 'x'\n", ["unknown setting 'lak'", "lake"]),
        ("ingest = 3\n", ["'ingest'", "must be a section"]),
        ("[ingest.deeper]\nx = 1\n", ["unknown setting 'deeper'", "[ingest]"]),
        ("[ingest\n", ["not valid TOML"]),
        ("workers = = 1\n", ["not valid TOML"]),
    ],
)
def test_unknown_keys_and_sections_and_bad_toml_exit_2(tmp_path, monkeypatch, text, words):
    path = write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    result = run("config")
    assert result.exit_code == 2
    assert str(path) in result.output
    for word in words:
        assert word in result.output


def test_a_file_that_is_not_utf8_or_not_a_file_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flywheel.toml").write_bytes(b'lake = "\xff\xfe"\n')
    result = run("config")
    assert result.exit_code == 2 and "not valid TOML" in result.output
    (tmp_path / "flywheel.toml").unlink()
    (tmp_path / "flywheel.toml").mkdir()
    result = run("config")
    assert result.exit_code == 2 and "is a folder" in result.output


@pytest.mark.parametrize(
    ("value", "allowed"), [("true", "integer"), ("0", ">= 1"), ("1.5", "integer"), ("", None)]
)
def test_environment_values_are_validated_the_same_way(tmp_path, monkeypatch, value, allowed):
    monkeypatch.chdir(tmp_path)
    result = run("config", env={"FLYWHEEL_WORKERS": value})
    if allowed is None:  # empty: not set
        assert result.exit_code == 0
        return
    assert result.exit_code == 2
    assert "$FLYWHEEL_WORKERS" in result.output and "'workers'" in result.output
    assert allowed in result.output


def test_environment_text_is_parsed_for_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLYWHEEL_WORKERS", " 3 ")
    assert load_config().ingest.workers == 3


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0.001", "0", "-1", "1e999", "7200"])
def test_scene_seconds_flag_goes_through_the_validator(tmp_path, value):
    drives = tmp_path / "drives"
    drives.mkdir()
    result = run(
        "ingest", str(drives), "--lake", str(tmp_path / "lake"), f"--scene-seconds={value}"
    )
    assert result.exit_code == 2
    assert "--scene-seconds" in result.output and "'scene_seconds'" in result.output
    assert "allowed: a finite number >= 1 and <= 3600" in result.output
    assert not (tmp_path / "lake").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-cost", "nan"),
        ("--max-cost", "-1"),
        ("--approval-threshold", "inf"),
        ("--batch-size", "0"),
    ],
)
def test_label_submit_flags_go_through_the_validator(tmp_path, flag, value):
    result = run(
        "label", "submit", "--selection", "s", "--vendor", "simulated", f"{flag}={value}",
        "--lake", str(tmp_path / "lake"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"flag {flag}" in result.output and "allowed:" in result.output


def test_workers_flag_and_python_construction_use_the_same_rule(tmp_path):
    drives = tmp_path / "drives"
    drives.mkdir()
    result = run("ingest", str(drives), "--lake", str(tmp_path / "lake"), "--workers", "0")
    assert result.exit_code == 2 and "flag --workers" in result.output
    for cls, kwargs in [
        (IngestConfig, {"workers": True}),
        (IngestConfig, {"scene_seconds": math.nan}),
        (MiningConfig, {"query_memory": "lots"}),
        (LabelingConfig, {"batch_size": 0}),
        (MetricsConfig, {"slow_min_scenes": 1.5}),
        (Config, {"lake": ""}),
    ]:
        with pytest.raises(ConfigError, match="allowed:"):
            cls(**kwargs)
    assert MetricsConfig(stuck_labeled_days=14).stuck_labeled_days == 14.0


def test_the_real_command_prints_one_line_and_no_traceback(tmp_path):
    write(tmp_path, "[ingest]\nworkers = true\n")
    done = subprocess.run(
        [sys.executable, "-m", "cli", "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: setting 'workers' in [ingest] ({tmp_path / 'flywheel.toml'}) is true; allowed: "
        "an integer >= 1 and <= 1024 (local Dask worker processes)"
    ]


def test_config_prints_every_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("config")
    assert result.exit_code == 0
    for name in (
        "ingest.workers",
        "mining.query_memory",
        "labeling.batch_size",
        "metrics.slow_factor",
    ):
        assert name in result.stdout


TOML_VALUES = st.one_of(
    st.sampled_from([True, False, math.nan, math.inf, -math.inf, 0, -1, 0.001, 1e300, "4", ""]),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
)
TYPES = {(s, f.name): str(f.type) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
TYPES[("", "lake")] = "str"
KEYS = [*TYPES, ("ingest", "nope"), ("nope", "x")]


def toml_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return json.dumps(value)  # a TOML basic string or array is JSON, near enough


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(KEYS), value=TOML_VALUES)
def test_no_value_of_any_type_escapes_the_validator(tmp_path, key, value):
    """Any value for any key: a Config holding a value of the key's type, or a ConfigError
    naming the file; nothing else (no other exception, no bool or text taken for a number,
    no nan or inf)."""
    section, name = key
    text = f"{name} = {toml_value(value)}\n"
    write(tmp_path, f"[{section}]\n{text}" if section else text)
    try:
        load_config(cwd=tmp_path)
    except ConfigError as error:
        assert "flywheel.toml" in str(error)
        return
    kind = TYPES[key]  # it loaded: the key is known, and the value is of its type
    assert not isinstance(value, bool)
    assert not isinstance(value, list)
    if "str" in kind:
        assert isinstance(value, str)
    else:
        assert isinstance(value, int | float) and math.isfinite(value)
        assert "float" in kind or isinstance(value, int)
