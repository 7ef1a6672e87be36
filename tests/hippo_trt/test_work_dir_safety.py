"""A work dir is never lost or mixed up (security review of serving and work dirs, cases 18-21):
``export --out`` replaces only a work dir (or, with ``--overwrite``, what the user asked for)
and never the model dirs or the current directory's ancestors; concurrent builds keep every
engine record; a build's record never lands on another export."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from hippo_trt.cli.main import main
from hippo_trt.errors import InputError, WorkDirError
from hippo_trt.export import ort_build, trt_build
from hippo_trt.export.api import export_work_dir
from hippo_trt.fingerprint import export_id
from hippo_trt.manifest import Manifest
from tests.conftest import TEST_LIMITS
from tests.runtime.backends.test_trt_pipeline import LIMITS, installed_fake_trt


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


def _export(target: Path, out: Path, **kwargs) -> Manifest:
    return export_work_dir(target, out, limits=TEST_LIMITS, progress=False, isolate=False, **kwargs)


# --- export --out ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [{"notes.txt": "mine", "src/a.py": "print(1)"}, {"manifest.json": '{"format": 2}'}, {"manifest.json": "{ garbage"}],
    ids=["projects", "old-format", "corrupt-manifest"],
)
def test_export_refuses_a_non_empty_dir_that_is_not_a_work_dir(scratch_model, tmp_path, content):
    out = tmp_path / "projects"
    for name, text in content.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _tree(out)
    with pytest.raises(InputError) as err:
        _export(scratch_model, out)
    message = str(err.value)
    assert "is not a hippo-trt work dir" in message and "pass --overwrite" in message and "\n" not in message
    assert _tree(out) == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_export_never_replaces_its_model_dirs_or_a_dir_holding_them(scratch_model, tmp_path, overwrite):
    before = _tree(scratch_model)
    for out in (scratch_model, tmp_path):
        with pytest.raises(InputError, match=r"is or contains the model dir .*; pick another --out"):
            _export(scratch_model, out, overwrite=overwrite)
    assert _tree(scratch_model) == before and _leftovers(tmp_path) == _leftovers(tmp_path.parent) == []


def test_export_never_replaces_an_ancestor_of_the_current_dir(scratch_model, tmp_path, monkeypatch):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (here / "keep.txt").write_text("keep")
    monkeypatch.chdir(here)
    with pytest.raises(InputError, match="contains the current directory"):
        _export(scratch_model, tmp_path / "a", overwrite=True)
    assert (here / "keep.txt").read_text() == "keep"


def test_overwrite_replaces_a_non_work_dir_and_a_work_dir_is_replaced_without_it(scratch_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("replace me")
    manifest = _export(scratch_model, out, overwrite=True)
    assert not (out / "old.txt").exists() and Manifest.load(out) == manifest
    (out / "stray.txt").write_text("inside a work dir")
    again = _export(scratch_model, out)  # a work dir of this format: replaced as before
    assert not (out / "stray.txt").exists() and Manifest.load(out) == again
    assert _leftovers(tmp_path) == [] and not (out / ".hippo-trt.lock").exists()


def test_the_cli_refuses_in_one_line_and_passes_overwrite_on(capfd, scratch_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    out = tmp_path / "projects"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["export", "--target", str(scratch_model), "--out", str(out), "--max-frames", "4", "--max-seq", "128", "--quiet"]
    assert main(argv) == InputError.exit_code
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and "pass --overwrite" in err and "Traceback" not in err
    assert (out / "notes.txt").read_text() == "mine"
    seen = {}

    def stub(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("stub: stop here")

    monkeypatch.setattr("hippo_trt.export.api.export_work_dir", stub)
    assert main([*argv, "--overwrite"]) == InputError.exit_code
    assert seen["overwrite"] is True


# --- concurrent builds -------------------------------------------------------------------------


def _first_call_waits(fn, barrier: threading.Barrier):
    """``fn``, whose first call waits until every writer got there (each has loaded the manifest)."""
    called = []

    def waiting(*args, **kwargs):
        if not called:
            called.append(True)
            barrier.wait()
        return fn(*args, **kwargs)

    return waiting


def _run_all(*jobs) -> None:
    errors: list[BaseException] = []

    def guarded(job):
        try:
            job()
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    if errors:
        raise errors[0]


def test_concurrent_onnxruntime_and_tensorrt_builds_keep_both_records(scratch_work, monkeypatch):
    """Both builds load the manifest, then build (held at a barrier until both have loaded it),
    then record: without a lock and a reload, the later save drops the other's record."""
    replace(Manifest.load(scratch_work), engines={}).save(scratch_work)
    both_loaded = threading.Barrier(2, timeout=120)
    monkeypatch.setattr(ort_build, "_check_loads", _first_call_waits(ort_build._check_loads, both_loaded))
    with installed_fake_trt() as mp:
        mp.setattr(trt_build, "_build_engine", _first_call_waits(trt_build._build_engine, both_loaded))
        _run_all(
            lambda: ort_build.build_onnxruntime(scratch_work, progress=False),
            lambda: trt_build.build_tensorrt(scratch_work, LIMITS, progress=False),
        )
    manifest = Manifest.load(scratch_work)
    assert set(manifest.engines) == {"onnxruntime", "tensorrt"}
    for backend in manifest.engines:
        assert manifest.engines[backend]["export_id"] == export_id(manifest)
        for graphs in manifest.engine_files(backend).values():
            for record in graphs.values():
                record.verify(scratch_work, deep=True, fix="rebuild")
    assert not (scratch_work / ".hippo-trt.lock").exists()
    assert _leftovers(scratch_work / "engines") == []


def test_the_merge_keeps_other_records_and_refuses_a_record_of_another_export(scratch_work):
    current = Manifest.load(scratch_work)
    merged = ort_build.merge_engines(current, "tensorrt", {"backend": "tensorrt", "export_id": export_id(current), "files": {}})
    assert set(merged.engines) == {"onnxruntime", "tensorrt"} and merged.engines["onnxruntime"] == current.engines["onnxruntime"]
    stale = {**current.engines["onnxruntime"], "export_id": "0" * 16}
    with pytest.raises(WorkDirError, match=r"re-exported while the onnxruntime engines were built; run hippo-trt build .*again"):
        ort_build.merge_engines(current, "onnxruntime", stale)


def test_a_build_whose_work_dir_is_re_exported_meanwhile_records_nothing(scratch_work, monkeypatch):
    before = Manifest.load(scratch_work)
    other = replace(before, pruning={})  # another export: another export id
    real = ort_build._check_loads
    saved = []

    def re_export_meanwhile(path, options):
        if not saved:
            saved.append(True)
            replace(other, engines={}).save(scratch_work)
        return real(path, options)

    monkeypatch.setattr(ort_build, "_check_loads", re_export_meanwhile)
    with pytest.raises(WorkDirError, match="re-exported"):
        ort_build.build_onnxruntime(scratch_work, progress=False)
    assert Manifest.load(scratch_work).engines == {}
