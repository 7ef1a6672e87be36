"""Atomic writes: a reader sees the old content or the new one, and no temp file survives."""

from __future__ import annotations

import json
import os
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
