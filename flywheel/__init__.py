"""Flywheel's shared core: configuration, the lake and its schemas, the stage-event log,
sources and lineage, errors.

Stage packages (`ingest`, `mining`, `labeling`, `metrics`) build on it; it knows none of them.

>>> lin = lineage(lake)   # which data trained which model
>>> list(lin.models().columns)[:2]
['model', 'trained_at']
"""

from flywheel.config import Config, load_config
from flywheel.errors import (
    ConfigError,
    FlywheelError,
    InputError,
    LakeError,
    QueryError,
    TransientError,
    UsageError,
    VendorError,
)
from flywheel.lake import Lake, resolve
from flywheel.lineage import Lineage, lineage

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "FlywheelError",
    "InputError",
    "Lake",
    "LakeError",
    "Lineage",
    "QueryError",
    "TransientError",
    "UsageError",
    "VendorError",
    "__version__",
    "lineage",
    "load_config",
    "resolve",
]
