"""Labeling vendors: the interface (`base`) and one adapter module per vendor."""

from labeling.vendors.base import LABELED, SUBMITTED, TaskSpec, TaskUpdate, Vendor, key, split_key
from labeling.vendors.simulated import SimulatedVendor

__all__ = [
    "LABELED",
    "SUBMITTED",
    "SimulatedVendor",
    "TaskSpec",
    "TaskUpdate",
    "Vendor",
    "key",
    "open_vendor",
    "split_key",
]


def open_vendor(name: str, lake_root, settings) -> Vendor:
    """The vendor called `name` for a lake, configured from `settings` (a LabelingConfig).

    >>> from flywheel.config import LabelingConfig
    >>> open_vendor("simulated", lake, LabelingConfig()).name
    'simulated'
    """
    import datetime as dt

    from flywheel.errors import ConfigError

    if name == "simulated":
        faults = settings.simulated or {}
        return SimulatedVendor.for_lake(
            lake_root,
            price_per_task=settings.price_per_task,
            sla=dt.timedelta(hours=settings.sla_hours),
            turnaround_median=dt.timedelta(hours=settings.turnaround_hours),
            error_rate=faults.get("error_rate", 0.0),
            seed=faults.get("seed", 0),
            faults=faults.get("faults", ()),
        )
    if name == "label-studio":
        import os

        from labeling.vendors.label_studio import LabelStudioVendor

        url = os.environ.get("LABEL_STUDIO_URL", "").strip()
        api_key = os.environ.get("LABEL_STUDIO_API_KEY", "").strip()
        missing = [
            n for n, v in (("LABEL_STUDIO_URL", url), ("LABEL_STUDIO_API_KEY", api_key)) if not v
        ]
        if missing:
            raise ConfigError(
                f"the label-studio vendor needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the "
                f"environment; missing: {', '.join(missing)}"
            )
        return LabelStudioVendor(
            url,
            api_key,
            project_title=settings.label_studio_project,
            price_per_task=settings.price_per_task,
            sla=dt.timedelta(hours=settings.sla_hours),
        )
    raise ConfigError(f"unknown vendor {name!r}; known: simulated, label-studio")
