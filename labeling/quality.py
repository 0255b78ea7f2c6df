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
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import binom

from flywheel import events, schemas, sources
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.names import file_stem
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


def _labeled(lake: Lake) -> pd.DataFrame:
    """batch_id, annotator, scene_id of every label `labels` checks, without its evidence
    (what `reject` and gold scenes need: no classes compared, no peers counted)."""
    with lake.connect(snapshot=lake.snapshot(["labels", "scenes", "rejections"])) as con:
        query = f"SELECT batch_id, annotator, scene_id FROM ({LABELS_SQL})"
        return con.sql(query).to_arrow_table().to_pandas()


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
    evidence = _agree(frame)
    frame["peers"], frame["peer_agree"], frame["peer_label"] = _peers(frame)
    # agreeing means with the evidence and, where other labels of the scene exist (overlap,
    # gold), with most of them
    frame["agree"] = [
        ok and (peer is None or bool(peer))
        for ok, peer in zip(evidence, frame["peer_agree"], strict=True)
    ]
    return frame.drop(columns=["classes", "result", "tags"])


def _peers(frame: pd.DataFrame) -> tuple[list[int], list[bool | None], list[str | None]]:
    """Per label: how many other labels its scene has (other batches: overlap, gold,
    relabels), whether it matches the most common of them (None without any), and that."""
    keys = [tuple(sorted(g)) for g in frame["given"]]
    counts: dict[str, dict[tuple, int]] = {}
    for scene, key in zip(frame["scene_id"], keys, strict=True):
        counts.setdefault(scene, {}).setdefault(key, 0)
        counts[scene][key] += 1
    peers, agree, common = [], [], []
    for scene, key in zip(frame["scene_id"], keys, strict=True):
        others = dict(counts[scene])
        others[key] -= 1
        total = sum(others.values())
        peers.append(total)
        if not total:
            agree.append(None)
            common.append(None)
            continue
        best = max(others.values())
        agree.append(others.get(key, 0) == best)
        common.append(",".join(max(others, key=lambda k: (others[k], k))))
    return peers, agree, common


def kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same scenes (None when undefined).

    >>> kappa(["x", "y", "x", "y"], ["x", "y", "x", "x"])
    0.5
    """
    if not len(a):
        return None
    classes = sorted(set(a) | set(b))
    observed = float(np.mean([x == y for x, y in zip(a, b, strict=True)]))
    expected = sum((list(a).count(c) / len(a)) * (list(b).count(c) / len(b)) for c in classes)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


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
    """The quality rows of a frame of labels (columns as `labels` gives them): counts by
    group and by (group, confused pair) in pandas, the binomial tails in one numpy call each."""
    frame = frame.reset_index(drop=True)
    if frame.empty:
        return []
    agree = frame["agree"] if "agree" in frame else _agree(frame)
    frame = frame.assign(agree=agree.astype(bool).to_numpy())
    pairs = _pairs(frame)
    expected = frame[["expected"]].explode("expected").rename(columns={"expected": "e"})
    total_n, total_k = len(frame), int((~frame["agree"]).sum())
    pair_totals = pairs.groupby(["g", "e"]).size().rename("all_k")
    e_totals = expected.groupby("e").size().rename("all_n")
    kinds = [("annotator", ["vendor", "annotator"]), ("batch", ["vendor", "batch_id"])]
    stats = {kind: _stats(frame, pairs, expected, keys) for kind, keys in kinds}
    # Bonferroni over every test that could be made: each group, and each pair in each group
    distinct = len(pairs[["g", "e"]].drop_duplicates())
    tests = sum(len(g) for g, _ in stats.values()) * (1 + max(distinct, 1))
    alpha = ALPHA / max(tests, 1)
    out = []
    for kind, keys in kinds:
        groups, cells = stats[kind]
        cells = cells.join(pair_totals, on=["g", "e"]).join(e_totals, on="e")
        cells["all_n"] = cells["all_n"].fillna(total_n)
        cells = cells.join(groups["n"], on=keys)
        n_e = np.where(cells["e"] == "none", cells["n"], cells["n_e"].fillna(0))
        rest_n = np.where(cells["e"] == "none", total_n, cells["all_n"]) - n_e
        q = (cells["all_k"] - cells["k_ge"] + 0.5) / (rest_n + 1)
        share = np.where(n_e > 0, cells["k_ge"] / np.maximum(n_e, 1), 0.0)
        p = binom.sf(cells["k_ge"] - 1, n_e.astype(int), np.clip(q, 1e-4, 1.0))
        cells = cells.assign(share=share, q=q, hit=(p < alpha) & (cells["k_ge"] >= MIN_ERRORS)
                             & (share >= q + MIN_GAP))  # fmt: skip
        p0 = (total_k - groups["k"] + 1) / (total_n - groups["n"] + 2)
        overall = binom.sf(groups["k"] - 1, groups["n"], p0)
        spread = (overall < alpha) & (groups["k"] >= MIN_ERRORS)
        spread &= groups["k"] / groups["n"] >= p0 + MIN_GAP
        # each group's pairs, most confused first: one pass over every cell
        by_group: dict[tuple, list[tuple]] = {}
        ordered = cells.sort_values("share", ascending=False, kind="stable")
        columns = [*keys, "g", "e", "share", "q", "k_ge", "hit"]
        for *key, g, e, x, q_ge, k_ge, hit in ordered[columns].itertuples(index=False, name=None):
            by_group.setdefault(tuple(key), []).append(
                (g, e, float(x), float(q_ge), int(k_ge), hit)
            )
        indices = None
        for key, group in groups.iterrows():
            mine = by_group.get(key, [])
            suspects = [c[:5] for c in mine if c[5]]
            confused = [[g, e, round(x, 4)] for g, e, x, *_ in mine]
            n, k, base = int(group["n"]), int(group["k"]), float(p0[key])
            suspect = bool(suspects) or bool(spread[key])
            reason = None
            if suspect:
                if indices is None:
                    indices = frame.groupby(keys, dropna=False).indices
                explained = sum(x[4] for x in suspects) / k if k else 0.0
                idx = indices[key]
                reason = _reason(frame, pairs, idx, kind, suspects, explained, k / n, base)
            out.append(
                {
                    "kind": kind,
                    "vendor": key[0],
                    "annotator": key[1] if kind == "annotator" else None,
                    "batch_id": key[1] if kind == "batch" else None,
                    "labels": n,
                    "agreement": 1 - k / n,
                    "population_agreement": 1 - base,
                    "suspect": suspect,
                    "reason": reason,
                    "confused": [[g, e, round(x, 4)] for g, e, x, *_ in suspects]
                    if suspects
                    else confused[:5],
                }
            )
    _add_peer_agreement(frame, out)
    out.sort(key=lambda r: (not r["suspect"], r["batch_id"] is not None, r["agreement"]))
    return out


def _add_peer_agreement(frame: pd.DataFrame, rows: list[dict[str, Any]]) -> None:
    """On annotator rows: `overlap` (its labels of scenes others labeled too), the share that
    match the others' most common label, and Cohen's kappa against it."""
    if "peers" not in frame:
        return
    shared = frame[frame["peers"] > 0]
    mine = {k: g for k, g in shared.groupby(["vendor", "annotator"], dropna=False)}
    for row in rows:
        if row["kind"] != "annotator":
            continue
        group = mine.get((row["vendor"], row["annotator"]))
        row["overlap"] = 0 if group is None else len(group)
        row["peer_agreement"] = None if group is None else float(group["peer_agree"].mean())
        own = [] if group is None else [",".join(sorted(g)) for g in group["given"]]
        row["kappa"] = None if group is None else kappa(own, list(group["peer_label"]))


def _stats(frame, pairs, expected, keys) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group: n labels, k disagreeing; per (group, g, e): k_ge, and n_e, the group's
    labels whose evidence holds e."""
    columns = [frame[c] for c in keys]
    groups = pd.DataFrame({"n": frame.groupby(columns, dropna=False).size()}).join(
        (~frame["agree"]).groupby(columns, dropna=False).sum().rename("k")
    )
    keyed_pairs = pairs.join(frame[keys])
    cells = keyed_pairs.groupby([*keys, "g", "e"], dropna=False).size().rename("k_ge")
    n_e = expected.join(frame[keys]).groupby([*keys, "e"], dropna=False).size().rename("n_e")
    cells = cells.reset_index().join(n_e, on=[*keys, "e"])
    return groups, cells


