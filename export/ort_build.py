"""``hippo-trt build --backend onnxruntime``: verify the export and prove every graph loads.

The onnxruntime engines are the exported graphs themselves: every weight is stored once on disk
(a graph beside its external data file, ``NAME.onnx.data``), and ONNX Runtime applies its graph
optimisations when a session is created at run time. An optimised copy would hold every weight
twice, and ORT's ``optimized_model_filepath`` writes no data file beside the copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from hippo_trt.errors import WorkDirError
from hippo_trt.fingerprint import export_id, verify_export
from hippo_trt.manifest import Manifest, update_manifest
from hippo_trt.ort_session import OrtOptions, ort_session


def _check_loads(path: Path, options: OrtOptions) -> None:
    """Open ``path`` in an ONNX Runtime session (an EngineError if it cannot), then free it:
    one graph's weights in memory at a time."""
    ort_session(path, options)  # not kept: freed on return


def same_export(current: Manifest, backend: str, export: str, work: Path | str = "WORK") -> None:
    """A WorkDirError when ``current`` (the manifest as reloaded under the lock) is not the
    export that ``backend``'s engines were built from: the work dir was re-exported meanwhile."""
    if export != export_id(current):
        raise WorkDirError(
            f"'{work}' was re-exported while the {backend} engines were built; run hippo-trt build {work} --backend {backend} again"
        )


def merge_engines(current: Manifest, backend: str, record: Mapping, work: Path | str = "WORK") -> Manifest:
    """``current`` (reloaded under the lock) with ``backend``'s record added and every other
    backend's record kept, as it is now (a concurrent build's included)."""
    same_export(current, backend, record.get("export_id", ""), work)
    return current.with_engines(backend, record)


def save_engines(work: Path, backend: str, record: Mapping) -> Manifest:
    """Record ``backend``'s engines: reload, merge and save under the work dir's manifest lock."""
    return update_manifest(work, lambda current: merge_engines(current, backend, record, work))


def build_onnxruntime(work: Path, options: OrtOptions = OrtOptions(), progress: bool = True) -> Manifest:
    """Verify the export, load every graph once, and record the exported graphs (with their
    data files) as the onnxruntime engines; only the manifest is written (atomically, merged
    under the manifest lock: a concurrent TensorRT build's record stays)."""
    import onnxruntime as ort

    work = Path(work)
    manifest = Manifest.load(work)
    verify_export(work, manifest)
    jobs = list(manifest.graph_records())
    files: dict[str, dict[str, dict]] = {}
    for role, name, graph in tqdm(jobs, disable=not progress, unit="graph", desc="onnxruntime"):
        _check_loads(work / graph.path, options.for_graph(name))
        files.setdefault(role, {})[name] = asdict(graph)
    record = {
        "backend": "onnxruntime",
        "version": ort.__version__,
        "providers": list(options.providers),
        "export_id": export_id(manifest),
        "files": files,
    }
    return save_engines(work, "onnxruntime", record)
