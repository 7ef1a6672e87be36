"""Atomic file and directory writes: a reader sees the old content or the new, never half; and
the file lock that keeps concurrent writers of one file from losing each other's changes.

A directory is written in a sibling staging dir and swapped into place. On Linux the swap is
one ``renameat2(RENAME_EXCHANGE)``: the final path always names a complete directory. Elsewhere
(or on a file system without it) it is two renames, and a crash in between leaves the old copy
as ``.NAME.old-*``: the next writer (``recover``) moves it back. A writer holds an flock on its
staging dir, so ``recover`` removes only the dirs of writers that died.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import glob
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; locks there only serialise nothing
    fcntl = None

STAGING, OLD = ".staging-", ".old-"
RENAME_EXCHANGE, AT_FDCWD = 2, -100  # <linux/fs.h>, <fcntl.h>
SWAP_TRIES = 8  # a concurrent writer may replace the final dir between our checks and our renames
RETRY = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)  # a lock never opens through a symlink
DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: object) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# --- locks -----------------------------------------------------------------------------------


def _same_file(fd: int, path: Path) -> bool:
    """``fd`` is still the file that ``path`` names (not removed or replaced meanwhile)."""
    try:
        st, own = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _flock(fd: int, blocking: bool) -> bool:
    """Take ``fd``'s exclusive flock: False when another holds it (not ``blocking``); True where
    the OS or file system has no flock (nothing to take)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    return True


def _locked_fd(path: Path, flags: int, blocking: bool) -> int | None:
    """An fd of ``path`` holding its exclusive flock, or None when another holds it (not
    ``blocking``) or ``path`` was removed or replaced before the lock was ours."""
    fd = os.open(path, flags | NOFOLLOW, 0o644)
    try:
        if _flock(fd, blocking) and _same_file(fd, path):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing, removed on release), across
    processes and threads. A waiter that wakes on a file its holder removed locks the new one."""
    path = Path(path)
    fd = None
    while fd is None:
        fd = _locked_fd(path, os.O_RDWR | os.O_CREAT, blocking=True)
    try:
        yield
    finally:
        if _same_file(fd, path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)


def _dir_lock(path: Path) -> int | None:
    """A directory's flock if free now, else None (held, gone, a symlink or not a directory)."""
    try:
        return _locked_fd(path, DIR, blocking=False)
    except OSError:
        return None


# --- directories -----------------------------------------------------------------------------


def _remove(path: Path) -> None:
    """Remove a dir tree, or a file or symlink (never what a symlink points to)."""
    if os.path.islink(path) or os.path.isfile(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _leftovers(final: Path, kind: str) -> list[Path]:
    return sorted(final.parent.glob(f".{glob.escape(final.name)}{kind}*"))


def recover(final: Path) -> None:
    """After a writer of ``final`` died: put its old copy back when ``final`` is missing, and
    remove its staging and old dirs. Dirs that a live writer holds locked are left alone."""
    final = Path(final).absolute()
    for path in (*_leftovers(final, OLD), *_leftovers(final, STAGING)):
        fd = _dir_lock(path)
        if fd is None:
            continue  # in use, gone meanwhile, or not a dir
        try:
            if path.name.startswith(f".{final.name}{OLD}") and not os.path.lexists(final):
                os.rename(path, final)
            else:
                _remove(path)
        finally:
            os.close(fd)


def _new_stage(final: Path) -> tuple[Path, int]:
    """A fresh staging dir beside ``final``, locked (a concurrent ``recover`` may remove it
    between its creation and its lock: then another)."""
    while True:
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}{STAGING}", dir=final.parent))
        with contextlib.suppress(FileNotFoundError):
            fd = _locked_fd(stage, DIR, blocking=True)
            if fd is not None:
                return stage, fd


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A fresh, locked sibling dir of ``final`` to write into, removed on the way out whatever
    happens; ``publish`` swaps it into place. Stale dirs of dead writers are cleaned first."""
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    stage, fd = _new_stage(final)
    try:
        os.chmod(stage, 0o755)
        yield stage
    finally:
        _remove(stage)  # after a publish: nothing, or the old dir (an exchange swapped them)
        os.close(fd)


@functools.cache
def _renameat2():
    """libc's renameat2 (Linux, glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:
        fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the OS or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _restore(old: Path, final: Path) -> None:
    """The second rename failed: the old dir goes back, or, when another writer's dir took its
    place, away; when ``final`` stays missing it waits for ``recover``."""
    with contextlib.suppress(OSError):
        os.rename(old, final)
    if os.path.lexists(final):
        _remove(old)


def _two_renames(stage: Path, final: Path) -> Path:
    old = final.with_name(f".{final.name}{OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(final, old)
    try:
        os.rename(stage, final)
    except BaseException:
        _restore(old, final)
        raise
    return old


def _swap(stage: Path, final: Path) -> Path | None:
    """``stage`` in ``final``'s place; the path now holding the old content, if any."""
    if not os.path.lexists(final):
        os.rename(stage, final)
        return None
    if _exchange(stage, final):
        return stage
    return _two_renames(stage, final)


def publish(stage: Path, final: Path) -> None:
    """Put ``stage`` in ``final``'s place (an exchange, or two renames) and remove the old
    content. A concurrent writer that got in between is retried over: the last one wins."""
    for attempt in range(SWAP_TRIES):
        try:
            old = _swap(Path(stage), Path(final).absolute())
        except OSError as e:
            if e.errno in RETRY and attempt < SWAP_TRIES - 1 and os.path.isdir(stage):
                continue
            raise
        if old is not None:
            _remove(old)
        return


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp dir; on success it replaces ``final`` in one step.

    On any error the temp dir is removed and ``final`` is left exactly as it was.
    """
    with staging(final) as stage:
        yield stage
        publish(stage, final)
