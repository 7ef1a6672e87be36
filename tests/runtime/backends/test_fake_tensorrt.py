"""The TensorRT stand-in enforces TensorRT 10's documented semantics, so the suite can fail where
real TensorRT would: each test shows one rule catching what main had before the rules existed
(the old pruning graphs are kept in tests/export/data/legacy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hippo_trt.export.prune_graph import save_prune_graph
from tests.runtime.backends import fake_tensorrt

LEGACY = Path(__file__).parents[2] / "export" / "data" / "legacy"


def fused_feeds(seed: int, frames: int = 3, side: int = 3, extra: int = 1, keep: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = frames * side * side + extra
    return {
        "importance": rng.normal(size=n).astype(np.float32),
        "features": rng.normal(size=(n, 8)).astype(np.float32),
        "grid": np.array([frames, side, side], dtype=np.int64),
        "keep_count": np.array(keep, dtype=np.int64),
        "weights": np.array([0.4, 0.3, 0.3], dtype=np.float32),
        "position_ids": np.arange(n, dtype=np.int64),
    }


def engine(path: Path, tmp_path: Path) -> fake_tensorrt.FakeEngine:
    plan = tmp_path / f"{path.stem}.plan"
    fake_tensorrt.build_plan_file(path, plan, ["grid", "keep_count"])
    return fake_tensorrt.Runtime(fake_tensorrt.Logger()).deserialize_cuda_engine(plan.read_bytes())


def onnxruntime_outputs(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.mark.parametrize("seed", range(3))
def test_negative_gathers_on_dynamic_axes_give_zeros_so_the_old_fused_graph_selects_wrongly(seed, tmp_path):
    feeds = fused_feeds(seed)
    old = LEGACY / "prune_fused.onnx"
    assert not np.array_equal(engine(old, tmp_path).run(feeds)["grid_score"], onnxruntime_outputs(old, feeds)["grid_score"])
    new = save_prune_graph(tmp_path / "fused.onnx", "fused")
    got, want = engine(new, tmp_path).run(feeds), onnxruntime_outputs(new, feeds)
    assert all(np.array_equal(got[name], want[name]) for name in want)  # the Slice-based graph: same answer


def test_a_topk_with_k_zero_is_refused_as_tensorrt_refuses_it(tmp_path):
    """The old profile let keep_count reach the extra tokens alone (K = keep_count - extra = 0)."""
    new = engine(save_prune_graph(tmp_path / "fused.onnx", "fused"), tmp_path)
    with pytest.raises(RuntimeError, match="TopK with K = 0"):
        new.run(fused_feeds(0, keep=1))  # 1 kept = the newline token only
    assert new.run(fused_feeds(0, keep=2))["kept_index"].shape == (2,)


def test_unaligned_addresses_are_refused_and_shape_tensors_live_on_the_host(tmp_path):
    context = engine(save_prune_graph(tmp_path / "fused.onnx", "fused"), tmp_path).create_execution_context()
    buf = torch.zeros(128, dtype=torch.float32)
    base = buf.data_ptr() + (-buf.data_ptr() % 256)
    assert context.set_tensor_address("features", base) and not context.set_tensor_address("features", base + 64)
    assert not context.set_tensor_address("features", 0)
    locations = {n: context.engine.get_tensor_location(n) for n in ("grid", "keep_count", "features", "importance")}
    assert locations == {
        "grid": fake_tensorrt.TensorLocation.HOST,
        "keep_count": fake_tensorrt.TensorLocation.HOST,
        "features": fake_tensorrt.TensorLocation.DEVICE,
        "importance": fake_tensorrt.TensorLocation.DEVICE,
    }
    assert not hasattr(context.engine, "is_shape_inference_io")  # the documented query is the location


def test_work_completes_only_when_the_stream_syncs(tmp_path):
    from hippo_trt.runtime.backends.arrays import aligned_empty

    fused = engine(save_prune_graph(tmp_path / "fused.onnx", "fused"), tmp_path)
    context = fused.create_execution_context()
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in fused_feeds(1).items()}
    bound = {k: aligned_empty(tuple(v.shape), v.dtype, "cpu").copy_(v) for k, v in feeds.items()}
    for name, t in bound.items():
        assert context.set_input_shape(name, tuple(t.shape)) and context.set_tensor_address(name, t.data_ptr())
    outputs = {
        n: aligned_empty(context.get_tensor_shape(n), torch.float32 if n in ("grid_score", "kept_features") else torch.int64, "cpu").fill_(
            -7
        )
        for n in ("kept_index", "kept_features", "kept_position_ids", "grid_score")
    }
    for name, t in outputs.items():
        assert context.set_tensor_address(name, t.data_ptr())
    assert context.execute_async_v3(0)
    assert bool((outputs["kept_index"] == -7).all())  # enqueued, not run
    fake_tensorrt.synchronize()
    want = fused.run({k: v.numpy() for k, v in feeds.items()})
    assert np.array_equal(outputs["kept_index"].numpy(), want["kept_index"])


def test_engine_io_keeps_the_graphs_types_whatever_the_build_precision(tmp_path):
    """A bf16 build by flag from fp32 graphs keeps fp32 I/O (the plan's KV estimate uses 4 bytes)."""
    path = save_prune_graph(tmp_path / "fused.onnx", "fused")
    plan = tmp_path / "bf16.plan"
    fake_tensorrt.build_plan_file(path, plan, ["grid", "keep_count"], precision="bf16")
    bf16 = fake_tensorrt.Runtime(fake_tensorrt.Logger()).deserialize_cuda_engine(plan.read_bytes())
    assert bf16.precision == "bf16" and bf16.get_tensor_dtype("features") == fake_tensorrt.float32
