"""``hippo-trt info``: what a work dir holds, with versions and sizes."""

from __future__ import annotations

from pathlib import Path

from hippo_trt.manifest import Manifest


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def info_json(work: Path) -> dict:
    manifest = Manifest.load(work)
    obj = manifest.to_json()
    obj["work_dir"] = str(Path(work).absolute())
    obj["total_bytes"] = sum(f.stat().st_size for f in Path(work).rglob("*") if f.is_file())
    return obj


def _built_for(record: dict) -> str:
    """ONNX Runtime's execution providers, or the GPU and precision TensorRT engines are for."""
    if "providers" in record:
        return ", ".join(record["providers"])
    return f"{record['gpu']} (sm {record['compute_capability']}), {record['precision']}"


def info_text(work: Path) -> str:
    manifest = Manifest.load(work)
    total = sum(f.stat().st_size for f in Path(work).rglob("*") if f.is_file())
    lines = [f"work dir   {Path(work).absolute()}  ({_mb(total)})"]
    lines.append("versions   " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    lines.append(f"opset      {manifest.opset}")
    lines.append("dims       " + ", ".join(f"{k} [{r['min']}..{r['max']}] opt {r['opt']}" for k, r in manifest.dims.items()))
    for role, m in manifest.models.items():
        lines.append(f"{role:<10} {m.architecture} from {m.source} (weights sha256 {m.weight_hash[:12]})")
        for name, g in m.graphs.items():
            worst = max(m.validation.get(name, {}).values(), default=0.0)
            lines.append(f"  {name:<9} {g.path:<24} {_mb(g.bytes):>12}  validated max|diff| {worst:.2g}")
    for name, g in manifest.pruning.items():
        lines.append(f"pruning    {name:<9} {g.path:<24} {_mb(g.bytes):>12}  (onnxscript)")
    if not manifest.engines:
        lines.append("engines    none built (run: hippo-trt build WORK --backend onnxruntime)")
    for backend, rec in manifest.engines.items():
        size = sum(f["bytes"] for graphs in rec["files"].values() for f in graphs.values())
        lines.append(f"engines    {backend} {rec['version']} on {_built_for(rec)} ({_mb(size)})")
    return "\n".join(lines)
