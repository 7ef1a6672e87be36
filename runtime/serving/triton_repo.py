"""``hippo-trt export-triton WORK --out REPO``: a Triton model repository for a standalone
Triton deployment (the ``tritonserver`` container; no PyTriton).

Layout (``engines="bls"``, the default)::

    REPO/
      README.md                      how to run, query and scale it
      target_vision/ config.pbtxt 1/model.onnx      one Triton model per graph: {role}_{graph}
      target_decoder/                               (model.plan with backend="tensorrt"; weights in model.onnx's data file)
      draft_vision/ draft_decoder/
      pruning_fused/ pruning_specvlm/               the pruning graphs (always ONNX)
      hippo/         config.pbtxt 1/model.py work/  the speculative loop (Python backend)
      hippo_stream/  config.pbtxt 1/model.py work/  the same, decoupled: a response per commit

Each ``model.py`` only imports ``hippo_trt.runtime.serving.triton_model.TritonPythonModel``; its
``config.pbtxt`` ``parameters`` carry the generation defaults, request limits and engine mode.
``work/`` (a sibling of the version dir, which Triton ignores) is the loop's copy of the work
dir: the manifest and processors, and with ``engines="local"`` the ONNX Runtime engines it
runs in-process (then no per-graph models are written). Each Python model has its own copy,
so either may be deployed alone; files are hard-linked from the work dir where the file
system allows, copied otherwise.

Every ``config.pbtxt`` is built as a ``ModelConfig`` message of the protobuf schema that
``tritonclient`` ships, written as text, and parsed back before the repository is renamed
into place.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippo_trt.atomic import staged_dir, write_bytes
from hippo_trt.errors import InputError, WorkDirError
from hippo_trt.fingerprint import export_id
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.manifest import MANIFEST, FileRecord, Manifest, external_data_files
from hippo_trt.runtime.backends.triton_bls import graph_model, pruning_model
from hippo_trt.runtime.serving.handler import served_with_draft
from hippo_trt.runtime.serving.protocol import INPUTS, OUTPUTS, STREAM_MODEL, UNARY_MODEL
from hippo_trt.runtime.serving.triton_config import (
    PLATFORMS,
    IOSpec,
    TritonRepoOptions,
    _protobuf,
    instance_kind,
    model_config,
    triton_type,
    write_config,
)
from hippo_trt.runtime.serving.triton_model import WORK_DIR, BackendParameters
from hippo_trt.runtime.serving.triton_readme import readme

PYTHON_MODELS = (UNARY_MODEL, STREAM_MODEL)
MODEL_PY = "from hippo_trt.runtime.serving.triton_model import TritonPythonModel  # noqa: F401\n"


@dataclass(frozen=True)
class TritonModel:
    """One model of the repository: ``kind`` graph, pruning or python."""

    name: str
    kind: str
    platform: str  # onnxruntime_onnx, tensorrt_plan, or python (the backend)
    path: Path  # its directory in the repository


@dataclass(frozen=True)
class TritonRepo:
    path: Path
    models: tuple[TritonModel, ...]
    backend: str
    engines: str
    linked: int  # files hard-linked from the work dir
    copied: int  # files copied (another file system)

    def model(self, name: str) -> TritonModel:
        return next(m for m in self.models if m.name == name)

    def summary(self) -> str:
        graphs = sum(m.kind != "python" for m in self.models)
        return (
            f"wrote Triton repository {self.path}: {len(self.models)} models ({graphs} graph models, "
            f"{', '.join(PYTHON_MODELS)} in {self.engines} mode); files: {self.linked} linked, {self.copied} copied; "
            f"see {self.path / 'README.md'}"
        )


@dataclass(frozen=True)
class GraphModel:
    """A graph model to write: its file in the work dir and its declared inputs and outputs."""

    name: str
    kind: str
    platform: str
    filename: str
    source: Path
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]


def _confined(path: Path, root: Path, what: str) -> Path:
    """``path`` with symlinks resolved; a WorkDirError when that lies outside ``root`` (a
    symlink out of the work dir, or a path that would climb out of the repository)."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise WorkDirError(f"'{path}' resolves to '{resolved}', outside the {what} '{root}'; remove the link or re-run hippo-trt export")
    return resolved


