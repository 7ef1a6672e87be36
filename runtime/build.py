"""``hippo-trt build --backend onnxruntime``: verify the export and pre-optimise every graph."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm import tqdm

from hippo_trt.atomic import staged_dir
from hippo_trt.errors import WorkDirError
from hippo_trt.manifest import FileRecord, Manifest
from hippo_trt.model_dir import ModelDir
from .engine import OrtOptions, ort_session

ORT_DIR = "engines/onnxruntime"


def export_id(manifest: Manifest) -> str:
    """Fingerprint of what was exported: engines built from another export are refused."""
    graphs = {role: {n: g.sha256 for n, g in m.graphs.items()} for role, m in manifest.models.items()}
    graphs["pruning"] = {n: g.sha256 for n, g in manifest.pruning.items()}
    return hashlib.sha256(json.dumps(graphs, sort_keys=True).encode()).hexdigest()[:16]


def verify_export(work: Path, manifest: Manifest) -> None:
    """Every graph intact (sha256) and every still-present source dir holding the same weights."""
    fix = f"re-run hippo-trt export into '{work}'"
    for graph in manifest.pruning.values():
        graph.verify(work, deep=True, fix=fix)
    for role, record in manifest.models.items():
        for graph in record.graphs.values():
            graph.verify(work, deep=True, fix=fix)
        source = Path(record.source)
        if source.is_dir() and ModelDir.open(source).weight_hash() != record.weight_hash:
            raise WorkDirError(
                f"'{work}' was exported from other weights than {role} dir '{source}' now holds "
                f"(hash mismatch); {fix}"
            )


def build_onnxruntime(work: Path, options: OrtOptions = OrtOptions(), progress: bool = True) -> Manifest:
    """Write ORT-optimised graphs under ``WORK/engines/onnxruntime`` and record them."""
    import onnxruntime as ort

    work = Path(work)
    manifest = Manifest.load(work)
    verify_export(work, manifest)
    jobs = [(role, name, g) for role, m in manifest.models.items() for name, g in m.graphs.items()]
    jobs += [("pruning", name, g) for name, g in manifest.pruning.items()]
    files: dict[str, dict[str, dict]] = {group: {} for group, _, _ in jobs}
    final = work / ORT_DIR
    with staged_dir(final) as stage:
        for role, name, graph in tqdm(jobs, disable=not progress, unit="graph", desc="onnxruntime"):
            out = stage / role / f"{name}.onnx"
            out.parent.mkdir(parents=True, exist_ok=True)
            ort_session(work / graph.path, options, optimized_out=out)
            files[role][name] = out.relative_to(stage)
    record = {
        "backend": "onnxruntime",
        "version": ort.__version__,
        "providers": list(options.providers),
        "export_id": export_id(manifest),
        "files": {
            role: {name: FileRecord.of(work, final / rel).__dict__ for name, rel in graphs.items()}
            for role, graphs in files.items()
        },
    }
    manifest = manifest.with_engines("onnxruntime", record)
    manifest.save(work)
    return manifest
