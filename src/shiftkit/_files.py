"""User files, read and written safely: one place for the checks every reader and writer needs.

- `regular_file` / `open_regular`: a FIFO, device or folder named like a data file is refused before it is
  read (opening a FIFO for reading blocks until someone writes to it: a hang, not an error).
- `loads_bounded`: JSON from inside a file (checkpoint metadata) with a size and nesting limit, so a value
  nested 100,000 levels deep is an error, not a RecursionError here or in whoever prints it later.
- `claim_output`: an advisory lock (fcntl.flock) per output file, held until the process exits, so two
  runs writing one output cannot both succeed with the last writer silently winning.
- `umask_mode`: the permission bits a plain `open(path, "w")` would give (temp files are created 0600).
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ConfigError, ShiftkitError

__all__ = ["regular_file", "open_regular", "read_regular", "loads_bounded", "json_depth", "claim_output", "release_outputs",
           "umask_mode", "OutputLockedError", "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

MAX_JSON_BYTES = 1 << 20  # metadata values are a few hundred bytes; 1 MiB leaves room for long logs
MAX_JSON_DEPTH = 32  # shiftkit writes depth <= 4


class OutputLockedError(ConfigError):
    """Another process is writing the same output file."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path: str | os.PathLike, error: type[ShiftkitError], what: str = "file") -> Path:
    """`path` if it is a regular file (symlinks followed); else `error` naming it. Never opens it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
    return Path(path)


def open_regular(path: str | os.PathLike, error: type[ShiftkitError], what: str = "file") -> IO[bytes]:
    """Open a regular file for binary reading. O_NONBLOCK makes opening a FIFO return at once; the
    check is on the opened descriptor, so the file cannot be swapped between check and read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {what} is {_kind(mode)}, not a regular file; refusing to read it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, error: type[ShiftkitError], what: str = "file", *,
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, refusing files larger than max_bytes before reading them."""
    with open_regular(path, error, what) as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{path}: {what} is {size} bytes, more than the {max_bytes} allowed")
        try:
            return f.read()
        except OSError as e:
            raise error(f"{path}: cannot read {what} ({e.strerror})") from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: str) -> int:
    """Nesting depth of a JSON text without parsing it (brackets outside strings), in linear time."""
    skeleton = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def loads_bounded(text: str, where: str, error: type[ShiftkitError], *, max_bytes: int = MAX_JSON_BYTES,
                  max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads with a size and depth limit checked first; any failure is `error` naming `where`."""
    if len(text) > max_bytes:
        raise error(f"{where}: {len(text)} characters of JSON, more than the {max_bytes} allowed")
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{where}: JSON nested {depth} levels deep, more than the {max_depth} allowed")
    try:
        return json.loads(text)
    except ValueError as e:
        raise error(f"{where}: not valid JSON ({e})") from None


# ---------------------------------------------------------------- writing

# lock file -> (descriptor, claiming pid), for the life of this process. A forked child shares the descriptor, and so the
# lock (flock belongs to the open file description): a worker may write what its parent claimed.
_HELD: dict[Path, tuple[int, int]] = {}


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def claim_output(path: str | os.PathLike) -> None:
    """Take this process's advisory lock on output `path` (kept until exit); OutputLockedError if another
    process holds it. Idempotent within a process. The lock file `.NAME.lock` sits beside the output."""
    path = Path(os.path.abspath(path))
    lock = _lock_path(path)
    if lock in _HELD:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise OutputLockedError(f"{path}: another process (pid {holder}) is writing this output; "
                                        "wait for it or choose another output path") from None
            raise
        try:  # the holder we waited for may have removed the file at exit: lock the file that is there now
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[lock] = (fd, os.getpid())


def release_outputs() -> None:
    """Let go of every output this process claimed and remove its lock files (at exit, or a long-lived
    process that is done writing). Removing is safe: a waiter re-checks that it locked the live file."""
    while _HELD:
        lock, (fd, owner) = _HELD.popitem()
        if owner == os.getpid():  # a forked child shares the lock; only the claiming process cleans up
            lock.unlink(missing_ok=True)
        os.close(fd)  # closing the descriptor drops the flock (once no forked child holds it either)


atexit.register(release_outputs)


def umask_mode() -> int:
    """0o666 minus the process umask (read from /proc where possible: os.umask() would set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
