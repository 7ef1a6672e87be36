"""``export-triton``: the repository's configs parse with Triton's model-config schema and match
the graphs they serve; the Python model, run in a stand-in Python backend (``fake_pb_utils``)
over BLS calls to the repository's graph models or over local engines, answers as the offline
pipeline does, streams pieces that add up, and keeps serving after a bad request; and, where
PyTriton's tritonserver starts, the real server serves the repository."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient) is not installed")

import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from google.protobuf import json_format, text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from hippo_trt.errors import EngineError, InputError, WorkDirError  # noqa: E402
from hippo_trt.fingerprint import export_id  # noqa: E402
from hippo_trt.manifest import FileRecord, Manifest  # noqa: E402
from hippo_trt.runtime.backends.triton_bls import BlsEngine  # noqa: E402
from hippo_trt.runtime.generation import GenerationConfig  # noqa: E402
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.serving.handler import ServeLimits  # noqa: E402
from hippo_trt.runtime.serving.protocol import INPUTS, OUTPUTS, RequestOptions  # noqa: E402
from hippo_trt.runtime.serving.triton_model import BackendParameters, TritonPythonModel, config_parameters
from hippo_trt.runtime.serving.triton_repo import TritonRepoOptions, export_triton_repo, triton_type  # noqa: E402
from tests.runtime.serving import fake_pb_utils as fake  # noqa: E402

DEFAULTS = GenerationConfig(max_new_tokens=12, mode="sd", gamma=3, prune="hippo", keep=0.5)
PROMPT = "What happens in the video?"
GRAPH_MODELS = {f"{r}_{g}" for r in ("target", "draft") for g in ("vision", "decoder")}
PRUNING_MODELS = {"pruning_fused", "pruning_specvlm"}


@pytest.fixture(scope="module")
def repos(work_dirs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("triton")
    out = {}
    for mode in ("bls", "local"):
        options = TritonRepoOptions(engines=mode, defaults=DEFAULTS, instances=2 if mode == "bls" else 1)
        out[mode] = export_triton_repo(work_dirs["gqa"], root / mode, options).path
    return out


def parse(path: Path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def configs(repo: Path) -> dict[str, object]:
    return {p.parent.name: parse(p) for p in sorted(repo.glob("*/config.pbtxt"))}


# --- (a) the repository ----------------------------------------------------------------------


def onnx_io(path: Path):
    graph = onnx.load(str(path), load_external_data=False).graph

    def io(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append((v.name, triton_type(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)), dims or [1]))
        return out

    return io(graph.input), io(graph.output)


def config_io(config):
    def io(values):
        return [(v.name, mc.DataType.Name(v.data_type), list(v.dims)) for v in values]

    return io(config.input), io(config.output)


def test_every_graph_model_declares_what_its_onnx_file_takes_and_gives(repos):
    found = configs(repos["bls"])
    assert set(found) == GRAPH_MODELS | PRUNING_MODELS | {"hippo", "hippo_stream"}
    for name in GRAPH_MODELS | PRUNING_MODELS:
        config = found[name]
        assert (config.name, config.platform, config.max_batch_size) == (name, "onnxruntime_onnx", 0)
        assert config_io(config) == onnx_io(repos["bls"] / name / "1" / "model.onnx"), name
        group = config.instance_group[0]
        kind = "KIND_CPU" if name in PRUNING_MODELS else "KIND_GPU"
        assert (mc.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (kind, 2)


def test_the_python_models_declare_the_served_protocol(repos, work_dirs):
    for mode, repo in repos.items():
        found = configs(repo)
        if mode == "local":
            assert set(found) == {"hippo", "hippo_stream"}  # the loop runs the engines itself
        for name in ("hippo", "hippo_stream"):
            config = found[name]
            assert (config.backend, config.max_batch_size, config.model_transaction_policy.decoupled) == (
                "python",
                1,  # the queue policy needs the dynamic batcher: one request a batch
                name == "hippo_stream",
            )
            policy = config.dynamic_batching.default_queue_policy
            assert (policy.max_queue_size, policy.default_timeout_microseconds) == (8, 600_000_000)
            assert policy.timeout_action == type(policy).REJECT
            for declared, specs in ((config.input, INPUTS), (config.output, OUTPUTS)):
                got = [(d.name, mc.DataType.Name(d.data_type), list(d.dims), getattr(d, "optional", False)) for d in declared]
                assert got == [(s.name, triton_type(s.dtype), list(s.shape), s.optional) for s in specs]
            params = BackendParameters.from_parameters({k: v.string_value for k, v in config.parameters.items()})
            assert params == BackendParameters(engine_mode=mode, defaults=DEFAULTS)
            assert (
                (repo / name / "1" / "model.py")
                .read_text()
                .startswith("from hippo_trt.runtime.serving.triton_model import TritonPythonModel")
            )
            copy = repo / name / "work"
            assert Manifest.load(copy) == Manifest.load(work_dirs["gqa"])
            assert (copy / "target" / "processor" / "tokenizer.json").samefile(work_dirs["gqa"] / "target" / "processor" / "tokenizer.json")
            engines = [f for fs in Manifest.load(work_dirs["gqa"]).engines["onnxruntime"]["files"].values() for f in fs.values()]
            paths = [p for f in engines for p in FileRecord(**f).files()]  # graphs and their data files
            assert any(p.endswith(".onnx.data") for p in paths)
            assert {(copy / p).is_file() for p in paths} == {mode == "local"}
    readme = (repos["bls"] / "README.md").read_text()
    assert "tritonserver --model-repository=/models" in readme and "gpus: [ 1 ]" in readme and "`draft_decoder`" in readme


def test_an_existing_repository_is_replaced_only_with_overwrite(work_dirs, tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not empty; pass --overwrite"):
        export_triton_repo(work_dirs["gqa"], out, TritonRepoOptions(engines="local"))
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    repo = export_triton_repo(work_dirs["gqa"], out, TritonRepoOptions(engines="local", overwrite=True))
    assert not (out / "mine.txt").exists() and (repo.path / "hippo" / "config.pbtxt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging dir left behind


def test_user_errors_are_one_line(work_dirs, tmp_path):
    with pytest.raises(WorkDirError) as err:
        export_triton_repo(tmp_path / "nowhere", tmp_path / "repo")
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="overlaps the work dir"):
        export_triton_repo(work_dirs["gqa"], work_dirs["gqa"] / "triton")
    for bad in ({"instances": 0}, {"backend": "tvm"}, {"engines": "remote"}, {"backend": "tensorrt", "engines": "local"}):
        with pytest.raises(InputError):
            TritonRepoOptions(**bad)
    with pytest.raises(WorkDirError, match=r"no tensorrt engines; run hippo-trt build .* --backend tensorrt first"):
        export_triton_repo(work_dirs["gqa"], tmp_path / "trt", TritonRepoOptions(backend="tensorrt"))
    assert not (tmp_path / "trt").exists()


def test_tensorrt_plans_become_tensorrt_models(scratch_work, tmp_path):
    manifest = Manifest.load(scratch_work)
    files = {}
    for role in manifest.models:
        for graph in manifest.model(role).graphs:
            plan = scratch_work / "engines" / "tensorrt" / role / f"{graph}.plan"
            plan.parent.mkdir(parents=True, exist_ok=True)
            plan.write_bytes(f"plan {role} {graph}".encode())
            files.setdefault(role, {})[graph] = FileRecord.of(scratch_work, plan).__dict__
    record = {
        "backend": "tensorrt", "version": "10.9", "gpu": "H100", "compute_capability": "9.0", "precision": "fp16",
        "export_id": export_id(manifest), "files": files,
    }  # fmt: skip
    manifest.with_engines("tensorrt", record).save(scratch_work)
    repo = export_triton_repo(scratch_work, tmp_path / "repo", TritonRepoOptions(backend="tensorrt")).path
    found = configs(repo)
    for name in GRAPH_MODELS:
        role, graph = name.split("_")
        assert found[name].platform == "tensorrt_plan"
        assert (repo / name / "1" / "model.plan").read_bytes() == f"plan {role} {graph}".encode()
    assert {found[n].platform for n in PRUNING_MODELS} == {"onnxruntime_onnx"}
    assert "TensorRT 10.9" in (repo / "README.md").read_text()


def test_external_data_travels_with_its_graph_and_files_are_copied_where_links_fail(scratch_work, tmp_path, monkeypatch):
    manifest = Manifest.load(scratch_work)
    name, record = next(iter(manifest.model("target").graphs.items()))  # any graph: no name assumed
    path = scratch_work / record.path
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, location=f"{name}.weights")  # small tensors stay inline
    graphs = {**manifest.model("target").graphs, name: FileRecord.of(scratch_work, path)}
    models = {**manifest.models, "target": replace(manifest.model("target"), graphs=graphs)}
    replace(manifest, models=models).save(scratch_work)

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    repo = export_triton_repo(scratch_work, tmp_path / "repo", TritonRepoOptions())
    assert repo.linked == 0 and repo.copied > 0
    version = repo.path / f"target_{name}" / "1"
    assert sorted(p.name for p in version.iterdir()) == sorted([f"{name}.weights", "model.onnx"])
    session = onnxruntime.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [n for n, _, _ in onnx_io(version / "model.onnx")[1]]


def test_graph_models_carry_their_data_files_at_the_location_the_graph_names(repos, work_dirs):
    manifest = Manifest.load(work_dirs["gqa"])
    checked = 0
    for role, model in manifest.models.items():
        for graph, record in model.graphs.items():
            version = repos["bls"] / f"{role}_{graph}" / "1"
            assert record.data, f"{role}/{graph} was exported without a data file"
            names = sorted(Path(d.path).name for d in record.data)
            assert sorted(p.name for p in version.iterdir()) == sorted(["model.onnx", *names])
            for d in record.data:  # the same file, hard-linked: each weight once on disk
                assert (version / Path(d.path).name).samefile(work_dirs["gqa"] / d.path)
            # ONNX Runtime opens model.onnx with its weights (a session fails when a data file is missing)
            session = onnxruntime.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
            assert [o.name for o in session.get_outputs()] == [name for name, _, _ in onnx_io(version / "model.onnx")[1]]
            checked += 1
    assert checked == sum(len(m.graphs) for m in manifest.models.values())


@pytest.mark.parametrize("engines", ["bls", "local"])
def test_a_missing_data_file_is_one_line_and_writes_no_repository(scratch_work, tmp_path, engines):
    record = next(g for g in Manifest.load(scratch_work).model("draft").graphs.values() if g.data)
    (scratch_work / record.data[0].path).unlink()
    with pytest.raises(WorkDirError) as err:
        export_triton_repo(scratch_work, tmp_path / "repo", TritonRepoOptions(engines=engines))
    message = str(err.value)
    assert f"'{scratch_work / record.data[0].path}' (external data of " in message and "is missing" in message
    assert "hippo-trt" in message and "\n" not in message
    assert not (tmp_path / "repo").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_readme_publishes_every_port_on_loopback_and_locks_the_admin_apis(repos):
    """The review: ``docker run -p 8000:8000`` listens on every interface, and a standalone
    tritonserver leaves shared memory, logging, trace and model control open to any client."""
    restricted = "shared-memory,logging,trace,model-repository:admin-key=$ADMIN_KEY"
    for repo in repos.values():
        text = (repo / "README.md").read_text()
        published = re.findall(r"(?<!\S)-p (\S+)", text)
        assert published and all(p.startswith("127.0.0.1:") for p in published), published
        servers = text.count("tritonserver --model-repository=/models")
        assert servers == 2
        assert text.count(f"--http-restricted-api={restricted}") == servers
        assert text.count(f"--grpc-restricted-protocol={restricted}") == servers
        assert "ADMIN_KEY=$(openssl rand -hex 16)" in text
        assert "every network interface" in text and "admin-key" in text and "gateway" in text


def test_export_triton_reads_nothing_outside_the_work_dir(scratch_work, tmp_path):
    """A processor file that is a symlink to a file outside the work dir: refused, nothing written."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    processor = scratch_work / Manifest.load(scratch_work).model("target").processor_dir
    victim = next(p for p in sorted(processor.iterdir()) if p.is_file())
    victim.unlink()
    victim.symlink_to(secret)
    out = tmp_path / "repo"
    with pytest.raises(WorkDirError, match="outside the work dir") as err:
        export_triton_repo(scratch_work, out, TritonRepoOptions(engines="local"))
    assert "\n" not in str(err.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_manifest_pointing_outside_its_work_dir_copies_nothing(scratch_work, tmp_path):
    planted = tmp_path / "outside"
    planted.mkdir()
    (planted / "stolen.txt").write_text("private")
    manifest = Manifest.load(scratch_work)
    models = {**manifest.models, "target": replace(manifest.model("target"), processor_dir="../outside")}
    replace(manifest, models=models).save(scratch_work)
    out = tmp_path / "repo"
    with pytest.raises(WorkDirError, match="outside the work dir"):
        export_triton_repo(scratch_work, out, TritonRepoOptions(engines="local"))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["outside", "work"]


# --- (b) the Python model in a stand-in Python backend ---------------------------------------


@pytest.fixture(scope="module")
def backend(repos):
    """``triton_python_backend_utils`` is the stand-in while this module's tests run."""
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = fake
    fake.reset(repos["bls"])
    yield fake
    fake.reset(None)
    if saved is None:
        del sys.modules["triton_python_backend_utils"]
    else:
        sys.modules["triton_python_backend_utils"] = saved


@pytest.fixture(scope="module")
def offline(work_dirs):
    return Pipeline.load(work_dirs["gqa"], with_draft=True)


@pytest.fixture(scope="module")
def models(backend, repos):
    """(mode, model name) -> an initialised TritonPythonModel, as Triton would make it."""
    made = {}
    for mode, repo in repos.items():
        for name in ("hippo", "hippo_stream"):
            config = json_format.MessageToDict(parse(repo / name / "config.pbtxt"), preserving_proto_field_name=True)
            model = TritonPythonModel()
            args = {
                "model_config": json.dumps(config), "model_repository": str(repo / name), "model_name": name,
                "model_version": "1", "model_instance_name": f"{name}_0",
            }  # fmt: skip
            model.initialize(args)
            made[mode, name] = model
    return made


def request(clip: Path, prompt: str = PROMPT, options: dict | str | None = None, cancel_after: int | None = None):
    tensors = [  # with the batch dim of 1 of the queue policy's max_batch_size
        fake.Tensor("prompt", np.array([[prompt.encode()]], dtype=object)),
        fake.Tensor("video", np.array([[clip.read_bytes()]], dtype=object)),
    ]
    if options is not None:
        text = options if isinstance(options, str) else json.dumps(options)
        tensors.append(fake.Tensor("options", np.array([[text.encode()]], dtype=object)))
    return fake.InferenceRequest("hippo", tensors, [], sender=fake.ResponseSender(cancel_after))


def outputs(response) -> tuple[str, list[int], dict]:
    assert not response.has_error(), response.error().message()
    get = {t.name(): t.as_numpy() for t in response.output_tensors()}
    assert all(a.shape[0] == 1 for a in get.values())  # the batch dim goes back to the client
    return get["text"].reshape(-1)[0].decode(), get["tokens"].reshape(-1).tolist(), json.loads(get["stats"].reshape(-1)[0])


def expected(offline: Pipeline, clip: Path, options: dict):
    return offline.run(clip, PROMPT, config=RequestOptions(**options).apply(DEFAULTS))


CASES = [{}, {"mode": "parallel", "prune": "specvlm", "keep": 0.25}, {"mode": "ar", "max_new_tokens": 6}]


@pytest.mark.parametrize("mode", ["bls", "local"])
def test_the_unary_model_answers_as_the_offline_pipeline(models, offline, clip, mode):
    fake.CALLS.clear()
    model = models[mode, "hippo"]
    responses = model.execute([request(clip, options=options) for options in CASES])
    assert len(responses) == len(CASES)
    for options, response in zip(CASES, responses):
        text, tokens, stats = outputs(response)
        want = expected(offline, clip, options)
        assert (text, tokens) == (want.text, want.tokens), options
        assert stats["new_tokens"] == len(want.tokens) and stats["mode"] == options.get("mode", "sd")
    called = set(fake.CALLS)
    assert called == (GRAPH_MODELS | PRUNING_MODELS if mode == "bls" else set())


@pytest.mark.parametrize("mode", ["bls", "local"])
def test_the_stream_model_sends_pieces_that_add_up(models, offline, clip, mode):
    model = models[mode, "hippo_stream"]
    req = request(clip, options={"mode": "ar"})
    assert model.execute([req]) is None
    sender = req.get_response_sender()
    pieces = [outputs(r) for r in sender.responses]
    want = expected(offline, clip, {"mode": "ar"})
    assert "".join(p[0] for p in pieces) == want.text and [t for p in pieces for t in p[1]] == want.tokens
    assert len(pieces) == len(want.tokens) + 1 and pieces[-1][2]["new_tokens"] == len(want.tokens)
    assert sender.flags[-1] == fake.TRITONSERVER_RESPONSE_COMPLETE_FINAL and sender.flags.count(1) == 1


@pytest.mark.parametrize("name", ["hippo", "hippo_stream"])
def test_a_bad_request_gets_a_one_line_error_and_the_next_one_is_served(models, offline, clip, name):
    model = models["bls", name]
    bad, good = request(clip, options='{"keep": 5}'), request(clip)
    answered = model.execute([bad, good])
    if answered is None:  # decoupled: each request's own sender
        answered = [bad.get_response_sender().responses[-1], good.get_response_sender().responses[-1]]
        assert len(bad.get_response_sender().responses) == 1 and bad.get_response_sender().flags[-1] == 1
        text = "".join(outputs(r)[0] for r in good.get_response_sender().responses)
    else:
        text = outputs(answered[1])[0]
    message = answered[0].error().message()
    assert "keep" in message and "\n" not in message and answered[0].error().code() == fake.TritonError.INVALID_ARG
    assert text == expected(offline, clip, {}).text
    assert model.handler.running == 0


def test_a_cancelled_stream_stops_and_frees_the_instance(models, clip):
    model = models["bls", "hippo_stream"]
    req = request(clip, options={"mode": "ar"}, cancel_after=2)
    model.execute([req])
    sender = req.get_response_sender()
    assert len(sender.responses) == 2 and sender.flags[-1] == fake.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert model.handler.running == 0


def test_a_failing_graph_model_is_an_engine_error(backend, offline):
    engine = BlsEngine("target_vision", offline.target.vision.spec)
    with pytest.raises(EngineError, match="Triton model 'target_vision' failed: .*pixel_values_videos"):
        engine.run({"pixel_values_videos": np.zeros((1, 1, 3, 32, 32), np.float64)})  # declared FP32
    assert config_parameters({"parameters": {"a": {"string_value": "1"}}}) == {"a": "1"}


# --- (c) PyTriton's bundled tritonserver --------------------------------------------------------

# PyTriton's tritonserver has only the Python backend: the graph models run on this stand-in
# for the ONNX Runtime backend (same config.pbtxt inputs and outputs, which Triton checks every
# BLS request against); hippo and hippo_stream are served exactly as exported.
ORT_STAND_IN = """
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb


class TritonPythonModel:
    def initialize(self, args):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {}
            for i in self.session.get_inputs():
                value = pb.get_input_tensor_by_name(request, i.name).as_numpy()
                feeds[i.name] = value.reshape(()) if len(i.shape) == 0 else value  # [1] -> scalar, as the ORT backend
            names = request.requested_output_names()
            values = self.session.run(names, feeds)
            responses.append(pb.InferenceResponse([pb.Tensor(n, np.ascontiguousarray(v)) for n, v in zip(names, values)]))
        return responses
"""


def _on_python_backend(repo: Path) -> None:
    for path in repo.glob("*/config.pbtxt"):
        config = parse(path)
        if config.platform == "onnxruntime_onnx":
            config.ClearField("platform")
            config.backend = "python"
            path.write_text(text_format.MessageToString(config))
            (path.parent / "1" / "model.py").write_text(ORT_STAND_IN)


def _tritonserver(workspace: Path):
    """(tritonserver binary, backend dir, env) from PyTriton's distribution, set up as PyTriton
    does: the stub for this Python, this interpreter's libpython first, its bin on PATH."""
    import sysconfig

    pytriton = pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    from pytriton.server.triton_server import get_triton_python_backend_python_env
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    server = workspace / "tritonserver"
    shutil.copytree(Path(pytriton.__file__).parent / "tritonserver", server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy(
        get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"), server / "backends" / "python" / "triton_python_backend_stub"
    )
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, env.get("LD_LIBRARY_PATH", ""), str(get_libs_path())) if p)
    env["PATH"] = f"{get_triton_python_backend_python_env() / 'bin'}:{env['PATH']}"
    return server / "bin" / "tritonserver", server / "backends", env


