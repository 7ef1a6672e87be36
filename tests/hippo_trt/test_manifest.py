"""``manifest.json``: a graph's FileRecord covers its external data files (sizes, sha256,
verification, JSON round trip), on small graphs written here."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hippo_trt.errors import WorkDirError
from hippo_trt.manifest import FORMAT, IF_CHANGED, MANIFEST, FileRecord, Manifest, ModelRecord, external_data_locations

FIX = "re-run hippo-trt export into 'W'"


def matmul_model(seed: int = 0) -> onnx.ModelProto:
    """y = x @ W + b, with W [4, 3] and b [3] initializers."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w, b],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def if_model() -> onnx.ModelProto:
    """An If node whose branches hold the weights (initializers of subgraphs)."""

    def branch(name: str, value: float) -> onnx.GraphProto:
        c = numpy_helper.from_array(np.full(8, value, dtype=np.float32), f"{name}_c")
        out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [8])
        return helper.make_graph([helper.make_node("Identity", [f"{name}_c"], [f"{name}_y"])], name, [], [out], [c])

    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 1.0), else_branch=branch("else", 2.0))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def save_external(model: onnx.ModelProto, path: Path, location: str | None = None, one_file: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=one_file,
        location=location or f"{path.name}.data", size_threshold=0,
    )  # fmt: skip
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_graphs_record_holds_its_data_file(tmp_path):
    path = save_external(matmul_model(), tmp_path / "target" / "vision.onnx")
    data = tmp_path / "target" / "vision.onnx.data"
    record = FileRecord.of(tmp_path, path)
    assert (record.path, record.sha256, record.bytes) == ("target/vision.onnx", sha(path), path.stat().st_size)
    assert record.data == (FileRecord("target/vision.onnx.data", sha(data), data.stat().st_size, (), data.stat().st_mtime_ns),)
    assert record.data[0].bytes == (4 * 3 + 3) * 4  # every weight lives in the data file
    assert record.total_bytes == path.stat().st_size + data.stat().st_size
    assert record.files() == ["target/vision.onnx", "target/vision.onnx.data"]


def test_a_self_contained_graph_and_other_files_have_no_data(tmp_path):
    path = tmp_path / "fused.onnx"
    onnx.save_model(matmul_model(), str(path))
    other = tmp_path / "engine.plan"
    other.write_bytes(b"plan")
    assert FileRecord.of(tmp_path, path).data == () and FileRecord.of(tmp_path, other).data == ()
    assert FileRecord.of(tmp_path, path).digest == sha(path)


def test_subgraph_weights_in_several_files_are_all_recorded(tmp_path):
    path = save_external(if_model(), tmp_path / "branch.onnx", one_file=False)  # one file per tensor
    assert external_data_locations(path) == ["else_c", "then_c"]
    record = FileRecord.of(tmp_path, path)
    assert [d.path for d in record.data] == ["else_c", "then_c"]
    assert all(d.bytes == 8 * 4 for d in record.data)


def test_shared_location_is_recorded_once(tmp_path):
    path = save_external(matmul_model(), tmp_path / "m.onnx", location="weights.bin")
    assert external_data_locations(path) == ["weights.bin"]
    assert len(FileRecord.of(tmp_path, path).data) == 1


def test_listing_locations_never_reads_the_data(tmp_path, monkeypatch):
    path = save_external(matmul_model(), tmp_path / "m.onnx")
    loads = []
    real = onnx.load

    def spy(f, *args, **kwargs):
        loads.append(kwargs.get("load_external_data", True))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", spy)
    (tmp_path / "m.onnx.data").write_bytes(b"")  # would break any attempt to read the weights
    assert external_data_locations(path) == ["m.onnx.data"]
    assert loads == [False]


