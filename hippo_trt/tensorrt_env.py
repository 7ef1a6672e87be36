"""The TensorRT module and the GPU that engines are built for: one-line errors when either is missing."""

from __future__ import annotations

from hippo_trt.errors import EngineError

SUPPORTED = ((10, 3), (11, 0))  # [from, to): 10.3 parses Slice/Pad axes inputs; 11 drops the BF16 builder flag
INSTALL_HINT = (
    "install TensorRT 10 (10.3 or newer, not 11) on a machine with an NVIDIA GPU: pip install 'hippo-trt[tensorrt]' "
    "(tensorrt>=10.3,<11 from NVIDIA's package index) or the TensorRT 10 tarball, then re-run "
    "(hippo-trt build WORK --backend tensorrt --dry-run prints the plan without it)"
)


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '10.13.0.35'; (0, 0) when unreadable."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0


def check_version(version: str) -> None:
    """A one-line EngineError unless ``version`` is in ``SUPPORTED``."""
    if not SUPPORTED[0] <= version_tuple(version) < SUPPORTED[1]:
        raise EngineError(f"TensorRT {version} is not supported (hippo-trt needs 10.3 <= version < 11); {INSTALL_HINT}")


def require_tensorrt():
    """The ``tensorrt`` module, or a one-line EngineError saying what is missing and how to get it."""
    try:
        import tensorrt
    except (ImportError, OSError) as e:
        raise EngineError(f"TensorRT is not installed ({e}); {INSTALL_HINT}") from None
    check_version(getattr(tensorrt, "__version__", "unknown"))
    return tensorrt


def gpu_identity() -> dict[str, str]:
    """Name and compute capability of GPU 0; engines are only valid there."""
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT engines need a CUDA GPU and none is visible (CUDA_VISIBLE_DEVICES, driver)")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