@contextlib.contextmanager
def _running(repo: Path, workspace: Path):
    """A loopback tritonserver on ``repo``; yields its gRPC url, or skips if it cannot start."""
    from hippo_trt.runtime.serving.client import HippoClient
    from hippo_trt.runtime.serving.server import free_ports

    binary, backends, env = _tritonserver(workspace)
    http, grpc, metrics = free_ports(3)
    args = [
        str(binary), f"--model-repository={repo}", f"--backend-directory={backends}", "--http-address=127.0.0.1",
        f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics}", f"--backend-config=python,shm-region-prefix-name=hippo{os.getpid()}", "--exit-timeout-secs=2",
    ]  # fmt: skip
    log = workspace / "tritonserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with HippoClient(f"127.0.0.1:{grpc}") as client:
            deadline = time.monotonic() + 60
            while not client.ready() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.25)
            ready = client.ready()
        if not ready:
            lines = log.read_text(errors="replace").strip().splitlines()
            if proc.poll() is not None and not any("loading: hippo" in line for line in lines):
                pytest.skip(f"PyTriton's tritonserver cannot start here: {lines[-1:] or 'no output'}")
            raise AssertionError("the server did not get ready:\n" + "\n".join(lines[-30:]))
        yield f"127.0.0.1:{grpc}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_real_tritonserver_serves_the_repository_over_bls(work_dirs, tmp_path, clip, offline):
    from hippo_trt.errors import ServingError
    from hippo_trt.runtime.serving.client import HippoClient

    options = TritonRepoOptions(device="cpu", defaults=DEFAULTS)
    repo = export_triton_repo(work_dirs["gqa"], tmp_path / "repo", options).path
    _on_python_backend(repo)
    with _running(repo, tmp_path) as url, HippoClient(url) as client:
        for case in ({}, {"mode": "parallel", "prune": "specvlm"}):
            want = expected(offline, clip, case)
            reply = client.generate(PROMPT, clip, case)
            assert (reply.text, reply.tokens) == (want.text, want.tokens), case
        streamed, want = client.stream_reply(PROMPT, clip, {"mode": "ar"}), expected(offline, clip, {"mode": "ar"})
        assert (streamed.text, streamed.tokens) == (want.text, want.tokens)
        with pytest.raises(ServingError, match=r"^keep ratio must be in \(0, 1\], got 5.0$"):
            client.generate(PROMPT, clip, {"keep": 5})
        assert client.generate(PROMPT, clip).tokens == expected(offline, clip, {}).tokens


