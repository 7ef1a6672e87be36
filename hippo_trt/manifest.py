"""``WORK/manifest.json``: what was exported and built, from which weights, with which tools."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from hippo_trt.atomic import write_json
from hippo_trt.dims import DimsTable
from hippo_trt.errors import WorkDirError
from hippo_trt.model_dir import sha256_file

FORMAT = 2  # 2: prefill reports importance; the pruning graphs
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileRecord:
    """One file of the work dir, relative to it, with its size and sha256."""

    path: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, root: Path, path: Path) -> "FileRecord":
        return cls(str(path.relative_to(root)), sha256_file(path), path.stat().st_size)

    def verify(self, root: Path, deep: bool, fix: str) -> Path:
        """The file's path; a missing, truncated or (``deep``) altered file is a WorkDirError."""
        p = root / self.path
        if not p.is_file():
            raise WorkDirError(f"'{p}' is missing from the work dir; {fix}")
        if p.stat().st_size != self.bytes or (deep and sha256_file(p) != self.sha256):
            raise WorkDirError(f"'{p}' does not match its sha256 in the manifest (truncated or altered); {fix}")
        return p


@dataclass(frozen=True)
class ModelRecord:
    """One exported model (target or draft)."""

    source: str
    weight_hash: str
    architecture: str
    processor_dir: str
    video_token_id: int
    eos_token_ids: tuple[int, ...]
    default_frames: int
    decoder: Mapping[str, int]
    vision_input: Mapping[str, int]  # channels, image_size
    graphs: Mapping[str, FileRecord]
    validation: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Manifest:
    versions: Mapping[str, str]
    opset: int
    dims: Mapping[str, Mapping[str, int]]
    limits: Mapping[str, int]
    models: Mapping[str, ModelRecord]
    engines: Mapping[str, Any] = field(default_factory=dict)
    pruning: Mapping[str, FileRecord] = field(default_factory=dict)  # name -> graph; with a draft
    format: int = FORMAT

    @property
    def dims_table(self) -> DimsTable:
        return DimsTable.from_json(self.dims)

    def model(self, role: str) -> ModelRecord:
        if role not in self.models:
            raise WorkDirError(f"the work dir has no {role} model; re-run hippo-trt export with --{role}")
        return self.models[role]

    def with_engines(self, backend: str, record: Mapping[str, Any]) -> "Manifest":
        return replace(self, engines={**self.engines, backend: record})

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Manifest":
        models = {
            role: ModelRecord(
                **{
                    **m,
                    "eos_token_ids": tuple(m["eos_token_ids"]),
                    "graphs": {n: FileRecord(**g) for n, g in m["graphs"].items()},
                }
            )
            for role, m in obj["models"].items()
        }
        pruning = {n: FileRecord(**g) for n, g in obj.get("pruning", {}).items()}
        return cls(**{**obj, "models": models, "pruning": pruning})

    def save(self, work: Path) -> None:
        write_json(Path(work) / MANIFEST, self.to_json())

    @classmethod
    def load(cls, work: Path) -> "Manifest":
        path = Path(work) / MANIFEST
        if not Path(work).is_dir():
            raise WorkDirError(f"work dir '{work}' does not exist; create it with hippo-trt export")
        if not path.is_file():
            raise WorkDirError(f"'{work}' has no {MANIFEST}: not a hippo-trt work dir (run hippo-trt export)")
        try:
            obj = json.loads(path.read_text())
            if obj.get("format") != FORMAT:
                raise WorkDirError(
                    f"'{path}' has format {obj.get('format')}, this hippo-trt reads {FORMAT}; re-run hippo-trt export"
                )
            return cls.from_json(obj)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise WorkDirError(f"'{path}' is corrupt ({type(e).__name__}: {e}); re-run hippo-trt export") from None
