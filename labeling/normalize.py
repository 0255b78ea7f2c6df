"""Labels in one form: each vendor's result becomes the scenario classes chosen and the object
classes drawn, which is what the quality checks read (labeling.quality).

A vendor's own JSON stays in `labels.result`; `labels.classes` and `labels.objects` hold the
normalised form beside it. A new vendor adds a parser to `PARSERS`.

>>> normalise("simulated", [{"type": "choices", "value": {"choices": ["cut_in"]}}])
(['cut_in'], [])
>>> normalise("label-studio", '[{"type": "labels", "value": {"labels": ["car", "bus"]}}]')
([], ['bus', 'car'])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Label Studio's region types whose value holds object classes under the key of the type
REGION_TYPES = (
    "labels", "rectanglelabels", "polygonlabels", "ellipselabels", "keypointlabels",
    "brushlabels", "cuboidlabels",
)  # fmt: skip


def label_studio(result: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Label Studio's result list: `choices` are scenario classes, region labels objects."""
    classes: list[str] = []
    objects: list[str] = []
    for item in result if isinstance(result, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            continue
        kind, value = item.get("type"), item["value"]
        if kind == "choices":
            classes += [c for c in value.get("choices") or [] if isinstance(c, str)]
        elif kind in REGION_TYPES:
            objects += [c for c in value.get(kind) or [] if isinstance(c, str)]
    return sorted(set(classes)), sorted(set(objects))


# vendor -> parser of its result; the simulated vendor answers in Label Studio's format
PARSERS: dict[str, Callable[[Any], tuple[list[str], list[str]]]] = {
    "label-studio": label_studio,
    "simulated": label_studio,
}


def normalise(vendor: str, result: Any) -> tuple[list[str], list[str]]:
    """(scenario classes, object classes) of a vendor's `result` (its JSON, or text of it);
    empty lists when the result cannot be read."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except json.JSONDecodeError:
            return [], []
    return PARSERS.get(vendor, label_studio)(result)


__all__ = ["PARSERS", "normalise"]
