"""A lock that holds across machines on an S3 lake: a lease object written with conditional PUTs.

`Lake.lock` on an S3 lake takes this lease as well as its per-machine file lock, so two machines
cannot submit the same labeling batch or publish an index at the same time. The lease is the
object `<lake>/_locks/NAME.lock`:

- **Acquire.** Create it with ``If-None-Match: *``: the store lets exactly one writer create it.
- **Renew.** A background thread rewrites it every third of the lease with ``If-Match`` on
  its ETag, so the lease stays ours while the work runs.
- **Take over.** A lease not renewed for `seconds` belongs to a holder that died: it is taken
  over with ``If-Match`` on the ETag that was read, so of two waiters only one wins. Staleness is
  judged on the store's clock (the object's LastModified against the response's Date), never on
  two machines' clocks. A lease held by a process of this host that is gone (killed) is taken
  over at once, so a rerun after a crash does not wait out the lease.
- **Release.** Delete it with ``If-Match``: a lease someone else took over is never deleted.

`FLYWHEEL_LOCK_LEASE_SECONDS` sets the lease (60 s by default).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from flywheel import console
from flywheel.errors import LakeError

DEFAULT_SECONDS = 60.0


class LeaseLost(LakeError):
    """The lease was taken over while held: this process stalled longer than the lease."""


class Lease:
    """The lease `key` ("bucket/path") on the S3 filesystem `fs` (s3fs), as a context manager."""

    def __init__(self, fs: Any, key: str, seconds: float | None = None) -> None:
        self.fs = fs
        self.bucket, self.key = key.split("/", 1)
        env = os.environ.get("FLYWHEEL_LOCK_LEASE_SECONDS")
        self.seconds = float(seconds or env or DEFAULT_SECONDS)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.release(report=kind is None)  # never hide the error that is on its way out

    # -- the store ------------------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        from fsspec.asyn import sync

        return sync(
            self.fs.loop, self.fs._call_s3, operation, Bucket=self.bucket, Key=self.key, **kwargs
        )

    def _put(self, **condition: str) -> str:
        body = json.dumps({"owner": self.owner, "seconds": self.seconds}).encode()
        return self._call("put_object", Body=body, **condition)["ETag"]

    def _holder(self) -> tuple[dict, str, float] | None:
        """(body, ETag, seconds since it was last written, by the store's clock) or None."""
        from fsspec.asyn import sync

        async def read() -> tuple[dict, str, float]:
            answer = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            body = json.loads(await answer["Body"].read())
            date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
            now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
            return body, answer["ETag"], now - answer["LastModified"].timestamp()

        try:
            return sync(self.fs.loop, read)
        except FileNotFoundError:
            return None  # released meanwhile

    # -- the protocol ---------------------------------------------------------------------------
    def acquire(self) -> None:
        delay, told = 0.05, None
        while True:
            try:
                self.etag = self._put(IfNoneMatch="*")
                break
            except OSError as exc:
                _contended(exc, self)
            holder = self._holder()
            if holder is None:
                continue
            body, etag, age = holder
            if age > float(body.get("seconds", self.seconds)) or _dead_here(body.get("owner")):
                try:  # its holder stopped renewing: take it over, unless another waiter did
                    self.etag = self._put(IfMatch=etag)
                    break
                except OSError as exc:
                    _contended(exc, self)
                    continue
            if told != body.get("owner"):
                told = body.get("owner")
                console.warn(f"flywheel: waiting for the lock {self.key} held by {told}")
            time.sleep(delay)
            delay = min(1.0, delay * 2)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="flywheel-lease")
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            assert self.etag is not None  # set when the lease was taken, before this thread
            try:
                self.etag = self._put(IfMatch=self.etag)
            except OSError:
                self.lost = True  # taken over (or the store is gone): nothing left to renew
                return

    def release(self, report: bool = True) -> None:
        """Give the lease back; raise LeaseLost (if `report`) when it was taken over."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if not self.lost:
            # not ours any more, or the store is down: then it expires on its own
            with contextlib.suppress(OSError):
                self._call("delete_object", IfMatch=self.etag)
        if self.lost and report:
            raise LeaseLost(
                f"the lock {self.key} was taken over while held: this process stalled for "
                f"more than {self.seconds:g} s (FLYWHEEL_LOCK_LEASE_SECONDS); rerun to finish"
            )


def _contended(exc: OSError, lease: Lease) -> None:
    """Return if `exc` is a failed precondition or a conflicting conditional write (someone
    else holds or just wrote the lease); raise a clear error for anything else."""
    text = str(exc).lower()
    if isinstance(exc, FileExistsError) or "pre-condition" in text or "conflict" in text:
        return
    raise LakeError(
        f"could not take the lock s3://{lease.bucket}/{lease.key}: {exc}; check the store"
    ) from exc


def _dead_here(owner: str | None) -> bool:
    """Whether `owner` ("host:pid:token") is a process of this host that no longer runs."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.split(":", 1)[0]
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True
