"""Load one model's four engines from a work dir, for a backend, refusing stale builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hippo_trt.errors import InputError, WorkDirError
from hippo_trt.export.architectures import family
from hippo_trt.export.specs import DecoderShape, GraphSpec
from hippo_trt.manifest import FileRecord, Manifest, ModelRecord
from hippo_trt.model_dir import ModelDir
from .build import export_id
from .engine import Engine, OrtEngine, OrtOptions, TorchEngine

@dataclass(frozen=True)
class ModelEngines:
    record: ModelRecord
    vision: Engine
    embed: Engine
    prefill: Engine
    decode: Engine

    @property
    def shape(self) -> DecoderShape:
        return DecoderShape(**self.record.decoder)


def specs_from_record(record: ModelRecord) -> dict[str, GraphSpec]:
    specs = family(record.architecture).specs(DecoderShape(**record.decoder), record.vision_input)
    return {spec.name: spec for spec in specs}


def _ort_engines(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> dict[str, Engine]:
    build_cmd = f"run: hippo-trt build {work} --backend onnxruntime"
    record = manifest.engines.get("onnxruntime")
    if record is None:
        raise WorkDirError(f"'{work}' has no onnxruntime engines; {build_cmd}")
    import onnxruntime as ort

    if record["version"] != ort.__version__:
        raise WorkDirError(
            f"engines in '{work}' were built with onnxruntime {record['version']}, this is {ort.__version__}; {build_cmd}"
        )
    if record["export_id"] != export_id(manifest):
        raise WorkDirError(f"engines in '{work}' were built from another export; {build_cmd}")
    files = {n: FileRecord(**f) for n, f in record["files"][role].items()}
    specs = specs_from_record(manifest.model(role))
    return {n: OrtEngine(files[n].verify(work, deep=True, fix=build_cmd), specs[n], options.for_graph(n)) for n in specs}


def _torch_engines(manifest: Manifest, role: str) -> dict[str, Engine]:
    record = manifest.model(role)
    model_dir = ModelDir.open(record.source)
    if model_dir.weight_hash() != record.weight_hash:
        raise WorkDirError(f"'{record.source}' now holds other weights than were exported (hash mismatch)")
    modules = family(record.architecture).graph_modules(model_dir.load_model())
    return {name: TorchEngine(modules[name], spec) for name, spec in specs_from_record(record).items()}


def _torch_loader(work: Path, manifest: Manifest, role: str, options: OrtOptions) -> dict[str, Engine]:
    return _torch_engines(manifest, role)


LOADERS = {"onnxruntime": _ort_engines, "torch": _torch_loader}
BACKENDS = tuple(LOADERS)


def load_engines(work: Path, manifest: Manifest, role: str, backend: str, options: OrtOptions) -> ModelEngines:
    if backend not in LOADERS:
        raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    engines = LOADERS[backend](Path(work), manifest, role, options)
    return ModelEngines(record=manifest.model(role), **engines)
