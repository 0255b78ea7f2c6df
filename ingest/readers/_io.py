"""Reading source files without trusting or changing them: map a regular file read-only, and
decompress a block that may be damaged, keeping what decompresses before the damage.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flywheel.errors import InputError

PIECE = 1 << 16  # salvage feeds a damaged stream in pieces, keeping the output of each
MAX_BLOCK = 1 << 32  # a claimed uncompressed size beyond this is damage, not data


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what the special file is ("a FIFO", "a socket", ...)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, refused unless it is a regular file.

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the file ({exc.strerror})", path=str(path)) from exc
    what = kind_of(os.fstat(fd).st_mode)
    if what is not None:
        os.close(fd)
        raise InputError(f"{path}: {what}, not a log file; skipped", path=str(path))
    return fd


@contextmanager
def mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes, memory-mapped read-only (no copy, no lock, nothing written)."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size == 0:
            yield b""
            return
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
            yield data
    finally:
        os.close(fd)


def head(path: Path, n: int = 16) -> bytes:
    fd = open_regular(path)
    try:
        return os.read(fd, n)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror})", path=str(path)) from exc
    finally:
        os.close(fd)


def decompress(kind: str, data: bytes, size: int | None) -> tuple[bytes, str | None]:
    """`data` decompressed with `kind` ("", "none", "zstd", "lz4", "bz2") and why it is short.

    The common path is one call. When it fails, the stream is fed again in pieces and the
    output before the damage is returned with the reason; `size` (the claimed uncompressed
    size) bounds the output either way.
    """
    if kind in ("", "none"):
        return data, None
    if kind not in ("zstd", "lz4", "bz2"):
        raise ValueError(f"unknown compression {kind!r}")
    limit = size if size is not None and 0 < size <= MAX_BLOCK else MAX_BLOCK
    try:
        out = _whole(kind, data, limit)
    except Exception as exc:  # the libraries' own error types: a damaged stream
        out, why = _pieces(kind, data, limit)
        return out, why or f"{kind} stream damaged ({type(exc).__name__}: {exc})"
    return out, None


def _whole(kind: str, data: bytes, limit: int) -> bytes:
    if kind == "zstd":
        import zstandard

        claimed = zstandard.frame_content_size(data)
        if claimed > limit:  # a damaged frame header must not make us allocate its claim
            raise zstandard.ZstdError(f"frame claims {claimed:,} bytes, more than {limit:,}")
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    if kind == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    import bz2

    return bz2.decompress(data)


def _decompressor(kind: str):
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    if kind == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor()
    import bz2

    return bz2.BZ2Decompressor()


def _pieces(kind: str, data: bytes, limit: int) -> tuple[bytes, str | None]:
    stream = _decompressor(kind)
    out: list[bytes] = []
    total = 0
    for start in range(0, len(data), PIECE):
        try:
            piece = stream.decompress(data[start : start + PIECE])
        except EOFError:
            return b"".join(out), f"bytes after the end of the {kind} stream"
        except Exception as exc:
            return b"".join(out), f"{kind} stream damaged ({type(exc).__name__}: {exc})"
        out.append(piece)
        total += len(piece)
        if total > limit:
            return b"".join(out)[:limit], f"the {kind} stream gives more than its claimed size"
    if not getattr(stream, "eof", True):
        return b"".join(out), f"the {kind} stream ends early"
    return b"".join(out), None
