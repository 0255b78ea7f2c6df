"""Label quality at scale: every check over 1,000,000 labels from 50 annotators, against a
naive pandas version in the same run, which must give the same numbers.

    .venv/bin/python bench/quality.py [--labels 1000000] [--annotators 50] [--batch-size 500]

The labels: scenes' evidence drawn from a mix of scenarios, 3 % plain mistakes everywhere, one
annotator swapping hard_brake and cut_in for the last third of the time, one answering at
random. Flywheel: `labeling.quality.assess` (counts by group and by (group, confused pair),
binomial tails in one call per table). The baseline: the same statistics, group by group, row
by row over each group's labels (`naive`). Both must agree on every row's label count,
agreement and verdict. Prints both times and the ratio. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy.stats import binom

from labeling import quality
from labeling.quality import ALPHA, CLASSES, MIN_ERRORS, MIN_GAP

MIX = {"other": 0.55, "hard_brake": 0.12, "cut_in": 0.1, "stopped": 0.08, "high_speed": 0.08,
       "pedestrian_in_path": 0.07}  # fmt: skip
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def labels(n: int, annotators: int, batch_size: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    kinds = np.array(list(MIX))
    expected = kinds[rng.choice(len(kinds), n, p=np.array(list(MIX.values())))]
    who = rng.integers(0, annotators, n)
    given = expected.copy()
    wrong = rng.uniform(size=n) < 0.03
    given[wrong] = np.array(CLASSES)[rng.integers(0, len(CLASSES), int(wrong.sum()))]
    late = np.arange(n) > 2 * n // 3
    swap = (who == 1) & late
    given = np.where(swap & (given == "hard_brake"), "cut_in",
                     np.where(swap & (given == "cut_in"), "hard_brake", given))  # fmt: skip
    rand = who == 2
    given[rand] = np.array(CLASSES)[rng.integers(0, len(CLASSES), int(rand.sum()))]
    return pd.DataFrame(
        {
            "vendor": "simulated",
            "annotator": [f"annotator-{a:02d}" for a in who],
            "batch_id": [f"b{i // batch_size:06d}" for i in range(n)],
            "scene_id": [f"s{i}" for i in range(n)],
            "completed_at": pd.Timestamp(T0) + pd.to_timedelta(np.arange(n), unit="s"),
            "given": [[g] for g in given],
            "expected": [[e] for e in expected],
        }
    )


def naive(frame: pd.DataFrame) -> dict[tuple, tuple]:
    """(kind, key) -> (labels, agreement, suspect), group by group, row by row."""
    agree = [set(g) == set(e) for g, e in zip(frame["given"], frame["expected"], strict=True)]
    frame = frame.assign(agree=agree)
    pairs, e_count = {}, {}
    for g, e, ok in zip(frame["given"], frame["expected"], frame["agree"], strict=True):
        for x in e:
            e_count[x] = e_count.get(x, 0) + 1
        if not ok:
            for a in sorted(set(g) - set(e)) or ["none"]:
                for b in sorted(set(e) - set(g)) or ["none"]:
                    pairs[(a, b)] = pairs.get((a, b), 0) + 1
    total_n, total_k = len(frame), int((~frame["agree"]).sum())
    kinds = {"annotator": "annotator", "batch": "batch_id"}
    n_groups = sum(frame[c].nunique() for c in kinds.values())
    tests = n_groups * (1 + max(len(pairs), 1))
    alpha = ALPHA / tests
    out = {}
    for kind, column in kinds.items():
        for key, rows in frame.groupby(column):
            n, k = len(rows), int((~rows["agree"]).sum())
            here, here_e = {}, {}
            for g, e, ok in zip(rows["given"], rows["expected"], rows["agree"], strict=True):
                for x in e:
                    here_e[x] = here_e.get(x, 0) + 1
                if not ok:
                    for a in sorted(set(g) - set(e)) or ["none"]:
                        for b in sorted(set(e) - set(g)) or ["none"]:
                            here[(a, b)] = here.get((a, b), 0) + 1
            hit = False
            for (a, b), k_ab in here.items():
                n_b = here_e.get(b, 0) if b != "none" else n
                rest_n = (e_count.get(b, 0) if b != "none" else total_n) - n_b
                q = (pairs[(a, b)] - k_ab + 0.5) / (rest_n + 1)
                share = k_ab / n_b if n_b else 0.0
                p = binom.sf(k_ab - 1, n_b, min(max(q, 1e-4), 1.0))
                hit |= bool(p < alpha and k_ab >= MIN_ERRORS and share >= q + MIN_GAP)
            p0 = (total_k - k + 1) / (total_n - n + 2)
            spread = binom.sf(k - 1, n, p0) < alpha and k >= MIN_ERRORS and k / n >= p0 + MIN_GAP
            out[(kind, key)] = (n, round(1 - k / n, 9), hit or bool(spread))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    console = Console()
    frame = labels(args.labels, args.annotators, args.batch_size)
    start = time.perf_counter()
    rows = quality.assess(frame)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive(frame)
    slow_s = time.perf_counter() - start
    got = {
        (r["kind"], r["annotator"] if r["kind"] == "annotator" else r["batch_id"]): (
            r["labels"], round(r["agreement"], 9), r["suspect"])
        for r in rows
    }  # fmt: skip
    assert got == slow, "the vectorised checks and the naive ones disagree"
    table = Table(title=f"label quality over {args.labels:,} labels, {args.annotators} annotators")
    for column in ("checks", "seconds", "suspect rows", "ratio", "target"):
        table.add_column(column, justify="right" if column != "checks" else "left")
    suspects = sum(r["suspect"] for r in rows)
    verdict = "met" if fast < 10 else "MISSED"
    table.add_row("flywheel (assess)", f"{fast:.2f}", str(suspects), f"{slow_s / fast:.1f}x",
                  f"<10 s {verdict}")  # fmt: skip
    table.add_row("naive pandas", f"{slow_s:.2f}", str(suspects), "1.0x", "")
    console.print(table)
    for r in rows[:suspects]:
        who = r["annotator"] or r["batch_id"]
        console.print(f"suspect {r['kind']} {who}: {r['reason']}")


if __name__ == "__main__":
    main()
