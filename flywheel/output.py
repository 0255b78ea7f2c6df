"""Output files at a path a person gave (``--out``): the one writer every command uses.

`write_output` and `atomic_output` write a regular file and nothing else:

- atomically: into a temporary file in the target's own folder, flushed to disk (fsync),
  then renamed over the target (`os.replace`), so a reader sees the old file or the new one,
  never half of one, and a failure leaves the old file as it was;
- only a regular file: an existing target that is a device (``/dev/null``), a FIFO, a socket
  or a folder is refused, never replaced or written into; a symlink is replaced by a regular
  file, never written through (its target is left alone);
- only into a folder that exists: a missing parent folder is a `UsageError` (exit 2) naming
  it, never created on a guess.

Used by ``report --out`` and, by contract, every later ``--out`` (``dataset export``,
``export clip``).

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "report.html"
>>> write_output(target, "<p>hi</p>").read_text()
'<p>hi</p>'
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from flywheel.errors import InputError, UsageError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def check_output(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path when a regular file may be written there, else UsageError (exit 2).

    Checked before any work, so a bad ``--out`` fails fast; `atomic_output` checks again.
    """
    given = os.fspath(path)
    target = Path(given)
    if not given or given.endswith(("/", os.sep)) or target.name in ("", ".", ".."):
        raise UsageError(f"cannot write {given!r}: give a file name, not a folder", path=given)
    parent = target.parent
    try:
        parent_mode = os.stat(parent).st_mode
    except FileNotFoundError:
        raise UsageError(
            f"cannot write {target}: the folder {parent} does not exist; create it first",
            path=str(target),
        ) from None
    except OSError as error:
        raise UsageError(
            f"cannot write {target}: the folder {parent} is not usable ({error.strerror})",
            path=str(target),
        ) from None
    if not stat.S_ISDIR(parent_mode):
        raise UsageError(f"cannot write {target}: {parent} is not a folder", path=str(target))
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror}", path=str(target)) from None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a symlink is replaced, never followed
        return target
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    raise UsageError(
        f"cannot write {target}: it exists and is {kind}; only a regular file is replaced. "
        "Give another path",
        path=str(target),
    )


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` to write the file to; on success it replaces `path`.

    The temporary file is created new (never an existing file or a link), flushed to disk and
    renamed over `path` when the block ends; on an exception it is removed and `path` is left
    as it was. The new file keeps the old file's permissions, or gets the usual ones (0666
    less the umask) when there was none.

    >>> with atomic_output(tmp / "notes.txt") as temp:
    ...     _ = temp.write_text("written whole or not at all")
    >>> (tmp / "notes.txt").read_text()
    'written whole or not at all'
    """
    target = check_output(path)
    temp = _create_temp(target)
    try:
        try:
            yield temp
        except OSError as error:  # writing failed (a full disk): say so, without a traceback
            raise InputError(
                f"cannot write {target}: {error.strerror or error}; {target} is unchanged",
                path=str(target),
            ) from None
        _finish(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _create_temp(target: Path) -> Path:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(temp, flags, 0o666))  # the umask applies, as to any new file
            return temp
        except FileExistsError:
            continue
        except OSError as error:
            raise InputError(
                f"cannot write {target}: {error.strerror} in {target.parent}", path=str(target)
            ) from None
    raise InputError(f"cannot write {target}: no free temporary name in {target.parent}")


def _finish(temp: Path, target: Path) -> None:
    try:
        mode: int | None = os.lstat(target).st_mode
    except OSError:  # gone meanwhile (or unreadable: then the rename says why)
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        check_output(target)  # it became a device or a FIFO meanwhile: refuse, as up front
    try:
        if mode is not None and stat.S_ISREG(mode):
            os.chmod(temp, stat.S_IMODE(mode))
        with open(temp, "rb+") as written:  # the bytes reach the disk before the rename
            os.fsync(written.fileno())
        os.replace(temp, target)
        _sync_folder(target.parent)
    except OSError as error:
        raise InputError(
            f"cannot write {target}: {error.strerror or error}", path=str(target)
        ) from None


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_output(path: str | os.PathLike[str], data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write `data` (text or bytes) to `path` atomically, as a regular file; the path.

    See the module docstring for what is refused (exit 2 through the CLI).
    """
    with atomic_output(path) as temp:
        if isinstance(data, str):
            temp.write_text(data, encoding=encoding)
        else:
            temp.write_bytes(data)
    return Path(os.fspath(path))


__all__ = ["atomic_output", "check_output", "write_output"]
