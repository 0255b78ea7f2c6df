"""Flywheel's shared core: configuration, the lake, the stage-event log, errors and the CLI.

Stage packages (`ingest`, `mining`, `labeling`, `metrics`) build on it; it knows none of them
except the CLI, which imports a stage only when its command runs.
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

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "FlywheelError",
    "InputError",
    "Lake",
    "LakeError",
    "QueryError",
    "TransientError",
    "UsageError",
    "VendorError",
    "__version__",
    "load_config",
    "resolve",
]
