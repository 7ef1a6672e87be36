"""Shared fixtures: tiny random model dirs, exported and built once per session (in this
process: ``isolate=False`` saves a Python start per model; tests/export covers the isolated export)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from hippo_trt.dims import ExportLimits
from hippo_trt.testing.tiny import make_tiny_model_dir, make_tiny_qwen3_dir, make_tiny_qwen_dir
from hippo_trt.testing.tiny_pairs import (  # noqa: F401 (re-exported to tests)
    DRAFT_OF,
    QWEN3_DRAFTS,
    QWEN3_SPECS,
    QWEN_DRAFTS,
    QWEN_SPECS,
    TINY_SPECS,
)
from hippo_trt.video import write_video

# The same examples every run (CI must not depend on the draw); HYPOTHESIS_PROFILE=explore
# draws new ones on a developer's machine.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TEST_LIMITS = ExportLimits(max_frames=6, max_seq=200, max_spec_len=9)


@pytest.fixture(scope="session")
def qwen_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random Qwen2.5-VL targets (by name) and their drafts (``<name>_draft``)."""
    root = tmp_path_factory.mktemp("qwen-models")
    dirs = {name: make_tiny_qwen_dir(root / name, spec) for name, spec in QWEN_SPECS.items()}
    dirs.update({f"{name}_draft": make_tiny_qwen_dir(root / f"{name}_draft", spec) for name, spec in QWEN_DRAFTS.items()})
    return dirs


@pytest.fixture(scope="session")
def qwen_work_dirs(qwen_dirs, tmp_path_factory) -> dict[str, Path]:
    """Each tiny Qwen2.5-VL target exported with its draft and built for onnxruntime."""
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime

    root = tmp_path_factory.mktemp("qwen-work")
    works = {}
    for name in QWEN_SPECS:
        export_work_dir(qwen_dirs[name], root / name, draft=qwen_dirs[f"{name}_draft"], limits=TEST_LIMITS, progress=False, isolate=False)
        build_onnxruntime(root / name, progress=False)
        works[name] = root / name
    return works


@pytest.fixture(scope="session")
def qwen3_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random Qwen3-VL targets (by name) and their drafts (``<name>_draft``)."""
    root = tmp_path_factory.mktemp("qwen3-models")
    dirs = {name: make_tiny_qwen3_dir(root / name, spec) for name, spec in QWEN3_SPECS.items()}
    dirs.update({f"{name}_draft": make_tiny_qwen3_dir(root / f"{name}_draft", spec) for name, spec in QWEN3_DRAFTS.items()})
    return dirs


@pytest.fixture(scope="session")
def qwen3_work_dirs(qwen3_dirs, tmp_path_factory) -> dict[str, Path]:
    """Each tiny Qwen3-VL target exported with its draft and built for onnxruntime."""
    root = tmp_path_factory.mktemp("qwen3-work")
    return {name: _built_pair(qwen3_dirs[name], qwen3_dirs[f"{name}_draft"], root / name) for name in QWEN3_SPECS}


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: make_tiny_model_dir(root / name, spec) for name, spec in TINY_SPECS.items()}


@pytest.fixture(scope="session")
def work_dirs(tiny_dirs, tmp_path_factory) -> dict[str, Path]:
    """Each tiny target exported (with its draft where it has one) and built for onnxruntime."""
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime

    root = tmp_path_factory.mktemp("work")
    works = {}
    for name in ("gqa", "mha_odd_grid"):
        draft = tiny_dirs[DRAFT_OF[name]] if name in DRAFT_OF else None
        export_work_dir(tiny_dirs[name], root / name, draft=draft, limits=TEST_LIMITS, progress=False, isolate=False)
        build_onnxruntime(root / name, progress=False)
        works[name] = root / name
    return works


@pytest.fixture
def scratch_work(work_dirs, tmp_path) -> Path:
    """A private copy of the gqa work dir that a test may damage."""
    return Path(shutil.copytree(work_dirs["gqa"], tmp_path / "work"))


@pytest.fixture
def scratch_model(tiny_dirs, tmp_path) -> Path:
    """A private copy of the gqa model dir that a test may damage."""
    return Path(shutil.copytree(tiny_dirs["gqa"], tmp_path / "model"))


def random_frames(seed: int, frames: int, height: int = 36, width: int = 44) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_video(path, random_frames(0, 10))
    return path


def _built_pair(target: Path, draft: Path, work: Path) -> Path:
    """``target`` with ``draft`` exported to ``work`` and built for onnxruntime."""
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime

    export_work_dir(target, work, draft=draft, limits=TEST_LIMITS, progress=False, isolate=False)
    build_onnxruntime(work, progress=False)
    return work


@pytest.fixture(scope="session")
def self_draft_work(tiny_dirs, tmp_path_factory) -> Path:
    """The gqa target drafting for itself (one checkpoint as both models): a draft reading every
    visual token accepts every token; one reading a lightly pruned video most of them."""
    return _built_pair(tiny_dirs["gqa"], tiny_dirs["gqa"], tmp_path_factory.mktemp("self-draft") / "work")


@pytest.fixture(scope="session")
def qwen_self_draft_work(qwen_dirs, tmp_path_factory) -> Path:
    """The qwen_gqa target drafting for itself, as ``self_draft_work``."""
    return _built_pair(qwen_dirs["qwen_gqa"], qwen_dirs["qwen_gqa"], tmp_path_factory.mktemp("qwen-self-draft") / "work")
