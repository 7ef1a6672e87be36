"""Load one model's engines (vision, decoder) from a work dir, for a backend, refusing stale builds.

Backends: ``onnxruntime`` (the built graphs, host arrays), ``torch`` (the eager reference, host
arrays), ``torch-cuda`` (the same modules on the GPU, device tensors) and ``tensorrt`` (the
built engines, device tensors; see trt_engine.py).
"""

from __future__ import annotations

from pathlib import Path

from hippo_trt.errors import EngineError, InputError, WorkDirError
from hippo_trt.fingerprint import export_id
from hippo_trt.graphs.families import family, specs_from_record
from hippo_trt.manifest import IF_CHANGED, Manifest
from hippo_trt.model_dir import ModelDir
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.arrays import FLOAT_DTYPES, Placement
from hippo_trt.runtime.backends.base import Engine, ModelEngines
from hippo_trt.runtime.backends.onnxruntime import OrtEngine
from hippo_trt.runtime.backends.tensorrt import load_trt_engines
from hippo_trt.runtime.backends.torch_eager import DeviceTorchEngine, TorchEngine
from hippo_trt.runtime.backends.torch_static import static_sessions

# Prompt tokens one host decoder call prefills: the eager attention's scores are
# [heads, chunk, past + chunk], so a 32-frame video's prompt is not one [heads, S, S] block.
PREFILL_CHUNK = 2048


def _ort_engines(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> dict[str, Engine]:
    build_cmd = f"run: hippo-trt build {work} --backend onnxruntime"
    record = manifest.engines.get("onnxruntime")
    if record is None:
        raise WorkDirError(f"'{work}' has no onnxruntime engines; {build_cmd}")
    import onnxruntime as ort

    if record["version"] != ort.__version__:
        raise WorkDirError(f"engines in '{work}' were built with onnxruntime {record['version']}, this is {ort.__version__}; {build_cmd}")
    if record["export_id"] != export_id(manifest):
        raise WorkDirError(f"engines in '{work}' were built from another export; {build_cmd}")
    files = manifest.engine_files("onnxruntime")[role]
    specs = specs_from_record(manifest.model(role))
    return {n: OrtEngine(files[n].verify(work, deep=IF_CHANGED, fix=build_cmd), specs[n], options.for_graph(n)) for n in specs}


def _load_model(manifest: Manifest, role: str, dtype: str = "fp32"):
    record = manifest.model(role)
    model_dir = ModelDir.open(record.source)
    if model_dir.weight_hash() != record.weight_hash:
        raise WorkDirError(f"'{record.source}' now holds other weights than were exported (hash mismatch)")
    return model_dir.load_model(dtype)


def _graph_modules(manifest: Manifest, role: str, model=None) -> dict:
    model = _load_model(manifest, role) if model is None else model
    return family(manifest.model(role).architecture).graph_modules(model)


def _torch_loader(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> ModelEngines:
    modules = _graph_modules(manifest, role)
    engines = {name: TorchEngine(modules[name], spec) for name, spec in specs_from_record(manifest.model(role)).items()}
    return ModelEngines(record=manifest.model(role), **engines, prefill_chunk=PREFILL_CHUNK)


def torch_device_engines(manifest: Manifest, role: str, device: str, cuda_graphs: bool = True, dtype: str = "fp32") -> ModelEngines:
    """The eager torch modules on ``device`` ("cuda", or "cpu" to test the device path) in
    ``dtype`` (fp32, bf16, fp16); a request prefills and decodes through the model's
    StaticDecoder (static_decode.py), its steps CUDA graphs with ``cuda_graphs`` on a CUDA
    device and eager elsewhere."""

    placement = Placement(device, dtype)  # checks the dtype
    model = _load_model(manifest, role, dtype).to(device=device)  # loaded in dtype: no fp32 copy first
    modules = _graph_modules(manifest, role, model)
    specs = specs_from_record(manifest.model(role))
    engines = {name: DeviceTorchEngine(modules[name], spec, device, dtype) for name, spec in specs.items()}
    sessions = static_sessions(model, role, manifest.dims_table, placement, cuda_graphs)
    return ModelEngines(record=manifest.model(role), **engines, placement=placement, sessions=sessions)


def require_cuda(backend: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise EngineError(
            f"--backend {backend} needs a CUDA GPU and none is visible (driver, CUDA_VISIBLE_DEVICES); use --backend onnxruntime"
        )


def _torch_cuda_loader(work: Path, manifest: Manifest, role: str, options: OrtOptions, dtype: str = "fp32") -> ModelEngines:
    require_cuda("torch-cuda")
    return torch_device_engines(manifest, role, "cuda", dtype=dtype)


def _ort_loader(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> ModelEngines:
    return ModelEngines(record=manifest.model(role), **_ort_engines(work, manifest, role, options), prefill_chunk=PREFILL_CHUNK)


def _trt_loader(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> ModelEngines:

    return load_trt_engines(work, manifest, role)


LOADERS = {"onnxruntime": _ort_loader, "torch": _torch_loader, "torch-cuda": _torch_cuda_loader, "tensorrt": _trt_loader}
BACKENDS = tuple(LOADERS)


def load_engines(work: Path, manifest: Manifest, role: str, backend: str, options: OrtOptions, dtype: str = "fp32") -> ModelEngines:
    """``dtype`` (fp32, bf16, fp16) is the torch-cuda backend's precision; ONNX Runtime runs the
    exported graphs as they are, and TensorRT's precision is chosen when building."""
    if backend not in LOADERS:
        raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if dtype not in FLOAT_DTYPES:
        raise InputError(f"--dtype '{dtype}' is unknown (choose from {', '.join(FLOAT_DTYPES)})")
    if dtype != "fp32":
        if backend != "torch-cuda":
            raise InputError(f"--dtype {dtype} is for --backend torch-cuda (TensorRT: hippo-trt build --precision; ONNX Runtime: fp32)")
        return _torch_cuda_loader(Path(work), manifest, role, options, dtype)
    return LOADERS[backend](Path(work), manifest, role, options)