def _agree(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [set(g) == set(e) for g, e in zip(frame["given"], frame["expected"], strict=True)]
    )


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """(label index, g given, e expected) for each disagreeing label's differing classes."""
    rows = []
    wrong = frame.index[~frame["agree"].to_numpy()]
    for i, given, wanted in zip(
        wrong, frame["given"].iloc[wrong], frame["expected"].iloc[wrong], strict=True
    ):
        extra = sorted(set(given) - set(wanted)) or ["none"]
        missing = sorted(set(wanted) - set(given)) or ["none"]
        rows += [(i, g, e) for g in extra for e in missing]
    return pd.DataFrame(rows, columns=["i", "g", "e"]).set_index("i")


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
    too little history precedes it, or the share never rose by `MIN_GAP`: it was always so)."""
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
    if not np.isfinite(gap[best]) or before_n[best] < 10 or gap[best] < MIN_GAP:
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
    frame = _labeled(lake)
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
    lake.write("rejections", pa.table(row), name=file_stem(name))
    return {
        "batch_id": batch_id,
        "annotator": annotator,
        "labels": len(chosen),
        "scenes": sorted(chosen["scene_id"].unique().tolist()),
    }


def relabel(
    lake: str | Lake | None, rejected: dict[str, Any], vendor: Any, batch_size: int = 100
) -> Any:
    """Send the scenes of a `reject` again, to `vendor` (another one, or the same: its tasks
    go to whoever is free), as selection ``relabel-<batch>``; the SubmitSummary."""
    import mining
    from labeling.schedule import submit

    lake = resolve(lake)
    name = file_stem(f"relabel-{rejected['batch_id']}-{rejected['annotator'] or 'all'}")
    frame = pd.DataFrame({"scene_id": rejected["scenes"], "score": 1.0})
    mining.open(lake).save(name, frame, replace=True)
    return submit(lake, name, vendor, batch_size=batch_size, relabel=True)


def submit_checked(
    lake: str | Lake | None,
    selection: str,
    vendor: Any,
    overlap: float = 0.0,
    gold: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`labeling.submit`, then checks mixed in: `overlap` (a share of the selection's scenes,
    chosen by a hash of the scene id, sent again, so a second annotator labels them) and the
    scenes of selection `gold`, whose labels are trusted, sent again to be labeled blind. The
    label-quality rows compare each annotator with the other labels of those scenes."""
    import hashlib

    import mining
    from labeling.schedule import submit

    if not 0 <= overlap <= 1:
        raise InputError(f"--overlap is a share of the scenes, 0 to 1; got {overlap}")
    lake = resolve(lake)
    miner = mining.open(lake)
    out = {"submit": submit(lake, selection, vendor, **options)}
    if overlap:
        frame = miner.selection(selection)
        picked = [
            s for s in frame["scene_id"]
            if int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) / 2**32 < overlap
        ]  # fmt: skip
        if picked:
            name = file_stem(f"{selection}-overlap")
            miner.save(name, pd.DataFrame({"scene_id": picked, "score": 1.0}), replace=True)
            out["overlap"] = submit(lake, name, vendor, **options, relabel=True)
    if gold:
        trusted = set(_labeled(lake)["scene_id"])
        scenes = [s for s in miner.selection(gold)["scene_id"] if s in trusted]
        if not scenes:
            raise InputError(
                f"gold selection {gold!r} has no labeled scene: gold scenes need trusted labels"
            )
        name = file_stem(f"{selection}-gold-{gold}")
        miner.save(name, pd.DataFrame({"scene_id": scenes, "score": 1.0}), replace=True)
        out["gold"] = submit(lake, name, vendor, **options, relabel=True)
    return out


__all__ = [
    "ALPHA",
    "MIN_ERRORS",
    "MIN_GAP",
    "assess",
    "kappa",
    "labels",
    "quality",
    "reject",
    "relabel",
    "row_labels",
    "submit_checked",
]
