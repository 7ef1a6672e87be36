"""``WORK/manifest.json``: what was exported and built, from which weights, with which tools."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hippo_trt.atomic import file_lock, recover, write_json
from hippo_trt.dims import DimsTable
from hippo_trt.errors import WorkDirError
from hippo_trt.model_dir import sha256_file

FORMAT = 3  # 2: prefill reports importance; the pruning graphs. 3: graphs' external data files
MANIFEST = "manifest.json"
IF_CHANGED = "if_changed"  # FileRecord.verify's deep mode for every run's start
LOCK = ".hippo-trt.lock"  # flock'ed around every read-modify-write of the manifest (``locked``)
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # roles, graphs, backends: directory names in export-triton


@dataclass(frozen=True)
class FileRecord:
    """One file of the work dir, relative to it, with its size and sha256. An ONNX graph's
    record also holds its external data files (``data``: the weights, beside the graph)."""

    path: str
    sha256: str
    bytes: int
    data: tuple[FileRecord, ...] = ()
    mtime_ns: int = 0  # when it was hashed: ``verify(deep=IF_CHANGED)`` rehashes only a file touched since

    def __post_init__(self) -> None:  # from JSON: data records arrive as dicts
        object.__setattr__(self, "data", tuple(d if isinstance(d, FileRecord) else FileRecord(**d) for d in self.data))

    @classmethod
    def of(cls, root: Path, path: Path) -> FileRecord:
        """``path``'s record (streamed sha256); an .onnx file's with its external data files."""
        path = Path(path)
        data = tuple(cls.of(root, f) for f in external_data_files(path)) if path.suffix == ".onnx" else ()
        stat = path.stat()
        return cls(str(path.relative_to(root)), sha256_file(path), stat.st_size, data, stat.st_mtime_ns)

    @property
    def total_bytes(self) -> int:
        """The file's bytes and its data files'."""
        return self.bytes + sum(d.bytes for d in self.data)

    @property
    def digest(self) -> str:
        """The file's sha256, or with data files one sha256 over the file's and theirs."""
        if not self.data:
            return self.sha256
        return hashlib.sha256(" ".join([self.sha256, *(f"{d.path}:{d.sha256}" for d in self.data)]).encode()).hexdigest()

    def files(self) -> list[str]:
        """Its path, then its data files' (relative to the work dir)."""
        return [self.path, *(d.path for d in self.data)]

    def verify(self, root: Path, deep: bool | str, fix: str) -> Path:
        """The file's path; a missing, truncated or (``deep``) altered file, or data file, is a
        WorkDirError naming that file. ``deep=IF_CHANGED`` hashes only a file whose mtime is not
        the recorded one (a run's start: a 7B model's data is GBs, hashed at build and check)."""
        p = _verify_one(root, self, deep, fix, "")
        for d in self.data:
            _verify_one(root, d, deep, fix, f" (external data of '{p}')")
        return p

    def read_verified(self, root: Path, deep: bool | str, fix: str) -> bytes:
        """The file's bytes, read once and checked as ``verify`` checks the file (size, and the
        sha256 of these same bytes when ``deep``): what is hashed is what the caller loads."""
        p = Path(root) / self.path
        data = p.read_bytes() if p.is_file() else None
        _verify_one(root, self, deep, fix, "", data)
        return data


def _verify_one(root: Path, record: FileRecord, deep: bool, fix: str, what: str, data: bytes | None = None) -> Path:
    """``record``'s file checked (missing, size, and its sha256 when ``deep``); ``data``: its
    bytes already read, checked instead of the file on disk."""
    p = Path(root) / record.path
    if not p.is_file():
        raise WorkDirError(f"'{p}'{what} is missing from the work dir; {fix}")
    stat = p.stat()
    if deep == IF_CHANGED:
        deep = not record.mtime_ns or stat.st_mtime_ns != record.mtime_ns
    size = stat.st_size if data is None else len(data)
    digest = (lambda: sha256_file(p)) if data is None else (lambda: hashlib.sha256(data).hexdigest())
    if size != record.bytes or (deep and digest() != record.sha256):
        raise WorkDirError(f"'{p}'{what} does not match its sha256 in the manifest (truncated or altered); {fix}")
    return p


