"""Atomic writes: a reader sees the old content or the new one, and no temp file survives."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hippo_trt import atomic
from hippo_trt.atomic import staged_dir, write_bytes, write_json


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


class Boom(Exception):
    pass


# --- write_bytes / write_json --------------------------------------------------------------


def test_write_bytes_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "data.bin"
    write_bytes(target, b"\x00\x01hello")
    assert target.read_bytes() == b"\x00\x01hello"
    assert _names(target.parent) == {"data.bin"}


def test_write_bytes_replaces_existing_content(tmp_path):
    target = tmp_path / "f.txt"
    target.write_bytes(b"old content that is longer than the new")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == {"f.txt"}


def test_write_bytes_replaces_by_rename_not_in_place(tmp_path):
    """A reader holding the old file keeps seeing the old bytes (a new inode replaced it)."""
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")
    with open(target, "rb") as reader:
        inode = os.stat(target).st_ino
        write_bytes(target, b"new content")
        assert reader.read() == b"old"
    assert os.stat(target).st_ino != inode
    assert target.read_bytes() == b"new content"


def test_write_bytes_failure_keeps_old_content_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")

    def failing_replace(src, dst):
        raise Boom("disk on fire")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(Boom):
        write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == {"f.txt"}


def test_write_bytes_bad_data_leaves_no_temp(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(TypeError):
        write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert not target.exists()
    assert _names(tmp_path) == set()


def test_write_json_round_trip_sorted_with_newline(tmp_path):
    target = tmp_path / "m.json"
    obj = {"z": 1, "a": [1, 2, {"k": "v"}], "m": None}
    write_json(target, obj)
    text = target.read_text()
    assert json.loads(text) == obj
    assert text.endswith("\n")
    assert text.index('"a"') < text.index('"m"') < text.index('"z"')
    write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert _names(tmp_path) == {"m.json"}


def test_write_json_unserialisable_keeps_old_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"ok": True})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": True}
    assert _names(tmp_path) == {"m.json"}


# --- staged_dir ----------------------------------------------------------------------------


def _fill(d: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)


def _tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): p.read_text() for p in sorted(d.rglob("*")) if p.is_file()}


def test_staged_dir_creates_final_on_success(tmp_path):
    final = tmp_path / "parent" / "work"
    with staged_dir(final) as stage:
        assert stage.is_dir() and stage.parent == final.parent.absolute()
        assert stage.name.startswith(".work.staging-")
        assert not final.exists()  # nothing visible until the block succeeds
        _fill(stage, {"a.txt": "A", "sub/b.txt": "B"})
    assert _tree(final) == {"a.txt": "A", "sub/b.txt": "B"}
    assert _names(final.parent) == {"work"}
    assert oct(final.stat().st_mode & 0o777) == oct(0o755)


def test_staged_dir_success_replaces_old_content_entirely(tmp_path):
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"old.txt": "old", "keep/x.txt": "x"})
    with staged_dir(final) as stage:
        assert _tree(final) == {"old.txt": "old", "keep/x.txt": "x"}  # old still readable meanwhile
        _fill(stage, {"new.txt": "new"})
    assert _tree(final) == {"new.txt": "new"}
    assert _names(tmp_path) == {"work"}  # neither staging nor .old dir left behind


def test_staged_dir_exception_keeps_old_content_and_removes_stage(tmp_path):
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"old.txt": "old"})
    with pytest.raises(Boom):
        with staged_dir(final) as stage:
            _fill(stage, {"new.txt": "half written"})
            raise Boom()
    assert _tree(final) == {"old.txt": "old"}
    assert _names(tmp_path) == {"work"}


def test_staged_dir_exception_without_old_dir_creates_nothing(tmp_path):
    final = tmp_path / "work"
    with pytest.raises(Boom):
        with staged_dir(final) as stage:
            _fill(stage, {"new.txt": "x"})
            raise Boom()
    assert not final.exists()
    assert _names(tmp_path) == set()


def test_staged_dir_keyboard_interrupt_also_cleans_up(tmp_path):
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"old.txt": "old"})
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(final) as stage:
            _fill(stage, {"new.txt": "x"})
            raise KeyboardInterrupt
    assert _tree(final) == {"old.txt": "old"}
    assert _names(tmp_path) == {"work"}


def test_staged_dir_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with staged_dir(Path("rel")) as stage:
        assert stage.is_absolute()
        _fill(stage, {"f": "1"})
    assert _tree(tmp_path / "rel") == {"f": "1"}
    assert _names(tmp_path) == {"rel"}


# --- crash safety and concurrent writers (security review: atomic.py) -----------------------


def _exchange_supported(d: Path) -> bool:
    """renameat2(RENAME_EXCHANGE) works on ``d``'s file system (Linux, ext4/xfs/btrfs/tmpfs)."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    a, b = d / ".probe-a", d / ".probe-b"
    a.mkdir(), b.mkdir()
    try:
        return fn(-100, bytes(a), -100, bytes(b), 2) == 0
    finally:
        a.rmdir(), b.rmdir()


@pytest.fixture
def two_renames(monkeypatch):
    """The portable swap (no renameat2, as on macOS or a file system without RENAME_EXCHANGE)."""
    monkeypatch.setattr(atomic, "_renameat2", lambda: None, raising=False)


def _hook_renames(monkeypatch, before=None, after=None) -> None:
    """``os.rename`` and ``os.replace`` call ``before(src, dst)``, the real call, ``after(src, dst)``."""

    def hooked(real):
        def call(src, dst, *args, **kwargs):
            if before:
                before(Path(src), Path(dst))
            result = real(src, dst, *args, **kwargs)
            if after:
                after(Path(src), Path(dst))
            return result

        return call

    monkeypatch.setattr(os, "rename", hooked(os.rename))
    monkeypatch.setattr(os, "replace", hooked(os.replace))


