"""``compare_backend``: a backend's outputs against torch through Polygraphy's Comparator."""

from __future__ import annotations

from functools import cache

import pytest

from hippo_trt.errors import EngineError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.loader import load_engines
from hippo_trt.runtime.compare import (
    CheckSizes,
    EngineRunner,
    compare_backend,
    compare_engines,
    decoder_calls,
    format_rows,
    sample_feeds,
)

GRAPHS = ("vision", "decoder (prefill)", "decoder (step)")  # the decoder checked as each kind of call


@cache
def _rows(work: str):
    return tuple(compare_backend(work, "onnxruntime"))


def test_onnxruntime_matches_torch_on_every_output_of_both_roles(work_dirs):
    work = work_dirs["gqa"]
    rows = _rows(str(work))
    manifest = Manifest.load(work)
    for role, record in manifest.models.items():
        layers = record.decoder["layers"]
        outputs = {(r.graph, r.output) for r in rows if r.role == role}
        assert {g for g, _ in outputs} == set(GRAPHS)
        assert len([o for g, o in outputs if g == "decoder (step)"]) == 2 + 2 * layers
    for r in rows:
        assert r.passed, format_rows([r])
        assert 0.0 <= r.max_abs < 1e-4 and r.max_abs <= r.allowed_abs


def test_a_qwen_work_dir_checks_with_real_window_layouts(qwen_work_dirs):
    """The vision graph is fed its family's valid layout (random window indices would be out of range)."""
    rows = compare_backend(qwen_work_dirs["qwen_mqa"], "onnxruntime")
    assert {(r.role, r.graph) for r in rows} == {(role, g) for role in ("target", "draft") for g in GRAPHS}
    vision = [r for r in rows if r.graph == "vision"]
    assert [r.output for r in vision] == ["visual_tokens", "visual_tokens"]
    for r in rows:
        assert r.passed, format_rows([r])


def test_format_rows_is_a_markdown_table(work_dirs):
    rows = _rows(str(work_dirs["gqa"]))
    lines = format_rows(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| role | graph | output |") and all(line.endswith("| pass |") for line in lines[2:])


class Shifted:
    """An engine whose one output is off by ``delta``: what a broken backend would return."""

    def __init__(self, engine, output: str, delta: float):
        self.engine, self.spec, self.output, self.delta = engine, engine.spec, output, delta

    def run(self, feeds, into=None):
        outputs = self.engine.run(feeds, into)
        outputs[self.output] = outputs[self.output] + self.delta
        return outputs


@cache
def _engines(work: str, backend: str):
    return load_engines(work, Manifest.load(work), "draft", backend, OrtOptions())


def test_a_shifted_output_fails_and_the_others_pass(work_dirs):
    work = str(work_dirs["gqa"])
    ort, torch = _engines(work, "onnxruntime"), _engines(work, "torch")
    manifest = Manifest.load(work)
    sizes = decoder_calls(CheckSizes().resolve(manifest.dims_table))["prefill"]
    feeds = sample_feeds(ort.decoder.spec, sizes, manifest.model("draft").decoder["vocab"])
    rows = compare_engines("draft", Shifted(ort.decoder, "new_value_0", 0.5), torch.decoder, feeds)
    by_output = {r.output: r for r in rows}
    assert set(by_output) == {"logits", "importance", "new_key_0", "new_value_0"}
    assert not by_output["new_value_0"].passed and by_output["new_value_0"].max_abs == pytest.approx(0.5, abs=1e-3)
    assert by_output["logits"].passed and by_output["new_key_0"].passed


def test_a_shape_mismatch_fails_with_infinite_error(work_dirs):
    work = str(work_dirs["gqa"])
    ort, torch = _engines(work, "onnxruntime"), _engines(work, "torch")
    manifest = Manifest.load(work)
    feeds = sample_feeds(ort.vision.spec, CheckSizes().resolve(manifest.dims_table), 10)

    class Truncated(Shifted):
        def run(self, feeds, into=None):
            outputs = self.engine.run(feeds, into)
            return {k: v[:, :-1] for k, v in outputs.items()}

    (row,) = compare_engines("draft", Truncated(ort.vision, "visual_tokens", 0.0), torch.vision, feeds)
    assert not row.passed and row.max_abs == float("inf")


def test_runner_reports_symbolic_input_metadata(work_dirs):
    ort = _engines(str(work_dirs["gqa"]), "onnxruntime")
    with EngineRunner(ort.decoder, "ort") as runner:
        meta = runner.get_input_metadata(use_numpy_dtypes=False)
    assert list(meta) == [t.name for t in ort.decoder.spec.inputs]
    assert list(meta["input_ids"].shape) == ["batch", "seq"] and list(meta["past_key_0"].shape)[0] == "past"


def test_tensorrt_backend_without_tensorrt_is_a_one_line_error(work_dirs):
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("tensorrt is installed here; the missing-TensorRT error cannot be shown")
    with pytest.raises(EngineError, match="^TensorRT is not installed") as info:
        compare_backend(work_dirs["gqa"], "tensorrt")
    message = str(info.value)
    assert "\n" not in message and "pip install 'hippo-trt[tensorrt]'" in message and "NVIDIA GPU" in message
