"""User files, read and written safely: one place for the checks every reader and writer needs.

- `regular_file` / `open_regular`: a FIFO, device or folder named like a data file is refused before it is
  read (opening a FIFO for reading blocks until someone writes to it: a hang, not an error).
- `loads_bounded`: JSON from inside a file (checkpoint metadata) with a size and nesting limit, so a value
  nested 100,000 levels deep is an error, not a RecursionError here or in whoever prints it later.
- `read_json`: a JSON document from a user file through both of the above (reports, logs, manifests).
- `check_output` / `check_folder` / `claim_outputs`: the checks every output needs before any work: an
  existing device, FIFO, socket or folder where a file goes is refused (a rename over it would destroy
  it), as are unwritable places, names too long once the lock / temp suffixes are added, and output sets
  where one path is another or lies inside it.
- `claim_output`: an advisory lock (fcntl.flock) per output file, held until the process exits, so two
  runs writing one output cannot both succeed with the last writer silently winning. The lock file is
  opened without following symlinks; stale temp files of a killed save are removed once the lock is held.
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

__all__ = ["regular_file", "open_regular", "read_regular", "loads_bounded", "json_depth", "read_json", "check_output",
           "check_folder", "open_lock", "open_append", "claim_output", "claim_outputs", "release_outputs", "temp_pattern",
           "umask_mode", "OutputError", "OutputLockedError", "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

MAX_JSON_BYTES = 1 << 20  # metadata values are a few hundred bytes; 1 MiB leaves room for long logs
MAX_JSON_DEPTH = 32  # shiftkit writes depth <= 4


class OutputError(ConfigError):
    """An output path cannot be written safely: not a regular file, a folder in the way, unwritable, too long."""


class OutputLockedError(OutputError):
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
    return os.fdopen(_regular_fd(fd, path, error, what, "read"), "rb")


def _regular_fd(fd: int, path: str | os.PathLike, error: type[ShiftkitError], what: str, verb: str,
                hint: str = "") -> int:
    """`fd` (opened O_NONBLOCK, so a FIFO did not block) made blocking again if it is a regular file; else it is
    closed and `error` names the path. The check is on the descriptor: the file cannot be swapped after it."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {what} is {_kind(mode)}, not a regular file; refusing to {verb} it{hint}")
    os.set_blocking(fd, True)
    return fd


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