@pytest.mark.parametrize("location", ["../outside.data", "/abs/w.data"])
def test_data_outside_the_graphs_directory_is_refused(tmp_path, location):
    path = tmp_path / "m.onnx"
    model = matmul_model()
    for t in model.graph.initializer:
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=location)
        t.ClearField("raw_data")
    onnx.save_model(model, str(path))
    with pytest.raises(WorkDirError, match="keeps weights outside its directory"):
        FileRecord.of(tmp_path, path)


def test_a_missing_data_file_is_named_at_record_time(tmp_path):
    path = save_external(matmul_model(), tmp_path / "m.onnx")
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(WorkDirError, match=r"m\.onnx\.data' \(external data of .*m\.onnx'\) is missing"):
        FileRecord.of(tmp_path, path)


def damaged(tmp_path: Path, damage: str) -> tuple[FileRecord, Path]:
    path = save_external(matmul_model(), tmp_path / "target" / "vision.onnx")
    record = FileRecord.of(tmp_path, path)
    data = tmp_path / record.data[0].path
    raw = data.read_bytes()
    if damage == "missing":
        data.unlink()
    elif damage == "truncated":
        data.write_bytes(raw[: len(raw) // 2])
    else:  # altered, same size
        data.write_bytes(bytes(b ^ 0xFF for b in raw[:4]) + raw[4:])
    return record, data


@pytest.mark.parametrize("damage,needle", [("missing", "is missing from the work dir"), ("truncated", "truncated or altered")])
def test_verify_names_the_damaged_data_file_and_the_fix(tmp_path, damage, needle):
    record, data = damaged(tmp_path, damage)
    for deep in (False, True):
        with pytest.raises(WorkDirError) as err:
            record.verify(tmp_path, deep=deep, fix=FIX)
        message = str(err.value)
        assert message.startswith(f"'{data}' (external data of '{tmp_path / record.path}')")
        assert needle in message and message.endswith(FIX) and "\n" not in message


def test_a_same_size_altered_data_file_is_caught_only_by_deep_verify(tmp_path):
    record, data = damaged(tmp_path, "altered")
    assert record.verify(tmp_path, deep=False, fix=FIX) == tmp_path / record.path  # sizes only: cheap
    with pytest.raises(WorkDirError, match=f"'{data}' .*does not match its sha256"):
        record.verify(tmp_path, deep=True, fix=FIX)


def test_a_runs_check_rehashes_only_a_file_touched_since_it_was_recorded(tmp_path, monkeypatch):
    """IF_CHANGED (every run's start): an untouched file is checked by size and mtime only (a 7B
    model's data is GBs); one written since its record is hashed, and an alteration is named."""
    import hippo_trt.manifest as manifest_module

    path = save_external(matmul_model(), tmp_path / "g.onnx")
    record = FileRecord.of(tmp_path, path)
    hashed = []
    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert record.verify(tmp_path, deep=IF_CHANGED, fix=FIX) == path and hashed == []
    data = tmp_path / "g.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))  # same size, new mtime
    with pytest.raises(WorkDirError, match=f"'{data}' .*does not match its sha256"):
        record.verify(tmp_path, deep=IF_CHANGED, fix=FIX)
    assert hashed == ["g.onnx.data"]


def test_an_intact_graph_verifies_to_its_path(tmp_path):
    path = save_external(matmul_model(), tmp_path / "m.onnx")
    assert FileRecord.of(tmp_path, path).verify(tmp_path, deep=True, fix=FIX) == path


def test_digest_covers_the_data(tmp_path):
    a = FileRecord.of(tmp_path, save_external(matmul_model(0), tmp_path / "a" / "m.onnx"))
    b = FileRecord.of(tmp_path, save_external(matmul_model(1), tmp_path / "b" / "m.onnx"))
    assert a.sha256 == b.sha256  # the same graph: only the weights differ
    assert a.digest != b.digest


def manifest_with(graphs: dict[str, FileRecord], pruning: dict[str, FileRecord]) -> Manifest:
    model = ModelRecord(
        source="/models/t", weight_hash="0" * 64, architecture="LlavaOnevisionForConditionalGeneration",
        processor_dir="target/processor", video_token_id=7, eos_token_ids=(2, 3), default_frames=4,
        decoder={"layers": 1}, vision_input={"channels": 3, "image_size": 32}, graphs=graphs, validation={"vision": {"y": 0.0}},
    )  # fmt: skip
    return Manifest(versions={"onnx": "1"}, opset=18, dims={}, limits={}, models={"target": model}, pruning=pruning)


def test_manifest_round_trips_data_records_through_json(tmp_path):
    graphs = {"vision": FileRecord.of(tmp_path, save_external(matmul_model(), tmp_path / "target" / "vision.onnx"))}
    plain = tmp_path / "pruning" / "fused.onnx"
    plain.parent.mkdir()
    onnx.save_model(matmul_model(), str(plain))
    manifest = manifest_with(graphs, {"fused": FileRecord.of(tmp_path, plain)})
    manifest.save(tmp_path)
    obj = json.loads((tmp_path / "manifest.json").read_text())
    assert obj["format"] == FORMAT == 3
    assert obj["models"]["target"]["graphs"]["vision"]["data"][0]["path"] == "target/vision.onnx.data"
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    assert isinstance(loaded.models["target"].graphs["vision"].data[0], FileRecord)
    assert [(r, n) for r, n, _ in loaded.graph_records()] == [("target", "vision"), ("pruning", "fused")]


def test_a_record_from_json_dicts_converts_its_data():
    record = FileRecord(**{"path": "a.onnx", "sha256": "0", "bytes": 1, "data": [{"path": "a.onnx.data", "sha256": "1", "bytes": 5}]})
    assert record.data == (FileRecord("a.onnx.data", "1", 5),) and record.total_bytes == 6
    assert FileRecord(**{"path": "a.plan", "sha256": "0", "bytes": 1}).data == ()  # records of format 2 and engine plans


def test_work_dirs_of_format_2_are_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(WorkDirError, match="has format 2, this hippo-trt reads 3; re-run hippo-trt export"):
        Manifest.load(tmp_path)


# --- paths confined to the work dir (security review case 21) ---------------------------------


def _record(path: str, data: tuple[FileRecord, ...] = ()) -> FileRecord:
    return FileRecord(path, "0" * 64, 1, data)


def _escaping(tmp_path: Path, case: str) -> Manifest:
    """A manifest with one path field naming a file outside ``tmp_path / 'work'``."""
    inside = {"vision": _record("target/vision.onnx")}
    engine = {"files": {"target": {"vision": asdict(_record("engines/x.plan"))}}, "plan": {"engines": []}}
    cases = {
        "graph-parent": ({"vision": _record("../outside.onnx")}, {}, {}, "target/processor"),
        "graph-absolute": ({"vision": _record(str(tmp_path / "work" / "target" / "vision.onnx"))}, {}, {}, "target/processor"),
        "data-parent": ({"vision": _record("target/v.onnx", (_record("target/../../x.data"),))}, {}, {}, "target/processor"),
        "pruning-absolute": (inside, {"fused": _record("/etc/passwd")}, {}, "target/processor"),
        "processor-dir": (inside, {}, {}, "../../x"),
        "processor-is-the-work-dir": (inside, {}, {}, "."),
        "engine-file": (inside, {}, {"files": {"target": {"vision": asdict(_record("../x.plan"))}}}, "target/processor"),
        "plan-onnx": (inside, {}, {**engine, "plan": {"engines": [{"onnx": "/tmp/evil.onnx"}]}}, "target/processor"),
        "symlink-out": ({"vision": _record("target/link.onnx")}, {}, {}, "target/processor"),
    }
    graphs, pruning, engines, processor = cases[case]
    manifest = manifest_with(graphs, pruning)
    model = replace(manifest.model("target"), processor_dir=processor)
    return replace(manifest, models={"target": model}, engines={"tensorrt": engines} if engines else {})


@pytest.mark.parametrize(
    "case",
    ["graph-parent", "graph-absolute", "data-parent", "pruning-absolute", "processor-dir", "processor-is-the-work-dir",
     "engine-file", "plan-onnx", "symlink-out"],
)  # fmt: skip
def test_a_manifest_naming_paths_outside_its_work_dir_is_refused(tmp_path, case):
    work = tmp_path / "work"
    (work / "target").mkdir(parents=True)
    (tmp_path / "secret.onnx").write_bytes(b"secret")
    (work / "target" / "link.onnx").symlink_to(tmp_path / "secret.onnx")  # resolves outside: textual checks miss it
    _escaping(tmp_path, case).save(work)
    with pytest.raises(WorkDirError) as err:
        Manifest.load(work)
    message = str(err.value)
    assert "outside the work dir" in message and "re-run hippo-trt export" in message and "\n" not in message


@pytest.mark.parametrize("where", ["role", "graph", "pruning", "engine-role"])
def test_names_that_become_paths_must_be_plain(tmp_path, where):
    graphs, pruning = {"vision": _record("target/vision.onnx")}, {}
    manifest = manifest_with(graphs, pruning)
    if where == "role":
        manifest = replace(manifest, models={"../../x": manifest.model("target")})
    elif where == "graph":
        manifest = replace(manifest, models={"target": replace(manifest.model("target"), graphs={"../x": graphs["vision"]})})
    elif where == "pruning":
        manifest = replace(manifest, pruning={"a/b": _record("pruning/f.onnx")})
    else:
        manifest = replace(manifest, engines={"onnxruntime": {"files": {"..": {"vision": asdict(graphs["vision"])}}}})
    manifest.save(tmp_path)
    with pytest.raises(WorkDirError, match="is not a plain name"):
        Manifest.load(tmp_path)


def test_a_work_dir_of_plain_relative_paths_loads(tmp_path):
    manifest = manifest_with({"vision": _record("target/vision.onnx", (_record("target/vision.onnx.data"),))}, {})
    manifest.save(tmp_path)
    assert Manifest.load(tmp_path) == manifest


# --- the lock around read-modify-write ---------------------------------------------------------


def test_concurrent_updates_under_the_lock_keep_every_writers_record(tmp_path):
    """Each writer reloads inside the lock: slow writers at once still keep each other's record."""
    from hippo_trt import manifest as manifest_module

    manifest_with({}, {}).save(tmp_path)

    def add(backend: str):
        def change(current: Manifest) -> Manifest:
            time.sleep(0.05)  # a slow writer: the others wait for the lock, then reload
            return current.with_engines(backend, {"export_id": backend})

        manifest_module.update_manifest(tmp_path, change)

    threads = [threading.Thread(target=add, args=(b,)) for b in ("a", "b", "c", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(Manifest.load(tmp_path).engines) == {"a", "b", "c", "d"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_loading_a_work_dir_whose_swap_crashed_puts_it_back(tmp_path):
    """The old copy of a crashed replacement (``.work.old-*``, the work dir itself missing) is
    moved back on load."""
    manifest = manifest_with({}, {})
    manifest.save(tmp_path / ".work.old-4242-dead")
    assert Manifest.load(tmp_path / "work") == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_is_work_dir(tmp_path):
    from hippo_trt import manifest as manifest_module

    manifest_with({}, {}).save(tmp_path / "w")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / MANIFEST).write_text('{"format": 2}')
    assert manifest_module.is_work_dir(tmp_path / "w")
    assert not manifest_module.is_work_dir(tmp_path / "old") and not manifest_module.is_work_dir(tmp_path / "none")


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    from hippo_trt import manifest as manifest_module

    manifest_with({}, {}).save(tmp_path / "w")
    (tmp_path / "w" / ".hippo-trt.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(WorkDirError, match="is a symlink, not hippo-trt's lock file; remove it"):
        manifest_module.update_manifest(tmp_path / "w", lambda m: m)
    assert not (tmp_path / "victim").exists()
