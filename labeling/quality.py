"""Label quality: every label checked against what the lake knows of its scene, and the
batches, annotators and vendors whose labels disagree far more than they should.

**Evidence.** A label's scenario classes (labeling.normalize) are compared with the classes the
lake expects for its scene: the rule-based tags ingest derived from the signals and the
perceived objects (`scenes.tags`, limited to the classes annotators choose from), or `other`
when no tag applies. A label agrees when the two sets are equal; a label that disagrees gives
pairs (class given, class expected), e.g. (`cut_in`, `hard_brake`).

**Rows.** One per (vendor, annotator) and one per (vendor, batch): how many labels, the share
that agree, and the confused pairs, each as the share of the row's labels whose evidence said
`expected` that were given `given`.

**Suspect.** A row is suspect when it disagrees far above the rest of the population, by a
one-sided binomial test that accounts for how many labels it has (scipy's `binom.sf`), with a
Bonferroni bound over every test made, at least `MIN_ERRORS` disagreeing labels and a share at
least `MIN_GAP` above the population's: per confused pair (a swap moves one pair a lot) and
over all its labels (a random annotator moves every pair a little). A small batch with two
errors, or a few percent of random errors everywhere, raises nothing. For an annotator, the
reason also gives the share before the time it began (its own history), and names a swap when
both directions of a pair are suspect.

>>> frame = pd.DataFrame({"vendor": ["v"] * 3, "annotator": ["a"] * 3, "batch_id": ["b"] * 3,
...     "scene_id": ["s1", "s2", "s3"], "completed_at": pd.to_datetime(["2026-01-01"] * 3),
...     "given": [["cut_in"], ["other"], ["other"]], "expected": [["hard_brake"], ["other"], ["other"]]})
>>> [(r["annotator"], r["labels"], round(r["agreement"], 2), r["suspect"]) for r in assess(frame)]
[('a', 3, 0.67, False), (None, 3, 0.67, False)]
"""  # noqa: E501

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import binom

from flywheel import events, schemas, sources
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from labeling.normalize import normalise

ALPHA = 1e-3  # family-wise: divided by the number of tests made
MIN_ERRORS = 5  # disagreeing labels a row needs before it can be suspect
MIN_GAP = 0.15  # and its share must be this far above the population's
CLASSES = (*schemas.DETECTED_TAGS, "other")  # what annotators choose from

LABELS_SQL = """
SELECT l.vendor, l.annotator, l.batch_id, l.scene_id, l.completed_at, l.classes, l.result,
    s.tags, r.batch_id IS NOT NULL AS rejected
FROM labels l
JOIN scenes s USING (scene_id)
LEFT JOIN (SELECT DISTINCT batch_id, annotator FROM rejections) r
    ON r.batch_id = l.batch_id AND (r.annotator IS NULL OR r.annotator = l.annotator)
WHERE l.result IS NOT NULL
"""


def labels(lake: str | Lake | None = None) -> pd.DataFrame:
    """Every label with its evidence: vendor, annotator, batch_id, scene_id, completed_at,
    given (the classes chosen), expected (from the scene's tags), agree, rejected."""
    lake = resolve(lake)
    with lake.connect(snapshot=lake.snapshot(["labels", "scenes", "rejections"])) as con:
        frame = con.sql(LABELS_SQL).to_arrow_table().to_pandas()
    known = set(CLASSES)
    frame["given"] = [
        list(c) if c is not None else normalise(v, r)[0]
        for v, c, r in zip(frame["vendor"], frame["classes"], frame["result"], strict=True)
    ]
    frame["expected"] = [sorted(set(t) & known) or ["other"] for t in frame["tags"]]
    frame["agree"] = [
        set(g) == set(e) for g, e in zip(frame["given"], frame["expected"], strict=True)
    ]
    return frame.drop(columns=["classes", "result", "tags"])


def quality(
    lake: str | Lake | None = None, batch: str | None = None, vendor: str | None = None
) -> list[dict[str, Any]]:
    """The rows of `flywheel label quality` (see the module docstring), suspect ones first;
    `batch` and `vendor` keep the rows of that batch or vendor (tests use every label)."""
    rows = assess(labels(lake))
    if batch is not None:
        rows = [r for r in rows if r["batch_id"] == batch]
    if vendor is not None:
        rows = [r for r in rows if r["vendor"] == vendor]
    return rows