@dataclass
class _Placer:
    """Puts work dir files into the repository: a hard link where possible, else a copy; only
    files inside the work dir, only to places inside the repository being written."""

    work: Path
    stage: Path
    linked: int = 0
    copied: int = 0

    def place(self, src: Path, dst: Path) -> None:
        src = _confined(src, self.work, "work dir")
        dst = _confined(dst, self.stage, "repository being written")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
            self.linked += 1
        except OSError:
            shutil.copyfile(src, dst)
            self.copied += 1


# --- protobuf --------------------------------------------------------------------------------


# --- what goes where -------------------------------------------------------------------------


def _axis_dims(axes, dims) -> tuple[int, ...]:
    """-1 for a dynamic symbol; the size for a fixed axis or a static symbol (the ONNX has it fixed)."""
    return tuple(a if isinstance(a, int) else (dims[a].min if dims[a].static else -1) for a in axes)


def _spec_io(spec, dims) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    def io(tensors):
        return tuple(IOSpec(t.name, t.kind.dtype, _axis_dims(t.axes, dims)) for t in tensors)

    return io(spec.inputs), io(spec.outputs)


def _onnx_io(path: Path) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    """A graph's declared inputs and outputs from its ONNX file; a scalar is declared [1]."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def io(values):
        specs = []
        for v in values:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            specs.append(IOSpec(v.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)), dims or (1,)))
        return tuple(specs)

    return io(graph.input), io(graph.output)


def _with_data(path: Path) -> list[Path]:
    """An ONNX file and its external data files (each at its ``location``, relative to the
    graph's directory: placed the same way beside ``model.onnx``); any other file alone."""
    return [path, *external_data_files(path)] if path.suffix == ".onnx" else [path]


def _engine_files(work: Path, manifest: Manifest, backend: str) -> dict[str, dict[str, FileRecord]]:
    """The work dir's engine files for ``backend`` (role -> graph -> record), refused when
    missing or stale."""

    build = f"hippo-trt build {work} --backend {backend}"
    record = manifest.engines.get(backend)
    if record is None:
        raise WorkDirError(f"'{work}' has no {backend} engines; run {build} first")
    if record.get("export_id") != export_id(manifest):
        raise WorkDirError(f"the {backend} engines in '{work}' were built from another export; run {build} again")
    return manifest.engine_files(backend)


def _graph_file(work: Path, manifest: Manifest, role: str, graph: str, backend: str) -> Path:
    if backend == "onnxruntime":
        return manifest.model(role).graphs[graph].verify(work, deep=True, fix=f"re-run hippo-trt export into '{work}'")
    files = _engine_files(work, manifest, "tensorrt")
    build = f"run hippo-trt build {work} --backend tensorrt"
    if graph not in files.get(role, {}):
        raise WorkDirError(f"'{work}' has no TensorRT engine for {role}/{graph}; {build}")
    return files[role][graph].verify(work, deep=True, fix=build)


def graph_models(work: Path, manifest: Manifest, backend: str) -> list[GraphModel]:
    """The per-graph models: every role's graphs (``backend``'s format), then the pruning graphs
    (ONNX on Triton's ONNX Runtime backend with either backend: small O(n) selections; the
    work dir's TensorRT pruning engines serve ``hippo-trt run --backend tensorrt``)."""

    dims = manifest.dims_table
    platform, filename = PLATFORMS[backend]
    models = []
    for role in sorted(manifest.models, key=lambda r: (r != "target", r)):
        for graph, spec in specs_from_record(manifest.model(role)).items():
            source = _graph_file(work, manifest, role, graph, backend)
            models.append(GraphModel(graph_model(role, graph), "graph", platform, filename, source, *_spec_io(spec, dims)))
    fix = f"re-run hippo-trt export into '{work}'"
    for name, record in sorted(manifest.pruning.items()):
        source = record.verify(work, deep=True, fix=fix)
        models.append(GraphModel(pruning_model(name), "pruning", "onnxruntime_onnx", "model.onnx", source, *_onnx_io(source)))
    return models


def work_files(work: Path, manifest: Manifest, engines: str) -> list[Path]:
    """What the Python models' copy of the work dir holds (paths in the work dir): the
    manifest and processors, and in local mode the ONNX Runtime engines."""
    files = [work / MANIFEST]
    for record in manifest.models.values():
        processor = work / record.processor_dir
        if not processor.is_dir():
            raise WorkDirError(f"processor directory '{processor}' is missing; re-run hippo-trt export into '{work}'")
        files += sorted(p for p in processor.rglob("*") if p.is_file())
    if engines == "local":
        build = f"run hippo-trt build {work} --backend onnxruntime"
        for group in _engine_files(work, manifest, "onnxruntime").values():
            for f in group.values():
                files += _with_data(f.verify(work, deep=True, fix=build))
    return files


# --- writing ---------------------------------------------------------------------------------


def _write_graph_model(stage: Path, model: GraphModel, options: TritonRepoOptions, placer: _Placer, proto) -> None:
    text_format, pb = proto
    version = stage / model.name / "1"
    for i, src in enumerate(_with_data(model.source)):
        placer.place(src, version / (model.filename if i == 0 else src.relative_to(model.source.parent)))
    kind = instance_kind(model.kind, options)
    config = model_config(pb, model.name, model.inputs, model.outputs, kind, options.instances, platform=model.platform)
    write_config(stage / model.name / "config.pbtxt", config, text_format, pb)


def _protocol_io(specs) -> tuple[IOSpec, ...]:
    return tuple(IOSpec(s.name, np.dtype(s.dtype), tuple(s.shape), s.optional) for s in specs)


def _write_python_model(stage: Path, name: str, work: Path, files: list[Path], options: TritonRepoOptions, placer: _Placer, proto) -> None:
    text_format, pb = proto
    root = stage / name
    write_bytes(root / "1" / "model.py", MODEL_PY.encode())
    for src in files:
        placer.place(src, root / WORK_DIR / src.relative_to(work))
    params = BackendParameters(options.engines, WORK_DIR, options.defaults, options.limits, options.ort_threads)
    config = model_config(
        pb, name, _protocol_io(INPUTS), _protocol_io(OUTPUTS), instance_kind("python", options), options.instances, backend="python",
        decoupled=name == STREAM_MODEL, parameters=params.to_parameters(), queue=options.limits,
    )  # fmt: skip
    write_config(root / "config.pbtxt", config, text_format, pb)


def _check_out(work: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file; give a directory path for the repository")
    w, o = work.resolve(), out.resolve()
    if w == o or o in w.parents or w in o.parents:
        raise InputError(f"--out '{out}' overlaps the work dir '{work}'; put the repository elsewhere")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out '{out}' exists and is not empty; pass --overwrite to replace it or pick another directory")


def export_triton_repo(work: Path, out: Path, options: TritonRepoOptions = TritonRepoOptions()) -> TritonRepo:
    """Write the Triton model repository of ``work`` to ``out`` (atomically: built beside it,
    renamed into place; an existing non-empty ``out`` only with ``options.overwrite``)."""

    work, out = Path(work), Path(out)
    proto = _protobuf()
    manifest = Manifest.load(work)
    served_with_draft(manifest, options.defaults)
    _check_out(work, out, options.overwrite)
    graphs = graph_models(work, manifest, options.backend) if options.engines == "bls" else []
    files = work_files(work, manifest, options.engines)
    with staged_dir(out) as stage:
        placer = _Placer(work, stage)
        for model in graphs:
            _write_graph_model(stage, model, options, placer, proto)
        for name in PYTHON_MODELS:
            _write_python_model(stage, name, work, files, options, placer, proto)
        models = [TritonModel(m.name, m.kind, m.platform, out.absolute() / m.name) for m in graphs]
        models += [TritonModel(name, "python", "python", out.absolute() / name) for name in PYTHON_MODELS]
        write_bytes(stage / "README.md", readme(manifest, models, options).encode("utf-8"))
    return TritonRepo(out.absolute(), tuple(models), options.backend, options.engines, placer.linked, placer.copied)


__all__ = [
    "GraphModel",
    "IOSpec",
    "TritonModel",
    "TritonRepo",
    "TritonRepoOptions",
    "export_triton_repo",
    "graph_models",
    "instance_kind",
    "model_config",
    "triton_type",
    "work_files",
    "write_config",
]
