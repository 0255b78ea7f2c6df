"""Configuration in one place: defaults in code, then `flywheel.toml`, then environment, then flags.

>>> from flywheel.config import load_config
>>> load_config(overrides={"lake": "/tmp/lake"}).lake
'/tmp/lake'

Every setting is declared once, below: its type (the annotation) and what it allows
(`setting(default, ge=…, le=…)`). One validator (`check_setting`) enforces both wherever a
value comes from (the file, an environment variable, a flag, or Python), so a wrong value
fails at load with a `ConfigError` (exit 2) naming where it came from, the key and what is
allowed, and nothing downstream sees it:

- bools are not numbers and numbers are not text (``workers = true`` and ``workers = "4"``
  are refused in the file; the environment and flags give text, which is parsed);
- numbers are finite (no ``nan``, no ``inf``) and in range;
- unknown keys and sections are refused with the list of known ones.

>>> load_config(overrides={"ingest.scene_seconds": float("nan")})
Traceback (most recent call last):
...
flywheel.errors.ConfigError: setting 'scene_seconds' in [ingest] (flag --scene-seconds) is nan; allowed: a finite number >= 1 and <= 3600 (seconds per scene)
"""  # noqa: E501

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flywheel.errors import ConfigError
from flywheel.names import is_name

CONFIG_FILE = "flywheel.toml"

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
MIN_QUERY_MEMORY = 16 * 10**6  # bytes: below this DuckDB cannot run a query at all


def duckdb_size(value: str) -> bool:
    """Whether `value` is a DuckDB memory size Flywheel accepts: ``"4GB"``, ``"512MiB"``,
    ``"80%"`` (of the machine's memory), at least 16 MB.

    >>> duckdb_size("4GB"), duckdb_size("512 MiB"), duckdb_size("80%"), duckdb_size("lots")
    (True, True, True, False)
    """
    if match := _PERCENT.fullmatch(value):
        return 0 < float(match.group(1)) <= 100
    match = _SIZE.fullmatch(value)
    if not match:
        return False
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()] >= MIN_QUERY_MEMORY


_EMBEDDER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def setting(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    length: tuple[int, int] | None = None,
    check: Callable[[Any], bool] | None = None,
    allowed: str | None = None,
    unit: str | None = None,
) -> Any:
    """A setting's declaration: its default and what it allows beyond its type.

    `ge`/`gt`/`le` bound numbers; `length` (min, max) bounds text; `check` is any other test
    and `allowed` then says in words what it accepts; `unit` is shown with the range.
    """
    rule: dict[str, Any] = {"ge": ge, "gt": gt, "le": le, "length": length, "check": check}
    rule |= {"allowed": allowed, "unit": unit}
    return field(default=default, metadata={"setting": rule})


class _Settings:
    """Validates on construction too, so ``LabelingConfig(batch_size=0)`` fails like a file."""

    def __post_init__(self) -> None:
        section = getattr(self, "SECTION", "")
        for spec in fields(self):  # type: ignore[arg-type]
            if "setting" in spec.metadata:
                value = check_setting(section, spec, getattr(self, spec.name), "argument")
                object.__setattr__(self, spec.name, value)


@dataclass(frozen=True)
class IngestConfig(_Settings):
    SECTION = "ingest"
    # shorter than a second holds too few samples of the slowest topics (1 Hz GNSS) to
    # describe a scene; longer than an hour is no longer a scene
    scene_seconds: float = setting(10.0, ge=1, le=3600, unit="seconds per scene")
    workers: int = setting(1, ge=1, le=1024, unit="local Dask worker processes")
    embedder: str | None = setting(  # None = the built-in feature embedder
        None,
        check=lambda v: _EMBEDDER.fullmatch(v) is not None,
        allowed="'package.module:attr', e.g. 'mypkg.embedders:MyEmbedder' (omit the key for "
        "the built-in embedder)",
    )
    # the source (`flywheel source add`) recorded on every log ingested without --source
    source: str | None = setting(
        None,
        check=is_name,
        allowed="a source name: letters, digits, '.', '_' or '-' (flywheel source list)",
    )


@dataclass(frozen=True)
class MiningConfig(_Settings):
    SECTION = "mining"
    # every user query (`mine sql`, `m.sql`, `where`, triggers) runs under these bounds
    query_timeout_s: float = setting(60.0, gt=0, le=86_400, unit="seconds of wall time per query")
    query_memory: str = setting(  # DuckDB's memory_limit per query connection
        "4GB",
        check=duckdb_size,
        allowed='a DuckDB memory size of at least 16MB such as "4GB" or "512MiB", or a share '
        'of memory such as "50%"',
    )