def read_json(path: str | os.PathLike, error: type[ShiftkitError], what: str = "JSON file", *,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON document from a user file: a regular file (never a FIFO or device), bounded size and depth."""
    data = read_regular(path, error, what, max_bytes=max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return loads_bounded(text, str(path), error, max_bytes=max_bytes, max_depth=max_depth)


# ---------------------------------------------------------------- writing

# mkstemp's names for atomic writes: .NAME.XXXXXXXX.tmp (8 random characters)
_TMP_EXTRA = len("..") + 8 + len(".tmp")


def temp_pattern(name: str) -> re.Pattern:
    """The names of the temp files atomic writes of output `name` create (and a killed save leaves)."""
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _writable_base(path: Path, what: str) -> Path:
    """The nearest existing ancestor of `path` (where the missing folders will be made): a writable folder,
    and every name below it short enough; OutputError naming the path otherwise."""
    base = path.parent
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"{path}: cannot write {what}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write {what}: folder {base} is not writable")
    limit = _name_max(base)
    for part in path.relative_to(base).parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(f"{path}: cannot write {what}: the name {part[:40]!r}... is longer than the "
                              f"{limit} bytes a file name may have")
    return base


def check_output(path: str | os.PathLike, what: str = "output file") -> Path:
    """Refuse, before any work, an output file that cannot be written safely: an existing device, FIFO,
    socket or folder in its place (a rename over it would destroy it), an unwritable folder, a name that
    is too long once the temp suffix is added. Creates nothing. Returns the absolute path."""
    path = Path(os.path.abspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"{path}: cannot write {what} ({e.strerror})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: {what} exists and is {_kind(st.st_mode)}, not a regular file; refusing to replace it")
    base = _writable_base(path, what)
    limit = _name_max(base)
    if len(os.fsencode(path.name)) + _TMP_EXTRA > limit:
        raise OutputError(f"{path}: {what} name is {len(os.fsencode(path.name))} bytes; with the lock and temporary-file "
                          f"suffixes added it may be at most {limit - _TMP_EXTRA}")
    return path


def check_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """An output folder: an existing one, or one that can be made (no file in its place, writable)."""
    path = Path(os.path.abspath(path))
    if os.path.lexists(path):
        if not path.is_dir():
            raise OutputError(f"{path}: {what} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{path}: {what} is not writable")
        return path
    _writable_base(path, what)
    return path


def claim_outputs(files: dict[str, str | os.PathLike], folders: dict[str, str | os.PathLike] | None = None, *,
                  claim: bool = True) -> None:
    """Check a run's whole output set before any work ({what: path}): each folder and file writable, no
    path equal to another or inside an output file; then (with `claim`) claim every file (`claim_output`)."""
    checked = {what: check_folder(p, what) for what, p in (folders or {}).items()}
    checked.update({what: check_output(p, what) for what, p in files.items()})
    names = list(checked)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = checked[a], checked[b]
            if pa == pb:
                raise OutputError(f"{pa}: the {a} and the {b} are the same path; choose another --out / save path")
            for inner, outer in ((a, b), (b, a)):
                if outer in files and checked[outer] in checked[inner].parents:
                    raise OutputError(f"{checked[inner]}: the {inner} would lie inside the {outer} {checked[outer]}, "
                                      "a file; choose another --out / save path")
    for what, p in files.items() if claim else ():
        claim_output(p, what)


# lock file -> (descriptor, claiming pid), for the life of this process. A forked child shares the descriptor, and so the
# lock (flock belongs to the open file description): a worker may write what its parent claimed.
_HELD: dict[Path, tuple[int, int]] = {}


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def open_lock(lock: Path) -> int:
    """The lock file, created or reused (a killed run leaves one behind), never through a symlink: a lock
    that links to another file would have that file truncated."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(lock, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"{lock}: lock file is a symbolic link; refusing to follow it (remove it)") from None
        raise OutputError(f"{lock}: cannot create the output's lock file ({e.strerror})") from None
    return _regular_fd(fd, lock, OutputError, "lock file", "use", " (remove it)")


def open_append(path: str | os.PathLike) -> int:
    """A descriptor appending to `path` (created 0644): a FIFO or device named like the log is refused
    (opening a FIFO for writing would block), never written."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:  # ENXIO: a FIFO nobody reads (non-blocking open for writing fails instead of waiting)
        what = "is a FIFO, not a regular file" if e.errno == errno.ENXIO else f"cannot be opened ({e.strerror})"
        raise OutputError(f"{path}: log file {what}; refusing to append to it") from None
    return _regular_fd(fd, path, OutputError, "log file", "append to")


def _remove_stale_temps(path: Path) -> None:
    """Temp files a killed save of `path` left: with the output's lock held, no live writer owns them."""
    pattern = temp_pattern(path.name)
    try:
        names = [n for n in os.listdir(path.parent) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        tmp = path.parent / name
        if stat.S_ISREG(os.lstat(tmp).st_mode):  # never a symlink's target
            tmp.unlink(missing_ok=True)


def claim_output(path: str | os.PathLike, what: str = "output file") -> None:
    """Take this process's advisory lock on output `path` (kept until exit); OutputLockedError if another
    process holds it. Idempotent within a process. The lock file `.NAME.lock` sits beside the output.
    The output is checked first (`check_output`); stale temp files of a killed save are removed."""
    path = check_output(path, what)
    lock = _lock_path(path)
    if lock in _HELD:
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot make the folder {lock.parent} ({e.strerror})") from None
    while True:
        fd = open_lock(lock)
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
    _remove_stale_temps(path)


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
