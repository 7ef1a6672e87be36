"""``hippo-trt info``: what a work dir holds, with versions and sizes."""

from __future__ import annotations

from pathlib import Path

from hippo_trt.manifest import FileRecord, Manifest


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _disk_bytes(work: Path) -> int:
    """Bytes of every file in the work dir (graphs' external data included), each counted once."""
    return sum(f.stat().st_size for f in Path(work).rglob("*") if f.is_file())


def engine_files(manifest: Manifest, backend: str) -> list[FileRecord]:
    """A built backend's engine files, every role's (an onnxruntime build's are the exported graphs and their data)."""
    return [f for graphs in manifest.engine_files(backend).values() for f in graphs.values()]


def info_json(work: Path) -> dict:
    """The manifest, the work dir's absolute path, and ``total_bytes`` (every file on disk)."""
    manifest = Manifest.load(work)
    obj = manifest.to_json()
    obj["work_dir"] = str(Path(work).absolute())
    obj["total_bytes"] = _disk_bytes(work)
    return obj


def _graph_line(label: str, g: FileRecord, note: str) -> str:
    """A graph's path, its bytes with its external data's, and how many data files."""
    data = f" (with {len(g.data)} data file{'s' * (len(g.data) > 1)})" if g.data else ""
    return f"{label} {g.path:<24} {_mb(g.total_bytes):>12}{data}  {note}"


def _built_for(record: dict) -> str:
    """ONNX Runtime's execution providers, or the GPU and precision TensorRT engines are for."""
    if "providers" in record:
        return ", ".join(record["providers"])
    return f"{record['gpu']} (sm {record['compute_capability']}), {record['precision']}"


def _shared(manifest: Manifest, backend: str) -> str:
    """A note when the engines are the exported graphs themselves (no second copy on disk)."""
    exported = {p for _, _, g in manifest.graph_records() for p in g.files()}
    return ": the exported graphs, not a copy" if {p for f in engine_files(manifest, backend) for p in f.files()} <= exported else ""


def info_text(work: Path) -> str:
    manifest = Manifest.load(work)
    total = _disk_bytes(work)
    lines = [f"work dir   {Path(work).absolute()}  ({_mb(total)})"]
    lines.append("versions   " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    lines.append(f"opset      {manifest.opset}")
    lines.append("dims       " + ", ".join(f"{k} [{r['min']}..{r['max']}] opt {r['opt']}" for k, r in manifest.dims.items()))
    for role, m in manifest.models.items():
        lines.append(f"{role:<10} {m.architecture} from {m.source} (weights sha256 {m.weight_hash[:12]})")
        for name, g in m.graphs.items():
            worst = max(m.validation.get(name, {}).values(), default=0.0)
            lines.append(_graph_line(f"  {name:<9}", g, f"validated max|diff| {worst:.2g}"))
    for name, g in manifest.pruning.items():
        lines.append(_graph_line(f"pruning    {name:<9}", g, "(onnxscript)"))
    if not manifest.engines:
        lines.append("engines    none built (run: hippo-trt build WORK --backend onnxruntime)")
    for backend, rec in manifest.engines.items():
        size = sum(f.total_bytes for f in engine_files(manifest, backend))
        lines.append(f"engines    {backend} {rec['version']} on {_built_for(rec)} ({_mb(size)}{_shared(manifest, backend)})")
    return "\n".join(lines)