def test_a_real_tritonserver_rejects_past_the_queue_policy_at_once(work_dirs, tmp_path, clip):
    """One instance, one waiting place: of 6 long requests sent at once, Triton's queue rejects
    some at once (UNAVAILABLE "Exceeds maximum queue size") and answers the others."""
    from concurrent.futures import ThreadPoolExecutor

    from hippo_trt.errors import ServingError
    from hippo_trt.runtime.serving.client import HippoClient

    limits = ServeLimits(max_waiting=1)
    options = TritonRepoOptions(device="cpu", engines="local", defaults=DEFAULTS, limits=limits)
    repo = export_triton_repo(work_dirs["gqa"], tmp_path / "repo", options).path

    def ask(url: str) -> tuple[str, float]:
        start = time.monotonic()
        with HippoClient(url) as client:
            try:
                client.generate(PROMPT, clip, {"mode": "ar", "max_new_tokens": 150})
                return "answered", time.monotonic() - start
            except ServingError as e:
                return str(e), time.monotonic() - start

    with _running(repo, tmp_path) as url, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, [url] * 6))
    rejected = [t for outcome, t in results if "Exceeds maximum queue size" in outcome]
    assert rejected and any(outcome == "answered" for outcome, _ in results), results
    assert all(outcome == "answered" or "Exceeds maximum queue size" in outcome for outcome, _ in results), results
    assert max(rejected) < max(t for outcome, t in results if outcome == "answered")  # rejected without waiting
