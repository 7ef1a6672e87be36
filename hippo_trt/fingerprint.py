"""What a work dir's export is: a fingerprint of its graphs and data files, and a check that
they are intact. Builds record the fingerprint; loaders refuse engines built from another export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hippo_trt.errors import WorkDirError
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import ModelDir


def export_id(manifest: Manifest) -> str:
    """Fingerprint of what was exported (graphs and their data files): engines built from
    another export are refused."""
    graphs: dict[str, dict[str, str]] = {}
    for role, name, g in manifest.graph_records():
        graphs.setdefault(role, {})[name] = g.digest
    return hashlib.sha256(json.dumps(graphs, sort_keys=True).encode()).hexdigest()[:16]


def verify_export(work: Path, manifest: Manifest) -> None:
    """Every graph and data file intact (sha256) and every still-present source dir holding
    the same weights."""
    fix = f"re-run hippo-trt export into '{work}'"
    for _, _, graph in manifest.graph_records():
        graph.verify(work, deep=True, fix=fix)
    for role, record in manifest.models.items():
        source = Path(record.source)
        if source.is_dir() and ModelDir.open(source).weight_hash() != record.weight_hash:
            raise WorkDirError(f"'{work}' was exported from other weights than {role} dir '{source}' now holds (hash mismatch); {fix}")
