"""One unit of work in its own process, for the fault tests to kill: ``python driver.py OP LAKE``.

Prints ``started`` once its imports are done, so a test can aim its SIGKILL at the work itself.
The simulated vendor's clock is fixed (``START`` plus its persisted advances) so a rerun and a
clean run stamp the same times.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

START = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


def vendor(lake: str):
    from labeling import SimulatedVendor

    return SimulatedVendor.for_lake(lake, now=lambda: START, seed=3)


def main() -> None:
    op, lake, *args = sys.argv[1:]
    from flywheel.lake import Lake

    print("started", flush=True)
    if op == "ingest":
        from ingest import ingest

        ingest([Path(a) for a in args], Lake(lake))
    elif op == "index":
        import mining
        from mining.build import SHARD_SIZE

        kind = args[0] if args else "hnsw"
        shard_size = int(args[1]) if len(args) > 1 else SHARD_SIZE
        mining.build_index(lake, kind, shard_size=shard_size)
    elif op == "submit":
        import labeling

        labeling.submit(lake, args[0], vendor(lake), batch_size=2)
    elif op == "triggers":
        from ingest import triggers

        triggers.LOGS_PER_RUN = 1  # a run per log: a kill can land between runs, or inside one
        triggers.run(lake)
    elif op == "purge":
        from flywheel import sources

        sources.revoke(lake, args[0], purge=True)
    elif op == "sync":
        import labeling

        labeling.sync(lake, vendor(lake))
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    main()
