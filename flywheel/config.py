"""Configuration in one place: defaults in code, then `flywheel.toml`, then environment, then flags.

>>> from flywheel.config import load_config
>>> load_config(overrides={"lake": "/tmp/lake"}).lake
'/tmp/lake'
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flywheel.errors import ConfigError

CONFIG_FILE = "flywheel.toml"


@dataclass(frozen=True)
class IngestConfig:
    scene_seconds: float = 10.0
    workers: int = 1
    embedder: str | None = None  # "package.module:attr"; None = the built-in feature embedder


@dataclass(frozen=True)
class LabelingConfig:
    batch_size: int = 100
    max_cost: float | None = None  # USD per submit; None = no limit
    approval_threshold: float | None = None  # USD per batch above which a person approves
    price_per_task: float = 0.08  # USD, the simulated vendor's price
    sla_hours: float = 24.0  # the simulated vendor's turnaround promise
    turnaround_hours: float = 4.0  # the simulated vendor's median turnaround
    label_studio_project: str = "flywheel scenes"  # the Label Studio project's title


@dataclass(frozen=True)
class MetricsConfig:
    # a stage is slow when this week's p50 latency is above `slow_factor` x its trailing
    # baseline (the `baseline_weeks` before) and above it by `slow_min_hours`, over at least
    # `slow_min_scenes` scenes: a real shift, not a wiggle
    slow_factor: float = 1.5
    slow_min_hours: float = 1.0
    slow_min_scenes: int = 20
    baseline_weeks: int = 4
    # work waiting at a stage longer than this is stuck (days; 0 = never alert). `ingested`
    # has none: most scenes are never mined, by design; `mined` is off by default, since
    # selections saved to explore are never meant for labeling. `submitted` is the SLA's.
    stuck_mined_days: float = 0.0
    stuck_labeled_days: float = 14.0
    stuck_trained_days: float = 7.0
    stuck_evaluated_days: float = 14.0


@dataclass(frozen=True)
class Config:
    lake: str = "lake"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # where each setting came from, for `flywheel config`
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# environment variables read, and the setting each one sets
ENVIRONMENT = {
    "FLYWHEEL_LAKE": "lake",
    "FLYWHEEL_WORKERS": "ingest.workers",
    "FLYWHEEL_EMBEDDER": "ingest.embedder",
}


def _coerce(section: type, key: str, value: Any, origin: str) -> Any:
    types = {f.name: f.type for f in fields(section)}
    if key not in types:
        raise ConfigError(f"unknown setting {key!r} in {origin}; known: {', '.join(sorted(types))}")
    kind = types[key]
    try:
        if value is None:
            return None
        if "float" in str(kind):
            return float(value)
        if "int" in str(kind):
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key!r} in {origin} is not a valid {kind}: {value!r}") from exc


def load_config(overrides: dict[str, Any] | None = None, cwd: str | Path | None = None) -> Config:
    """Resolve the configuration: defaults < flywheel.toml < environment < `overrides` (flags).

    `overrides` uses dotted keys for sections (``{"ingest.workers": 2}``); None values are ignored.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = Path(cwd or os.getcwd()) / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            if isinstance(value, dict):
                for sub, subvalue in value.items():
                    values[f"{key}.{sub}"] = subvalue
                    sources[f"{key}.{sub}"] = str(path)
            else:
                values[key] = value
                sources[key] = str(path)
    for env, key in ENVIRONMENT.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
            sources[key] = f"${env}"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "flag"

    sections: dict[str, type] = {
        "ingest": IngestConfig,
        "labeling": LabelingConfig,
        "metrics": MetricsConfig,
    }
    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        if section in sections:
            parts[section][name] = _coerce(sections[section], name, value, sources[key])
        elif section == "":
            top[name] = _coerce(Config, name, value, sources[key])
        else:
            raise ConfigError(f"unknown section [{section}] in {sources[key]}")
    built = {name: sections[name](**fields_) for name, fields_ in parts.items()}
    return Config(**top, **built, sources=sources)