def _node_tensors(nodes) -> Iterator:
    """The tensors of nodes' attributes, their subgraphs' included."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _tensors(graph) -> Iterator:
    """Every tensor a graph holds: initializers (sparse ones too), then its nodes'."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def external_data_locations(path: Path) -> list[str]:
    """The external data files an ONNX file refers to (``location``s, relative to its
    directory), read from the graph alone: the data files are not opened."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises several types for a corrupt file
        raise WorkDirError(f"'{path}' is not a readable ONNX graph ({type(e).__name__}); re-run hippo-trt export") from None
    locations = set()
    for tensor in (*_tensors(model.graph), *(t for f in model.functions for t in _node_tensors(f.node))):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if not location or Path(location).is_absolute() or ".." in Path(location).parts:
                raise WorkDirError(f"'{path}' keeps weights outside its directory ('{location}'); re-run hippo-trt export")
            locations.add(location)
    return sorted(locations)


def external_data_files(path: Path) -> list[Path]:
    """The external data files of an ONNX file; a missing one is a WorkDirError."""
    files = [Path(path).parent / loc for loc in external_data_locations(path)]
    for f in files:
        if not f.is_file():
            raise WorkDirError(f"'{f}' (external data of '{path}') is missing; re-run hippo-trt export")
    return files


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
    dtype: str = "fp32"  # the weights', the KV cache's and the float inputs' dtype (export --dtype)


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

    def with_engines(self, backend: str, record: Mapping[str, Any]) -> Manifest:
        return replace(self, engines={**self.engines, backend: record})

    def engine_files(self, backend: str) -> dict[str, dict[str, FileRecord]]:
        """The files of ``backend``'s built engines: role -> graph -> record (an onnxruntime
        build's are the exported graphs). KeyError when ``backend`` was not built: callers
        check ``engines`` first, each with its own fix."""
        return {role: {name: FileRecord(**f) for name, f in graphs.items()} for role, graphs in self.engines[backend]["files"].items()}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Manifest:
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

    def graph_records(self) -> Iterator[tuple[str, str, FileRecord]]:
        """(role, name, record) of every exported graph: each model's, then the pruning graphs
        (role "pruning")."""
        for role, m in self.models.items():
            for name, g in m.graphs.items():
                yield role, name, g
        for name, g in self.pruning.items():
            yield "pruning", name, g

    def save(self, work: Path) -> None:
        write_json(Path(work) / MANIFEST, self.to_json())

    @classmethod
    def load(cls, work: Path) -> Manifest:
        """The work dir's manifest, refused when missing, of another format, corrupt, or naming
        a path outside the work dir (``check_confined``). A work dir whose replacement crashed
        half-way (its old copy beside it) is put back first."""
        path = Path(work) / MANIFEST
        if not Path(work).is_dir():
            recover(Path(work))
        if not Path(work).is_dir():
            raise WorkDirError(f"work dir '{work}' does not exist; create it with hippo-trt export")
        if not path.is_file():
            raise WorkDirError(f"'{work}' has no {MANIFEST}: not a hippo-trt work dir (run hippo-trt export)")
        try:
            obj = json.loads(path.read_text())
            if obj.get("format") != FORMAT:
                raise WorkDirError(f"'{path}' has format {obj.get('format')}, this hippo-trt reads {FORMAT}; re-run hippo-trt export")
            manifest = cls.from_json(obj)
            check_confined(work, manifest)
            return manifest
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise WorkDirError(f"'{path}' is corrupt ({type(e).__name__}: {e}); re-run hippo-trt export") from None


def is_work_dir(path: Path) -> bool:
    """``path`` holds a readable hippo-trt manifest of this format (a work dir that an export
    may replace)."""
    try:
        Manifest.load(path)
    except WorkDirError:
        return False
    return True


# --- confinement: every name plain, every path inside the work dir ---------------------------


def _names(manifest: Manifest) -> Iterator[tuple[str, object]]:
    """(what, name) of every manifest key that export-triton turns into a directory name."""
    for role, m in manifest.models.items():
        yield "role", role
        yield from (("graph", g) for g in m.graphs)
    yield from (("pruning graph", n) for n in manifest.pruning)
    for backend, record in manifest.engines.items():
        yield "backend", backend
        for role, graphs in record.get("files", {}).items():
            yield "role", role
            yield from (("graph", g) for g in graphs)


def _paths(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(what, path relative to the work dir) of every path field."""
    for role, m in manifest.models.items():
        yield f"the {role} processor_dir", m.processor_dir
    for role, name, g in manifest.graph_records():
        yield from ((f"a file of graph {role}/{name}", p) for p in g.files())
    for backend, record in manifest.engines.items():
        for role, graphs in record.get("files", {}).items():
            for name, f in graphs.items():
                yield from ((f"a file of {backend} engine {role}/{name}", p) for p in FileRecord(**f).files())
        for engine in record.get("plan", {}).get("engines", []):
            if "onnx" in engine:
                yield f"the graph of a {backend} plan entry", engine["onnx"]


def _inside(root: Path, rel: str) -> bool:
    """``rel`` is relative and names something strictly inside ``root`` once symlinks resolve."""
    if Path(rel).is_absolute():
        return False
    try:
        target = (root / rel).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return target != root and target.is_relative_to(root)


def check_confined(work: Path, manifest: Manifest) -> None:
    """Every name a plain name and every path inside the work dir (after ``resolve()``: a symlink
    out counts as out), so nothing that reads the manifest (export-triton, the loaders) reads or
    writes elsewhere; a WorkDirError names the first offender."""
    path = Path(work) / MANIFEST
    for what, name in _names(manifest):
        if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
            raise WorkDirError(
                f"'{path}' has a {what} '{name}' that is not a plain name (letters, digits, _ and -); re-run hippo-trt export"
            )
    root = Path(work).resolve()
    for what, rel in _paths(manifest):
        if not _inside(root, rel):
            raise WorkDirError(f"'{path}' puts {what} at '{rel}', outside the work dir; re-run hippo-trt export")


# --- the lock around read-modify-write -------------------------------------------------------


@contextlib.contextmanager
def locked(work: Path) -> Iterator[None]:
    """The work dir's manifest lock (flock on ``WORK/.hippo-trt.lock``), held around every
    read-modify-write of the manifest: writers that load, change and save under it never drop
    each other's changes."""
    lock = Path(work) / LOCK
    if not Path(work).is_dir():
        Manifest.load(work)  # its one-line WorkDirError
    if lock.is_symlink():  # never opened through a link (file_lock opens with O_NOFOLLOW)
        raise WorkDirError(f"'{lock}' is a symlink, not hippo-trt's lock file; remove it")
    with file_lock(lock):
        yield


def update_manifest(work: Path, change: Callable[[Manifest], Manifest]) -> Manifest:
    """Reload the manifest under the lock, apply ``change`` (the caller's addition) and save."""
    with locked(work):
        manifest = change(Manifest.load(work))
        manifest.save(work)
    return manifest
