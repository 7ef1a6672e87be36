"""The TensorRT module and the GPU that engines are built for: one-line errors when either is missing."""

from __future__ import annotations

from hippo_trt.errors import EngineError

INSTALL_HINT = (
    "install TensorRT 10 on a machine with an NVIDIA GPU (pip install tensorrt from NVIDIA's "
    "package index, or the TensorRT tarball), then re-run (hippo-trt build WORK --backend tensorrt --dry-run prints the plan without it)"
)


def require_tensorrt():
    """The ``tensorrt`` module, or a one-line EngineError saying what is missing and how to get it."""
    try:
        import tensorrt
    except (ImportError, OSError) as e:
        raise EngineError(f"TensorRT is not installed ({e}); {INSTALL_HINT}") from None
    return tensorrt


def gpu_identity() -> dict[str, str]:
    """Name and compute capability of GPU 0; engines are only valid there."""
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT engines need a CUDA GPU and none is visible (CUDA_VISIBLE_DEVICES, driver)")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
