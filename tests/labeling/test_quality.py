"""Label quality: planted faults (a swap for one annotator after a date, a random annotator, a
whole batch swapped) are found and named; natural noise (0-5 % random errors) and small
batches raise nothing. Precision and recall of the suspect rows over many seeded scenarios
are measured and printed."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from labeling.quality import CLASSES, assess

T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
ANNOTATORS = ("ana.k", "bo.li", "chen.w", "dara.o", "eli.m", "farah.s")
# how often each scenario shows in scenes (most scenes have no event: "other")
MIX = {"other": 0.55, "hard_brake": 0.12, "cut_in": 0.1, "stopped": 0.08, "high_speed": 0.08,
       "pedestrian_in_path": 0.07}  # fmt: skip


def scenario(seed, n=3000, batch_size=100, error_rate=0.03, fault=None):
    """Labels as the contract's simulated vendor gives them: the evidence, a share of plainly
    wrong labels at random, then the fault (swap, random, or a swapped batch)."""
    rng = np.random.default_rng(seed)
    kinds, weights = list(MIX), np.array(list(MIX.values()))
    expected = rng.choice(kinds, n, p=weights / weights.sum())
    annotator = rng.choice(ANNOTATORS, n)
    when = [T0 + dt.timedelta(hours=float(h)) for h in np.sort(rng.uniform(0, 24 * 60, n))]
    batch = [f"b{i // batch_size:04d}" for i in range(n)]
    given = []
    for i in range(n):
        label = expected[i]
        if rng.random() < error_rate:
            label = CLASSES[rng.integers(len(CLASSES))]
        if fault and fault["kind"] == "random" and annotator[i] == fault["annotator"]:
            label = CLASSES[rng.integers(len(CLASSES))]
        swapped = (
            fault
            and fault["kind"] == "swap"
            and (
                (annotator[i] == fault.get("annotator") and when[i] >= fault["after"])
                or batch[i] == fault.get("batch")
            )
        )
        if swapped:
            a, b = fault["classes"]
            label = b if label == a else a if label == b else label
        given.append([label])
    return pd.DataFrame(
        {
            "vendor": "simulated",
            "annotator": annotator,
            "batch_id": batch,
            "scene_id": [f"s{i}" for i in range(n)],
            "completed_at": pd.to_datetime(when),
            "given": given,
            "expected": [[e] for e in expected],
        }
    )


AFTER = T0 + dt.timedelta(days=30)
FAULTS = {
    "swap after a date": {"kind": "swap", "annotator": "chen.w", "after": AFTER,
                          "classes": ("hard_brake", "cut_in")},
    "random annotator": {"kind": "random", "annotator": "eli.m"},
    "swapped batch": {"kind": "swap", "batch": "b0007", "after": T0 + dt.timedelta(days=999),
                      "classes": ("hard_brake", "cut_in")},
}  # fmt: skip


def planted(name):
    fault = FAULTS[name]
    if "batch" in fault:
        return {("batch", fault["batch"])}
    return {("annotator", fault["annotator"])}


def suspects(rows):
    return {
        ("batch", r["batch_id"]) if r["kind"] == "batch" else ("annotator", r["annotator"])
        for r in rows
        if r["suspect"]
    }


def test_a_swap_after_a_date_is_found_and_named():
    rows = assess(scenario(1, fault=FAULTS["swap after a date"]))
    found = [r for r in rows if r["suspect"] and r["kind"] == "annotator"]
    assert [r["annotator"] for r in found] == ["chen.w"]
    reason = found[0]["reason"]
    assert "looks like a swap" in reason and "hard_brake" in reason and "cut_in" in reason
    assert "before 2026-1" in reason  # its own history: how it labeled before it began
    pairs = {(g, e) for g, e, _ in found[0]["confused"]}
    assert pairs == {("cut_in", "hard_brake"), ("hard_brake", "cut_in")}
    assert all(0 < share <= 1 for _, _, share in found[0]["confused"])


def test_a_swap_from_the_start_is_compared_with_the_rest_not_a_history_it_lacks():
    fault = {**FAULTS["swap after a date"], "after": T0 - dt.timedelta(days=1)}
    rows = assess(scenario(1, fault=fault))
    (found,) = [r for r in rows if r["suspect"] and r["kind"] == "annotator"]
    assert found["annotator"] == "chen.w" and "looks like a swap" in found["reason"]
    assert "before" not in found["reason"] and "for the rest" in found["reason"]


def test_a_random_annotator_and_a_swapped_batch_are_found():
    rows = assess(scenario(2, fault=FAULTS["random annotator"]))
    assert suspects(rows) & {("annotator", a) for a in ANNOTATORS} == {("annotator", "eli.m")}
    random_row = next(r for r in rows if r["annotator"] == "eli.m")
    assert "random" in random_row["reason"] and random_row["agreement"] < 0.3
    rows = assess(scenario(3, fault=FAULTS["swapped batch"]))
    assert ("batch", "b0007") in suspects(rows)
    assert not suspects(rows) & {("annotator", a) for a in ANNOTATORS}


@pytest.mark.parametrize("error_rate", [0.0, 0.01, 0.03, 0.05])
@pytest.mark.parametrize("batch_size", [10, 100, 500])
def test_natural_noise_raises_nothing(error_rate, batch_size):
    rows = assess(scenario(10 + batch_size, batch_size=batch_size, error_rate=error_rate))
    assert suspects(rows) == set()
    assert all(0 <= r["agreement"] <= 1 for r in rows)
    assert sum(r["labels"] for r in rows if r["kind"] == "annotator") == 3000


def test_precision_and_recall_over_seeded_scenarios(capsys):
    true_positive = false_positive = false_negative = 0
    for seed in range(12):
        for name in (None, *FAULTS):
            rate = [0.0, 0.02, 0.05][seed % 3]
            rows = assess(
                scenario(100 + seed, error_rate=rate, fault=FAULTS[name] if name else None)
            )
            want = planted(name) if name else set()
            got = suspects(rows)
            true_positive += len(got & want)
            false_positive += len(got - want)
            false_negative += len(want - got)
    precision = true_positive / max(true_positive + false_positive, 1)
    recall = true_positive / max(true_positive + false_negative, 1)
    with capsys.disabled():
        print(
            f"\nlabel quality over 48 seeded scenarios: precision {precision:.2f}, "
            f"recall {recall:.2f} ({true_positive} found, {false_positive} false, "
            f"{false_negative} missed)"
        )
    assert precision >= 0.95 and recall >= 0.9