FAULT_KINDS = ("swap", "random")


def _time_text(value: Any) -> bool:
    if isinstance(value, dt.datetime):  # TOML's own datetimes
        return value.tzinfo is not None
    if not isinstance(value, str):
        return False
    try:
        return dt.datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _simulated_faults(value: Any) -> bool:
    """[labeling.simulated]: error_rate in [0, 1], an integer seed, and faults, each a table
    with kind swap (two classes) or random, an optional annotator and `after` time."""
    if not isinstance(value, dict) or set(value) - {"error_rate", "seed", "faults"}:
        return False
    rate = value.get("error_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        return False
    if isinstance(value.get("seed", 0), bool) or not isinstance(value.get("seed", 0), int):
        return False
    faults = value.get("faults", [])
    if not isinstance(faults, list):
        return False
    for fault in faults:
        if not isinstance(fault, dict) or set(fault) - {"kind", "classes", "annotator", "after"}:
            return False
        if fault.get("kind") not in FAULT_KINDS:
            return False
        classes = fault.get("classes")
        if fault["kind"] == "swap" and not (
            isinstance(classes, list)
            and len(classes) == 2
            and len(set(classes)) == 2
            and all(isinstance(c, str) and c for c in classes)
        ):
            return False
        annotator = fault.get("annotator", "x")
        if not (isinstance(annotator, str) and annotator):
            return False
        if "after" in fault and not _time_text(fault["after"]):
            return False
    return True


@dataclass(frozen=True)
class LabelingConfig(_Settings):
    SECTION = "labeling"
    batch_size: int = setting(100, ge=1, le=100_000, unit="tasks per batch")
    max_cost: float | None = setting(None, ge=0, unit="USD per submit")  # None = no limit
    # USD per batch above which a person approves (None: never)
    approval_threshold: float | None = setting(None, ge=0, unit="USD per batch")
    price_per_task: float = setting(0.08, ge=0, unit="USD")  # the simulated vendor's price
    sla_hours: float = setting(24.0, gt=0, unit="hours")  # the simulated vendor's promise
    turnaround_hours: float = setting(4.0, gt=0, unit="hours")  # its median turnaround
    # the Label Studio project's title (Label Studio allows 3 to 50 characters)
    label_studio_project: str = setting("flywheel scenes", length=(3, 50))
    # the simulated vendor's faults, to try the label-quality checks ([labeling.simulated])
    simulated: dict[str, Any] | None = setting(  # noqa: RUF009 (a field(), like the others)
        None,
        check=_simulated_faults,
        allowed="a table: error_rate (0 to 1), seed (an integer) and [[labeling.simulated."
        'faults]] tables with kind = "swap" (classes = [A, B]) or "random", optional '
        'annotator and after (an ISO 8601 time with a zone, e.g. "2026-11-01T00:00:00Z")',
    )


@dataclass(frozen=True)
class MetricsConfig(_Settings):
    SECTION = "metrics"
    # a stage is slow when this week's p50 latency is above `slow_factor` x its trailing
    # baseline (the `baseline_weeks` before) and above it by `slow_min_hours`, over at least
    # `slow_min_scenes` scenes: a real shift, not a wiggle
    slow_factor: float = setting(1.5, ge=1, unit="times the baseline p50")
    slow_min_hours: float = setting(1.0, ge=0, unit="hours")
    slow_min_scenes: int = setting(20, ge=1, unit="scenes")
    baseline_weeks: int = setting(4, ge=1, le=520, unit="weeks")
    # work waiting at a stage longer than this is stuck (days; 0 = never alert). `ingested`
    # has none: most scenes are never mined, by design; `mined` is off by default, since
    # selections saved to explore are never meant for labeling. `submitted` is the SLA's.
    stuck_mined_days: float = setting(0.0, ge=0, unit="days, 0 = never")
    stuck_labeled_days: float = setting(14.0, ge=0, unit="days, 0 = never")
    stuck_trained_days: float = setting(7.0, ge=0, unit="days, 0 = never")
    stuck_evaluated_days: float = setting(14.0, ge=0, unit="days, 0 = never")
    # a source whose license ends within this many days raises an alert (lineage)
    license_warning_days: float = setting(30.0, ge=0, le=3650, unit="days")


_COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _derived_columns(value: Any) -> bool:
    return all(
        isinstance(k, str) and _COLUMN_NAME.fullmatch(k) and isinstance(v, str) and v.strip()
        for k, v in value.items()
    )


@dataclass(frozen=True)
class TriggersConfig(_Settings):
    SECTION = "triggers"
    # the user's own frame columns: name = one DuckDB expression over the frame's columns,
    # checked like a trigger's --when (`flywheel trigger columns` lists them)
    columns: dict[str, str] | None = setting(  # noqa: RUF009 (a field(), like the others)
        None,
        check=_derived_columns,
        allowed="a table of lowercase names to DuckDB expressions, e.g. [triggers.columns] "
        'closing = "speed * 3.6"',
    )


@dataclass(frozen=True)
class Config(_Settings):
    lake: str = setting("lake", length=(1, 4096))  # a folder or a URI (s3://bucket/prefix)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    # where each setting came from, for `flywheel config`
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS: dict[str, type] = {
    "ingest": IngestConfig,
    "mining": MiningConfig,
    "labeling": LabelingConfig,
    "metrics": MetricsConfig,
    "triggers": TriggersConfig,
}

# environment variables read, and the setting each one sets
ENVIRONMENT = {
    "FLYWHEEL_LAKE": "lake",
    "FLYWHEEL_WORKERS": "ingest.workers",
    "FLYWHEEL_EMBEDDER": "ingest.embedder",
}


# -- the validator --------------------------------------------------------------------------


class _Refused(Exception):
    """Internal: a value is not allowed (the caller says where it came from)."""


def _kind(spec: Field) -> tuple[str, bool]:
    """(base type name, whether None is allowed) from the annotation, e.g. ``float | None``."""
    names = [part.strip() for part in str(spec.type).split("|")]
    base = [n for n in names if n != "None"]
    return base[0], "None" in names


def _is_text(origin: str) -> bool:
    return origin.startswith("$") or origin.startswith("flag")


def _parse(text: str, kind: str) -> Any:
    """A value given as text (environment, flags) in the setting's type."""
    stripped = text.strip()
    if kind == "int" and re.fullmatch(r"[+-]?\d+", stripped):
        return int(stripped)
    if kind == "float":
        try:
            return float(stripped)
        except ValueError:
            pass
    if kind == "bool" and stripped.lower() in ("true", "false", "1", "0", "yes", "no"):
        return stripped.lower() in ("true", "1", "yes")
    return text


def _convert(spec: Field, value: Any, text: bool) -> Any:
    kind, nullable = _kind(spec)
    rule = spec.metadata["setting"]
    if value is None:
        if nullable:
            return None
        raise _Refused()
    if text and isinstance(value, str) and kind != "str":
        value = _parse(value, kind)
    if kind.startswith("dict"):
        if not isinstance(value, dict):
            raise _Refused()
    elif kind == "bool":
        if type(value) is not bool:
            raise _Refused()
        return value
    if kind in ("int", "float"):
        number_types = (int,) if kind == "int" else (int, float)
        # bool is an int subclass in Python, and never a count or an amount here
        if isinstance(value, bool) or not isinstance(value, number_types):
            raise _Refused()
        if kind == "float":
            value = float(value)
        if not math.isfinite(value):
            raise _Refused()
        if rule["ge"] is not None and value < rule["ge"]:
            raise _Refused()
        if rule["gt"] is not None and value <= rule["gt"]:
            raise _Refused()
        if rule["le"] is not None and value > rule["le"]:
            raise _Refused()
    elif kind == "str":
        if isinstance(value, os.PathLike):  # a Path for `lake`, from Python
            value = os.fspath(value)
        if not isinstance(value, str) or "\x00" in value:
            raise _Refused()
        low, high = rule["length"] or (0, None)
        if len(value) < low or (high is not None and len(value) > high):
            raise _Refused()
    if rule["check"] is not None and not rule["check"](value):
        raise _Refused()
    return value


def allowed(spec: Field) -> str:
    """What a setting allows, in words: ``a finite number >= 1 and <= 3600 (seconds …)``."""
    kind, _ = _kind(spec)
    rule = spec.metadata["setting"]
    if rule["allowed"]:
        return rule["allowed"]
    words = {
        "int": "an integer",
        "float": "a finite number",
        "str": "text",
        "bool": "true or false",
    }
    bounds = [
        f"{op} {_number(rule[key])}"
        for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="))
        if rule[key] is not None
    ]
    if rule["length"]:
        bounds.append("of {} to {} characters".format(*rule["length"]))
    text = f"{words[kind]} {' and '.join(bounds)}" if bounds else words[kind]
    return f"{text} ({rule['unit']})" if rule["unit"] else text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _shown(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 80 else text[:80] + "…"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"  # as TOML spells it
    return repr(value) if isinstance(value, float | int) else f"a {type(value).__name__}"


def _place(section: str, name: str, origin: str) -> str:
    where = f" in [{section}]" if section else ""
    return f"'{name}'{where} ({origin})"


def check_setting(section: str, spec: Field, value: Any, origin: str) -> Any:
    """`value` for setting `spec` of `section`, converted (an int for a float, text from the
    environment or a flag parsed), or ConfigError naming `origin`, the key and what is allowed.
    """
    try:
        return _convert(spec, value, _is_text(origin))
    except _Refused:
        raise ConfigError(
            f"setting {_place(section, spec.name, origin)} is {_shown(value)}; "
            f"allowed: {allowed(spec)}",
            setting=f"{section}.{spec.name}" if section else spec.name,
            origin=origin,
        ) from None


def _settings(cls: type) -> dict[str, Field]:
    return {f.name: f for f in fields(cls) if "setting" in f.metadata}


def _known() -> str:
    return ", ".join([*_settings(Config), *(f"[{s}]" for s in SECTIONS)])


# -- loading --------------------------------------------------------------------------------


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; {CONFIG_FILE} must be a TOML file") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _flag(key: str, flags: Mapping[str, str] | None) -> str:
    name = (flags or {}).get(key) or "--" + key.rpartition(".")[2].replace("_", "-")
    return f"flag {name}"


def load_config(
    overrides: Mapping[str, Any] | None = None,
    cwd: str | Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration: defaults < flywheel.toml < environment < `overrides` (flags).

    `overrides` uses dotted keys for sections (``{"ingest.workers": 2}``); None values are
    ignored. Every value is validated (see the module docstring): ConfigError, exit 2, names
    the file, the environment variable or the flag: `flags` maps a key to the flag that set
    it when that is not ``--`` and the key's name (``{"mining.query_timeout_s": "--timeout"}``).
    """
    values: dict[str, tuple[Any, str]] = {}  # dotted key -> (value, origin)
    sources: dict[str, str] = {}
    try:
        path = Path(cwd or os.getcwd()) / CONFIG_FILE
    except OSError as error:  # the working directory was removed
        raise ConfigError(f"cannot read the working directory: {error.strerror}") from None
    if path.exists() or path.is_symlink():
        for key, value in _read_file(path).items():
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{key!r} in {path} is {_shown(value)}; it must be a section: "
                        f"[{key}] with its settings below"
                    )
                for sub, subvalue in value.items():
                    values[f"{key}.{sub}"] = (subvalue, str(path))
            elif isinstance(value, dict):
                raise ConfigError(f"unknown section [{key}] in {path}; known: {_known()}")
            else:
                values[key] = (value, str(path))
    for env, key in ENVIRONMENT.items():
        if os.environ.get(env):
            values[key] = (os.environ[env], f"${env}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = (value, _flag(key, flags))

    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, (value, origin) in values.items():
        section, _, name = key.rpartition(".")
        if section and section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {origin}; known: {_known()}")
        known = _settings(SECTIONS[section] if section else Config)
        if name not in known:
            where = f" in [{section}]" if section else ""
            raise ConfigError(
                f"unknown setting {name!r}{where} ({origin}); known: "
                + (", ".join(sorted(known)) if section else _known())
            )
        checked = check_setting(section, known[name], value, origin)
        (parts[section] if section else top)[name] = checked
        sources[key] = "flag" if origin.startswith("flag") else origin
    built = {name: SECTIONS[name](**given) for name, given in parts.items()}
    return Config(**top, **built, sources=sources)


__all__ = [
    "CONFIG_FILE",
    "ENVIRONMENT",
    "SECTIONS",
    "Config",
    "IngestConfig",
    "LabelingConfig",
    "MetricsConfig",
    "MiningConfig",
    "TriggersConfig",
    "allowed",
    "check_setting",
    "duckdb_size",
    "load_config",
    "setting",
]