def assess(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The quality rows of a frame of labels (columns as `labels` gives them)."""
    frame = frame.reset_index(drop=True)
    if frame.empty:
        return []
    agree = frame["agree"] if "agree" in frame else _agree(frame)
    frame = frame.assign(agree=agree.astype(bool))
    pairs = _pairs(frame)
    expected = frame[["expected"]].explode("expected").rename(columns={"expected": "e"})
    groups = [("annotator", ["vendor", "annotator"]), ("batch", ["vendor", "batch_id"])]
    keyed = {kind: frame.groupby(keys, dropna=False).indices for kind, keys in groups}
    distinct_pairs = len(pairs[["g", "e"]].drop_duplicates())
    tests = sum(len(k) for k in keyed.values()) * (1 + max(distinct_pairs, 1))
    total_n, total_k = len(frame), int((~frame["agree"]).sum())
    pair_totals = pairs.groupby(["g", "e"]).size()
    expected_totals = expected.groupby("e").size()
    out = []
    for kind, indices in keyed.items():
        for key, idx in indices.items():
            row = _row(
                frame, pairs, expected, kind, key, idx, total_n, total_k, pair_totals,
                expected_totals, tests,
            )  # fmt: skip
            out.append(row)
    out.sort(key=lambda r: (not r["suspect"], r["batch_id"] is not None, r["agreement"]))
    return out


def _agree(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [set(g) == set(e) for g, e in zip(frame["given"], frame["expected"], strict=True)]
    )


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """(label index, g given, e expected) for each disagreeing label's differing classes."""
    rows = []
    for i, given, wanted, ok in zip(
        frame.index, frame["given"], frame["expected"], frame["agree"], strict=True
    ):
        if ok:
            continue
        extra = sorted(set(given) - set(wanted)) or ["none"]
        missing = sorted(set(wanted) - set(given)) or ["none"]
        rows += [(i, g, e) for g in extra for e in missing]
    return pd.DataFrame(rows, columns=["i", "g", "e"]).set_index("i")


def _row(frame, pairs, expected, kind, key, idx, total_n, total_k, pair_totals, e_totals, tests):
    vendor, who = key
    n = len(idx)
    k = int((~frame["agree"].iloc[idx]).sum())
    p0 = (total_k - k + 1) / (total_n - n + 2)  # the rest of the population, smoothed
    alpha = ALPHA / tests
    mine = pairs[pairs.index.isin(idx)]
    e_here = expected[expected.index.isin(idx)].groupby("e").size()
    confused, suspects = [], []
    for (g, e), k_ge in mine.groupby(["g", "e"]).size().items():
        n_e = int(e_here.get(e, 0)) if e != "none" else n
        rest_k = int(pair_totals.get((g, e), 0)) - int(k_ge)
        rest_n = (int(e_totals.get(e, 0)) if e != "none" else total_n) - n_e
        q = (rest_k + 0.5) / (rest_n + 1)
        share = k_ge / n_e if n_e else 0.0
        p = binom.sf(k_ge - 1, n_e, min(max(q, 1e-4), 1.0)) if n_e else 1.0
        confused.append([g, e, round(share, 4)])
        if p < alpha and k_ge >= MIN_ERRORS and share >= q + MIN_GAP:
            suspects.append((g, e, float(share), float(q), int(k_ge)))
    overall = binom.sf(k - 1, n, p0) if k else 1.0
    spread = bool(overall < alpha and k >= MIN_ERRORS and k / n >= p0 + MIN_GAP)
    suspect = bool(suspects) or spread
    confused.sort(key=lambda c: -c[2])
    if suspects:
        confused = [[g, e, round(s, 4)] for g, e, s, *_ in sorted(suspects, key=lambda x: -x[2])]
    else:
        confused = confused[:5]
    # the suspect pairs explain most of the disagreement (a swap), or not (answers at random)
    explained = sum(x[4] for x in suspects) / k if k else 0.0
    reason = _reason(frame, pairs, idx, kind, suspects, explained, k / n, p0) if suspect else None
    return {
        "kind": kind,
        "vendor": vendor,
        "annotator": who if kind == "annotator" else None,
        "batch_id": who if kind == "batch" else None,
        "labels": n,
        "agreement": float(1 - k / n),
        "population_agreement": float(1 - p0),
        "suspect": suspect,
        "reason": reason,
        "confused": confused,
    }


def _reason(frame, pairs, idx, kind, suspects, explained, rate, p0) -> str:
    if explained < 0.5:  # many classes confused at once, not a few pairs
        return (
            f"{rate:.0%} of its labels disagree with the evidence, vs {p0:.0%} for the rest, "
            "spread over many classes: looks like answers at random"
        )
    g, e, share, q, _ = max(suspects, key=lambda s: s[2])
    text = f"{share:.0%} of {g} labels given on scenes whose evidence says {e}"
    if kind == "annotator":
        before = _before(frame, pairs, idx, g, e)
        if before is not None:
            text += f", vs {before[0]:.0%} before {before[1]:%Y-%m-%d}"
        else:
            text += f", vs {q:.0%} for the rest"
    else:
        text += f", vs {q:.0%} for the rest"
    if any(s[:2] == (e, g) for s in suspects):
        text += f": looks like a swap of {e} and {g}"
    return text


def _before(frame, pairs, idx, g, e) -> tuple[float, dt.datetime] | None:
    """The row's own share of (g for e) before the time it rose, and that time (None when
    too little history precedes it)."""
    mine = frame.iloc[idx]
    wanted = mine[[e in x for x in mine["expected"]]].sort_values("completed_at")
    hit = pairs[(pairs["g"] == g) & (pairs["e"] == e)].index
    flags = wanted.index.isin(hit).astype(float)
    if len(flags) < 20:
        return None
    after_sum = np.cumsum(flags[::-1])[::-1]  # pairs from position j on
    positions = np.arange(len(flags))
    after_n = len(flags) - positions
    before_n = positions
    before_sum = after_sum[0] - after_sum
    gap = np.where(
        before_n >= 10, after_sum / after_n - before_sum / np.maximum(before_n, 1), -np.inf
    )
    best = int(np.argmax(gap * np.sqrt(after_n)))
    if not np.isfinite(gap[best]) or before_n[best] < 10:
        return None
    return before_sum[best] / before_n[best], wanted["completed_at"].iloc[best]


def row_labels(lake: str | Lake | None, alert_id: str) -> pd.DataFrame:
    """The labels behind a quality row or alert: ``quality:<vendor>:<annotator>`` or
    ``quality:batch:<batch_id>``; disagreeing ones first."""
    frame = labels(lake)
    kind, _, rest = alert_id.removeprefix("quality:").partition(":")
    if kind == "batch":
        chosen = frame[frame["batch_id"] == rest]
    else:
        chosen = frame[(frame["vendor"] == kind) & (frame["annotator"] == rest)]
    if chosen.empty:
        raise InputError(
            f"no labels for {alert_id!r}: ids look like quality:VENDOR:ANNOTATOR or "
            "quality:batch:BATCH_ID (`flywheel label quality` lists the rows)"
        )
    return chosen.sort_values(["agree", "completed_at", "scene_id"])


def reject(
    lake: str | Lake | None,
    batch_id: str,
    annotator: str | None = None,
    reason: str | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Keep the labels of `batch_id` (of `annotator`, or all) out of every new dataset version;
    they stay in `labels`. What was rejected: the batch, annotator, labels and scene ids."""
    lake = resolve(lake)
    frame = labels(lake)
    chosen = frame[frame["batch_id"] == batch_id]
    if annotator is not None:
        chosen = chosen[chosen["annotator"] == annotator]
    if chosen.empty:
        who = f" by annotator {annotator!r}" if annotator else ""
        raise InputError(f"no labels in batch {batch_id!r}{who} (`flywheel label quality`)")
    row = {
        "batch_id": [batch_id],
        "annotator": [annotator],
        "reason": [reason],
        "at": pa.array([events.now()], schemas.UTC_TS),
        "by": [by or sources.user()],
    }
    name = f"{batch_id}--{annotator or 'all'}"
    lake.write("rejections", pa.table(row), name=_safe(name))
    return {
        "batch_id": batch_id,
        "annotator": annotator,
        "labels": len(chosen),
        "scenes": sorted(chosen["scene_id"].unique().tolist()),
    }


def _safe(name: str) -> str:
    import hashlib
    import re

    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] + "-" + digest


def relabel(
    lake: str | Lake | None, rejected: dict[str, Any], vendor: Any, batch_size: int = 100
) -> Any:
    """Send the scenes of a `reject` again, to `vendor` (another one, or the same: its tasks
    go to whoever is free), as selection ``relabel-<batch>``; the SubmitSummary."""
    import mining
    from labeling.schedule import submit

    lake = resolve(lake)
    name = _safe(f"relabel-{rejected['batch_id']}-{rejected['annotator'] or 'all'}")
    frame = pd.DataFrame({"scene_id": rejected["scenes"], "score": 1.0})
    mining.open(lake).save(name, frame, replace=True)
    return submit(lake, name, vendor, batch_size=batch_size, relabel=True)


__all__ = [
    "ALPHA", "MIN_ERRORS", "MIN_GAP", "assess", "labels", "quality", "reject", "relabel",
    "row_labels",
]  # fmt: skip