def test_staged_dir_swaps_in_one_exchange_so_final_never_goes_missing(tmp_path, monkeypatch):
    if not _exchange_supported(tmp_path):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: the two-rename path is tested below")
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"old.txt": "old"})
    moved = []
    _hook_renames(monkeypatch, before=lambda src, dst: moved.append(src))
    with staged_dir(final) as stage:
        _fill(stage, {"new.txt": "new"})
        inode = stage.stat().st_ino
    assert final not in moved  # never renamed away: the exchange puts the new dir in its place
    assert final.stat().st_ino == inode and _tree(final) == {"new.txt": "new"}
    assert _names(tmp_path) == {"work"}


def test_a_writer_landing_between_the_two_renames_loses_nothing_and_leaks_nothing(tmp_path, monkeypatch, two_renames):
    """Writer B publishes right after writer A moved the old dir away (A's rename then meets a
    non-empty final): A retries, the last writer wins, no staging or old dir is left."""
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"v": "0"})
    done = []

    def writer_b(src, dst):
        if src == final and not done:
            done.append(True)
            with staged_dir(final) as stage:
                _fill(stage, {"v": "B"})

    _hook_renames(monkeypatch, after=writer_b)
    with staged_dir(final) as stage:
        _fill(stage, {"v": "A"})
    assert done and _tree(final) == {"v": "A"}
    assert _names(tmp_path) == {"work"}


def test_a_failed_second_rename_puts_the_old_dir_back(tmp_path, monkeypatch, two_renames):
    """Review case 20: the rename of the new dir into place fails after the old one moved away."""
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"v": "old"})

    def fail_into_final(src, dst):
        if dst == final and ".staging-" in src.name:
            raise OSError(errno.EIO, "disk on fire")

    _hook_renames(monkeypatch, before=fail_into_final)
    with pytest.raises(OSError, match="disk on fire"):
        with staged_dir(final) as stage:
            _fill(stage, {"v": "new"})
    assert _tree(final) == {"v": "old"}
    assert _names(tmp_path) == {"work"}


def test_the_next_run_recovers_a_crash_between_the_two_renames(tmp_path):
    """A run killed after moving the old dir away: the next run puts it back (the final dir was
    missing) and removes the dead run's staging dir, even when that run fails itself."""
    final = tmp_path / "work"
    old = tmp_path / ".work.old-4242-dead"
    old.mkdir()
    _fill(old, {"v": "old"})
    stale = tmp_path / ".work.staging-dead"
    stale.mkdir()
    _fill(stale, {"v": "half written"})
    with pytest.raises(Boom):
        with staged_dir(final):
            raise Boom()
    assert _tree(final) == {"v": "old"}
    assert _names(tmp_path) == {"work"}


def test_a_stale_old_dir_beside_an_existing_final_is_removed(tmp_path):
    final = tmp_path / "work"
    final.mkdir()
    _fill(final, {"v": "new"})
    (tmp_path / ".work.old-1-x").mkdir()
    atomic.recover(final)
    assert _tree(final) == {"v": "new"} and _names(tmp_path) == {"work"}


def test_a_live_writers_staging_dir_is_left_alone(tmp_path):
    final = tmp_path / "work"
    with staged_dir(final) as outer:
        _fill(outer, {"v": "outer"})
        with staged_dir(final) as inner:  # its start cleans stale dirs: the outer one is in use
            _fill(inner, {"v": "inner"})
        assert _tree(outer) == {"v": "outer"} and _tree(final) == {"v": "inner"}
    assert _tree(final) == {"v": "outer"}
    assert _names(tmp_path) == {"work"}


def test_a_symlinked_final_is_replaced_and_its_target_left_alone(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    _fill(target, {"mine.txt": "mine"})
    final = tmp_path / "work"
    final.symlink_to(target)
    with staged_dir(final) as stage:
        _fill(stage, {"v": "new"})
    assert not final.is_symlink() and _tree(final) == {"v": "new"}
    assert _tree(target) == {"mine.txt": "mine"}
    assert _names(tmp_path) == {"work", "elsewhere"}


# --- file_lock -------------------------------------------------------------------------------


def test_file_lock_serialises_read_modify_write_and_leaves_no_lock_file(tmp_path):
    """Each holder removes the lock file on release; a waiter that wakes on a removed file
    locks the new one, so no two holders ever overlap."""
    counter, lock = tmp_path / "n", tmp_path / ".lock"
    counter.write_text("0")

    def bump():
        for _ in range(25):
            with atomic.file_lock(lock):
                n = int(counter.read_text())
                time.sleep(0.0005)
                counter.write_text(str(n + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.read_text() == "100"
    assert _names(tmp_path) == {"n"}


def test_file_lock_is_released_on_error(tmp_path):
    lock = tmp_path / ".lock"
    with pytest.raises(Boom):
        with atomic.file_lock(lock):
            raise Boom()
    with atomic.file_lock(lock):  # not held any more
        pass
    assert _names(tmp_path) == set()


def test_file_lock_serialises_processes(tmp_path):
    """Two processes (as two ``hippo-trt build`` runs) bumping one counter under the lock."""
    counter = tmp_path / "n"
    counter.write_text("0")
    code = (
        "import sys, time; from pathlib import Path; from hippo_trt.atomic import file_lock\n"
        "counter = Path(sys.argv[1])\n"
        "for _ in range(40):\n"
        "    with file_lock(counter.with_name('.lock')):\n"
        "        n = int(counter.read_text()); time.sleep(0.001); counter.write_text(str(n + 1))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(counter)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert counter.read_text() == "80" and _names(tmp_path) == {"n"}
