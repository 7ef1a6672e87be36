"""``hippo-trt``: every failure a user can cause is one line on stderr and a non-zero exit code.

The CLI runs in-process through ``hippo_trt.cli.main.main`` (``capfd`` also sees what native
libraries would print on the real stderr); two tests run the real executable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hippo_trt.cli.main import main
from hippo_trt.manifest import FORMAT, MANIFEST
from hippo_trt.testing.tiny import WORDS, make_tiny_model_dir
from tests.conftest import TEST_LIMITS, TINY_SPECS

PROMPT = "what is in the video"
USER_ERROR, WORKDIR_ERROR = 2, 3


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch):
    """main() sets these with setdefault; keep them from leaking into later tests."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.delenv("HIPPO_TRT_DEBUG", raising=False)


def cli(capfd, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def error_line(rc: int, out: str, err: str, code: int | None = None) -> str:
    """Assert the one-line error contract and return the message after the prefix."""
    assert rc != 0
    if code is not None:
        assert rc == code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hippo-trt: error: "), err
    message = lines[0][len("hippo-trt: error: ") :]
    assert message.strip()
    assert out == ""
    return message


def leftovers(parent: Path) -> list[str]:
    """Staging or half-replaced dirs that an atomic write must never leave behind."""
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


def run_args(work: Path, video: Path, *extra) -> list:
    return ["run", work, "--video", video, "--prompt", PROMPT, "--max-new-tokens", 4, "--quiet", *extra]


def edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- export --------------------------------------------------------------------------------


def export_args(target: Path, out: Path, *extra) -> list:
    return ["export", "--target", target, "--out", out, "--max-frames", 4, "--max-seq", 128, "--quiet", *extra]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert leftovers(out.parent) == []


def test_export_missing_model_dir(capfd, tmp_path):
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(tmp_path / "no-such-model", out)), code=USER_ERROR)
    assert "no-such-model" in msg and "does not exist" in msg
    assert_nothing_written(out)


def test_export_model_dir_is_a_file(capfd, scratch_model, tmp_path):
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model / "config.json", out)), code=USER_ERROR)
    assert "not a directory" in msg
    assert_nothing_written(out)


def test_export_without_config_json(capfd, scratch_model, tmp_path):
    (scratch_model / "config.json").unlink()
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "has no config.json" in msg
    assert_nothing_written(out)


@pytest.mark.parametrize("content", [b"{ not json", b"\xff\xfe\x00garbage", b""], ids=["syntax", "binary", "empty"])
def test_export_config_not_json(capfd, scratch_model, tmp_path, content):
    (scratch_model / "config.json").write_bytes(content)
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "config.json" in msg and "is not valid JSON" in msg
    assert_nothing_written(out)


def test_export_config_not_an_object(capfd, scratch_model, tmp_path):
    (scratch_model / "config.json").write_text("[1, 2]")
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "does not hold a JSON object" in msg
    assert_nothing_written(out)


def test_export_unsupported_architecture_is_named(capfd, scratch_model, tmp_path):
    edit_json(scratch_model / "config.json", lambda c: c.update(architectures=["BertModel"]))
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "unsupported architecture 'BertModel'" in msg
    assert "LlavaOnevisionForConditionalGeneration" in msg  # says what is supported
    assert_nothing_written(out)


@pytest.mark.parametrize("value", [5, {"a": 1}], ids=["int", "dict"])
def test_export_malformed_architectures_field_is_a_user_error(capfd, scratch_model, tmp_path, value):
    edit_json(scratch_model / "config.json", lambda c: c.update(architectures=value))
    out = tmp_path / "w"
    error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert_nothing_written(out)


def test_export_corrupt_safetensors(capfd, scratch_model, tmp_path):
    truncate(scratch_model / "model.safetensors")
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "cannot load model weights" in msg and str(scratch_model) in msg
    assert_nothing_written(out)


def test_export_without_weights(capfd, scratch_model, tmp_path):
    (scratch_model / "model.safetensors").unlink()
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "has no .safetensors weights" in msg
    assert_nothing_written(out)


@pytest.mark.parametrize("dtype, needle", [("bf16", "no bfloat16 Conv"), ("fp8", "unknown dtype 'fp8'")])
def test_export_dtype_the_graphs_cannot_take_is_refused_before_loading(capfd, scratch_model, tmp_path, dtype, needle):
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out), "--dtype", dtype), code=USER_ERROR)
    assert needle in msg and "fp16" in msg
    assert_nothing_written(out)


def test_export_unsupported_sliding_window(capfd, scratch_model, tmp_path):
    def sliding(c):
        c["text_config"]["use_sliding_window"] = True
        c["text_config"]["layer_types"] = ["sliding_attention"] * c["text_config"]["num_hidden_layers"]

    edit_json(scratch_model / "config.json", sliding)
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(scratch_model, out)), code=USER_ERROR)
    assert "unsupported setting" in msg and "sliding" in msg
    assert_nothing_written(out)


def test_export_draft_with_other_visual_grid(capfd, tiny_dirs, tmp_path):
    out = tmp_path / "w"
    rc, o, e = cli(capfd, *export_args(tiny_dirs["gqa"], out, "--draft", tiny_dirs["mha_odd_grid"]))
    msg = error_line(rc, o, e, code=USER_ERROR)
    assert "draft and target" in msg and "visual token grid" in msg
    assert_nothing_written(out)


def test_export_failure_leaves_existing_work_dir_untouched(capfd, tiny_dirs, scratch_work):
    before = {p.relative_to(scratch_work): sha(p) for p in scratch_work.rglob("*") if p.is_file()}
    rc, o, e = cli(capfd, *export_args(tiny_dirs["gqa"], scratch_work, "--draft", tiny_dirs["mha_odd_grid"]))
    error_line(rc, o, e, code=USER_ERROR)
    after = {p.relative_to(scratch_work): sha(p) for p in scratch_work.rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(scratch_work.parent) == []


def test_export_limits_too_small_for_the_video(capfd, tiny_dirs, tmp_path):
    out = tmp_path / "w"
    rc, o, e = cli(capfd, "export", "--target", tiny_dirs["gqa"], "--out", out, "--max-frames", 40, "--max-seq", 100)
    msg = error_line(rc, o, e, code=USER_ERROR)
    assert "--max-frames 40 gives 161 visual tokens" in msg and "--max-seq 100" in msg
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--max-frames", "0"], "--max-frames: expected a positive integer, got 0"),
        (["--max-seq", "lots"], "--max-seq: expected a positive integer, got 'lots'"),
        (["--max-spec-len", "1"], "--max-spec-len must be at least 2"),
    ],
)
def test_export_bad_limits(capfd, tiny_dirs, tmp_path, extra, needle):
    out = tmp_path / "w"
    rc, o, e = cli(capfd, "export", "--target", tiny_dirs["gqa"], "--out", out, *extra)
    assert needle in error_line(rc, o, e, code=USER_ERROR)
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "argv,needle",
    [
        ([], "required: command"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["export", "--out", "x"], "required: --target"),
        (["run", "w", "--prompt", "hi"], "one of the arguments --video --frames-npy is required"),
        (["run", "w", "--video", "a.mp4", "--frames-npy", "a.npy", "--prompt", "hi"], "not allowed with"),
        (["info"], "required: work"),
    ],
)
def test_usage_errors_are_one_line(capfd, argv, needle):
    assert needle in error_line(*cli(capfd, *argv), code=USER_ERROR)


# --- a fresh export: not built yet, then its source weights change -------------------------


@pytest.fixture(scope="module")
def fresh_export(tiny_dirs, tmp_path_factory):
    """The gqa model copied and exported with small limits, not built; (model, work, stdout)."""
    root = tmp_path_factory.mktemp("fresh")
    model = Path(shutil.copytree(tiny_dirs["gqa"], root / "model"))
    work = root / "w"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in export_args(model, work, "--json")])
    assert rc == 0, err.getvalue()
    return model, work, out.getvalue()


def test_export_json_output_and_layout(fresh_export):
    model, work, stdout = fresh_export
    manifest = json.loads(stdout)  # exactly one JSON document
    assert manifest == json.loads((work / MANIFEST).read_text())
    assert manifest["limits"] == {"max_frames": 4, "max_seq": 128, "max_spec_len": 9}
    assert manifest["dims"]["seq"]["max"] == 128 and manifest["dims"]["frames"]["max"] == 4
    assert list(manifest["models"]) == ["target"]
    assert manifest["models"]["target"]["source"] == str(model)
    assert manifest["engines"] == {}
    for graph in manifest["models"]["target"]["graphs"].values():
        f = work / graph["path"]
        assert f.stat().st_size == graph["bytes"] and sha(f) == graph["sha256"]
    assert leftovers(work.parent) == []


def test_run_on_exported_but_not_built_work_dir(capfd, fresh_export, clip):
    _, work, _ = fresh_export
    msg = error_line(*cli(capfd, *run_args(work, clip)), code=WORKDIR_ERROR)
    assert "has no onnxruntime engines" in msg
    assert f"hippo-trt build {work}" in msg
    rc, out, err = cli(capfd, "info", work)
    assert rc == 0 and err == ""
    assert "none built (run: hippo-trt build" in out


def test_build_refuses_export_from_other_weights(capfd, fresh_export, clip):
    model, work, _ = fresh_export
    manifest_before = (work / MANIFEST).read_text()
    weights_before = sha(model / "model.safetensors")
    make_tiny_model_dir(model, dataclasses.replace(TINY_SPECS["gqa"], seed=99))
    assert sha(model / "model.safetensors") != weights_before

    msg = error_line(*cli(capfd, "build", work, "--quiet"), code=WORKDIR_ERROR)
    assert "hash mismatch" in msg and str(model) in msg and "re-run hippo-trt export" in msg
    assert (work / MANIFEST).read_text() == manifest_before  # nothing recorded
    assert not (work / "engines").exists()

    msg = error_line(*cli(capfd, *run_args(work, clip, "--backend", "torch")), code=WORKDIR_ERROR)
    assert "hash mismatch" in msg


# --- run: bad inputs on a good work dir ----------------------------------------------------


def test_run_corrupt_video(capfd, work_dirs, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(random.Random(0).randbytes(5000))
    msg = error_line(*cli(capfd, *run_args(work_dirs["gqa"], bad)), code=USER_ERROR)
    assert "cannot decode video" in msg and "bad.mp4" in msg


def test_run_empty_video_file(capfd, work_dirs, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    msg = error_line(*cli(capfd, *run_args(work_dirs["gqa"], empty)), code=USER_ERROR)
    assert "empty.mp4" in msg


def test_run_missing_video(capfd, work_dirs, tmp_path):
    msg = error_line(*cli(capfd, *run_args(work_dirs["gqa"], tmp_path / "gone.mp4")), code=USER_ERROR)
    assert "gone.mp4" in msg and "does not exist" in msg


def test_run_zero_frame_npy(capfd, work_dirs, tmp_path):
    path = tmp_path / "zero.npy"
    np.save(path, np.zeros((0, 36, 44, 3), np.uint8))
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--frames-npy", path, "--prompt", PROMPT, "--quiet")
    assert "holds no frames" in error_line(rc, out, err, code=USER_ERROR)


def test_run_wrong_dtype_npy(capfd, work_dirs, tmp_path):
    path = tmp_path / "float.npy"
    np.save(path, np.zeros((2, 36, 44, 3), np.float32))
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--frames-npy", path, "--prompt", PROMPT, "--quiet")
    assert "must hold uint8 frames" in error_line(rc, out, err, code=USER_ERROR)


def test_run_prompt_longer_than_exported_maximum(capfd, work_dirs, clip):
    rng = random.Random(1)
    prompt = " ".join(rng.choice(WORDS) for _ in range(300))
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--video", clip, "--prompt", prompt, "--quiet")
    msg = error_line(rc, out, err, code=USER_ERROR)
    assert f"longer than the exported maximum {TEST_LIMITS.max_seq}" in msg
    assert "--max-seq" in msg


def test_run_prompt_plus_new_tokens_over_maximum(capfd, work_dirs, clip):
    rc, out, err = cli(
        capfd, "run", work_dirs["gqa"], "--video", clip, "--prompt", PROMPT, "--max-new-tokens", TEST_LIMITS.max_seq, "--quiet"
    )
    msg = error_line(rc, out, err, code=USER_ERROR)
    assert f"--max-new-tokens {TEST_LIMITS.max_seq}" in msg and f"exported maximum sequence {TEST_LIMITS.max_seq}" in msg


def test_run_more_frames_than_exported(capfd, work_dirs, clip):
    rc, out, err = cli(capfd, *run_args(work_dirs["gqa"], clip, "--frames", TEST_LIMITS.max_frames + 1))
    msg = error_line(rc, out, err, code=USER_ERROR)
    assert f"frames = {TEST_LIMITS.max_frames + 1} is outside the exported range [1, {TEST_LIMITS.max_frames}]" in msg


def test_run_empty_prompt(capfd, work_dirs, clip):
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--video", clip, "--prompt", "   ", "--quiet")
    assert "the prompt is empty" in error_line(rc, out, err, code=USER_ERROR)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--max-new-tokens", "0"], "--max-new-tokens: expected a positive integer, got 0"),
        (["--max-new-tokens", "-4"], "--max-new-tokens: expected a positive integer, got -4"),
        (["--mode", "spec"], "unknown --mode 'spec' (available: ar, sd, parallel)"),
        (["--backend", "tvm"], "--backend: invalid choice: 'tvm'"),
        (["--frames", "0"], "--frames: expected a positive integer, got 0"),
        (["--frames", "5000"], "--frames must be between 1 and 1024, got 5000"),
    ],
)
def test_run_bad_options(capfd, work_dirs, clip, extra, needle):
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--video", clip, "--prompt", PROMPT, "--quiet", *extra)
    assert needle in error_line(rc, out, err, code=USER_ERROR)


# --- not a work dir / damaged work dirs ----------------------------------------------------


@pytest.mark.parametrize("command", ["run", "build", "info"])
def test_not_a_work_dir(capfd, tmp_path, clip, command):
    (tmp_path / "some-file.txt").write_text("x")
    argv = run_args(tmp_path, clip) if command == "run" else [command, tmp_path]
    msg = error_line(*cli(capfd, *argv), code=WORKDIR_ERROR)
    assert "no manifest.json" in msg and "not a hippo-trt work dir" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some-file.txt"]  # build wrote nothing


@pytest.mark.parametrize("command", ["run", "build", "info"])
def test_missing_work_dir(capfd, tmp_path, clip, command):
    work = tmp_path / "nowhere"
    argv = run_args(work, clip) if command == "run" else [command, work]
    msg = error_line(*cli(capfd, *argv), code=WORKDIR_ERROR)
    assert "does not exist" in msg and "hippo-trt export" in msg
    assert not work.exists()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{oops", "is corrupt (JSONDecodeError"),
        ("[]", "is corrupt"),
        (json.dumps({"format": FORMAT}), "is corrupt (KeyError"),
        ('{"format": 99}', "has format 99"),
        ('{"format": 2}', "has format 2, this hippo-trt reads 3"),
    ],
)
def test_corrupt_manifest(capfd, scratch_work, content, needle):
    (scratch_work / MANIFEST).write_text(content)
    for argv in (["info", scratch_work], ["build", scratch_work, "--quiet"]):
        msg = error_line(*cli(capfd, *argv), code=WORKDIR_ERROR)
        assert needle in msg and "re-run hippo-trt export" in msg


def graph_file(work: Path, role: str, last: bool = True) -> Path:
    """An exported graph of ``role`` (the last or first in the manifest: no graph name assumed)."""
    graphs = list(json.loads((work / MANIFEST).read_text())["models"][role]["graphs"].values())
    return work / graphs[-1 if last else 0]["path"]


def test_build_detects_truncated_exported_graph(capfd, scratch_work):
    graph = graph_file(scratch_work, "target")
    truncate(graph)
    manifest_before = (scratch_work / MANIFEST).read_text()
    msg = error_line(*cli(capfd, "build", scratch_work, "--quiet"), code=WORKDIR_ERROR)
    assert str(graph) in msg and "sha256" in msg and "re-run hippo-trt export" in msg
    # the failed build left the manifest (and its engines record) as it was
    assert (scratch_work / MANIFEST).read_text() == manifest_before
    assert leftovers(scratch_work) == []


def test_build_detects_altered_exported_graph_of_same_size(capfd, scratch_work):
    graph = graph_file(scratch_work, "draft", last=False)
    data = bytearray(graph.read_bytes())
    data[-20:] = bytes(b ^ 0xFF for b in data[-20:])
    graph.write_bytes(bytes(data))
    msg = error_line(*cli(capfd, "build", scratch_work, "--quiet"), code=WORKDIR_ERROR)
    assert str(graph) in msg and "truncated or altered" in msg


def test_run_detects_truncated_engine_and_build_names_the_export_fix(capfd, scratch_work, clip):
    engine = graph_file(scratch_work, "target")  # the onnxruntime engines are the exported graphs
    truncate(engine)
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert str(engine) in msg
    assert f"hippo-trt build {scratch_work} --backend onnxruntime" in msg
    msg = error_line(*cli(capfd, "build", scratch_work, "--quiet"), code=WORKDIR_ERROR)
    assert str(engine) in msg and "re-run hippo-trt export" in msg


def test_build_repairs_missing_engines_record(capfd, scratch_work, clip):
    edit_json(scratch_work / MANIFEST, lambda m: m["engines"].pop("onnxruntime"))
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert "has no onnxruntime engines" in msg and f"hippo-trt build {scratch_work} --backend onnxruntime" in msg

    manifest = json.loads((scratch_work / MANIFEST).read_text())
    graphs = sum(len(m["graphs"]) for m in manifest["models"].values()) + len(manifest["pruning"])
    rc, out, err = cli(capfd, "build", scratch_work, "--quiet")
    assert rc == 0 and err == "" and out.startswith(f"built {graphs} onnxruntime")
    rc, out, err = cli(capfd, *run_args(scratch_work, clip))
    assert rc == 0 and err == "" and out.endswith("\n")


def test_run_detects_same_size_altered_engine(capfd, scratch_work, clip):
    engine = graph_file(scratch_work, "target", last=False)
    data = bytearray(engine.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    engine.write_bytes(bytes(data))
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert str(engine) in msg and "sha256" in msg and "hippo-trt build" in msg


def test_frames_npy_is_read_as_npy_whatever_its_suffix(capfd, work_dirs, tmp_path):
    frames = tmp_path / "frames.bin"
    with open(frames, "wb") as f:
        np.save(f, np.random.default_rng(0).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8))
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--frames-npy", frames, "--prompt", PROMPT, "--json", "--quiet")
    assert rc == 0, err
    assert json.loads(out)["stats"]["frames"] == 3


def test_run_detects_missing_engine(capfd, scratch_work, clip):
    engine = graph_file(scratch_work, "target", last=False)
    engine.unlink()
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert str(engine) in msg and "missing" in msg and "hippo-trt build" in msg


def test_run_refuses_engines_of_other_onnxruntime_version(capfd, scratch_work, clip):
    import onnxruntime

    edit_json(scratch_work / MANIFEST, lambda m: m["engines"]["onnxruntime"].update(version="0.0.0"))
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert "built with onnxruntime 0.0.0" in msg and onnxruntime.__version__ in msg
    assert f"hippo-trt build {scratch_work} --backend onnxruntime" in msg


def test_run_refuses_engines_of_another_export(capfd, scratch_work, clip):
    edit_json(scratch_work / MANIFEST, lambda m: m["engines"]["onnxruntime"].update(export_id="0" * 16))
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert "built from another export" in msg and "hippo-trt build" in msg


# --- happy path ----------------------------------------------------------------------------


def test_run_json_happy_path(capfd, work_dirs, clip):
    work = work_dirs["gqa"]
    rc, out, err = cli(capfd, *run_args(work, clip, "--json"))
    assert rc == 0, err
    assert err == ""
    result = json.loads(out)  # one JSON object and nothing else
    assert isinstance(result, dict)
    assert set(result) == {"text", "input_ids", "tokens", "timings_ms", "stats"}
    manifest = json.loads((work / MANIFEST).read_text())
    target = manifest["models"]["target"]
    stats = result["stats"]
    assert 1 <= len(result["tokens"]) <= 4
    assert stats["new_tokens"] == len(result["tokens"])
    assert stats["prompt_tokens"] == len(result["input_ids"])
    assert stats["frames"] == target["default_frames"]
    assert result["input_ids"].count(target["video_token_id"]) == stats["visual_tokens"]
    assert stats["stopped_at_eos"] == (result["tokens"][-1] in target["eos_token_ids"])
    assert all(0 <= t < target["decoder"]["vocab"] for t in result["tokens"])
    assert {"video_decode", "preprocess", "vision", "prefill"} <= set(result["timings_ms"])
    assert all(v >= 0 for v in result["timings_ms"].values())

    # plain output is the same answer (greedy decoding is deterministic)
    rc, out, err = cli(capfd, *run_args(work, clip))
    assert rc == 0 and err == ""
    assert out == result["text"] + "\n"


def test_info_text_and_json(capfd, work_dirs):
    import onnxruntime

    work = work_dirs["gqa"]
    rc, out, err = cli(capfd, "info", work)
    assert rc == 0 and err == ""
    assert out.startswith(f"work dir   {work.absolute()}")
    assert "\ntarget     LlavaOnevisionForConditionalGeneration" in out
    assert "\ndraft      LlavaOnevisionForConditionalGeneration" in out
    assert f"engines    onnxruntime {onnxruntime.__version__} on CPUExecutionProvider" in out
    assert "seq [1..200]" in out

    rc, out, err = cli(capfd, "info", work, "--json")
    assert rc == 0 and err == ""
    obj = json.loads(out)
    assert obj["work_dir"] == str(work.absolute())
    assert obj["total_bytes"] == sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    assert set(obj["models"]) == {"target", "draft"}
    assert obj["dims"]["seq"] == {"min": 1, "opt": 200, "max": 200}
    assert obj["engines"]["onnxruntime"]["version"] == onnxruntime.__version__


# --- the real executable -------------------------------------------------------------------


def _executable() -> list[str]:
    found = shutil.which("hippo-trt") or shutil.which("hippo-trt", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "hippo_trt"]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("HIPPO_TRT_DEBUG", "PYTHONWARNINGS")}


def test_executable_export_missing_model_dir(tmp_path):
    out = tmp_path / "w"
    proc = subprocess.run(
        [*_executable(), "export", "--target", str(tmp_path / "missing"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == USER_ERROR
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"hippo-trt: error: model directory '{tmp_path / 'missing'}' does not exist or is not a directory"]
    assert_nothing_written(out)


def test_module_run_corrupt_video(work_dirs, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(random.Random(2).randbytes(3000))
    proc = subprocess.run(
        [sys.executable, "-m", "hippo_trt", *map(str, run_args(work_dirs["gqa"], bad))],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == USER_ERROR
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hippo-trt: error: cannot decode video"), proc.stderr


# --- external data (each graph's weights in NAME.onnx.data beside it) ----------------------


def data_file(work: Path, role: str) -> Path:
    """The external data file of ``role``'s first graph that has one, from the manifest."""
    graphs = json.loads((work / MANIFEST).read_text())["models"][role]["graphs"].values()
    return work / next(g["data"][0]["path"] for g in graphs if g["data"])


DAMAGE = {"missing": Path.unlink, "truncated": truncate}


@pytest.mark.parametrize("damage", DAMAGE)
def test_run_detects_damaged_data_file(capfd, scratch_work, clip, damage):
    data = data_file(scratch_work, "target")
    DAMAGE[damage](data)
    msg = error_line(*cli(capfd, *run_args(scratch_work, clip)), code=WORKDIR_ERROR)
    assert f"'{data}' (external data of " in msg and f"hippo-trt build {scratch_work} --backend onnxruntime" in msg
    assert ("is missing" if damage == "missing" else "truncated or altered") in msg


@pytest.mark.parametrize("damage", DAMAGE)
def test_build_detects_damaged_data_file_and_writes_nothing(capfd, scratch_work, damage):
    data = data_file(scratch_work, "draft")
    DAMAGE[damage](data)
    manifest_before = (scratch_work / MANIFEST).read_text()
    files_before = sorted(p.relative_to(scratch_work) for p in scratch_work.rglob("*"))
    msg = error_line(*cli(capfd, "build", scratch_work, "--quiet"), code=WORKDIR_ERROR)
    assert f"'{data}' (external data of " in msg and f"re-run hippo-trt export into '{scratch_work}'" in msg
    assert (scratch_work / MANIFEST).read_text() == manifest_before
    assert sorted(p.relative_to(scratch_work) for p in scratch_work.rglob("*")) == files_before


@pytest.mark.parametrize("damage", DAMAGE)
def test_check_detects_damaged_data_file(capfd, scratch_work, damage):
    data = data_file(scratch_work, "target")
    DAMAGE[damage](data)
    msg = error_line(*cli(capfd, "check", scratch_work), code=WORKDIR_ERROR)
    assert f"'{data}' (external data of " in msg and "re-run hippo-trt export" in msg


def test_same_size_altered_data_file_is_refused_by_build(capfd, scratch_work):
    data = data_file(scratch_work, "target")
    raw = bytearray(data.read_bytes())
    raw[:16] = bytes(b ^ 0xFF for b in raw[:16])
    data.write_bytes(bytes(raw))
    msg = error_line(*cli(capfd, "build", scratch_work, "--quiet"), code=WORKDIR_ERROR)
    assert str(data) in msg and "truncated or altered" in msg


def test_build_stores_each_weight_once(capfd, scratch_work):
    """The onnxruntime engines are the exported graphs and their data files: no copies."""
    rc, out, err = cli(capfd, "build", scratch_work, "--quiet", "--json")
    assert rc == 0, err
    record = json.loads(out)
    manifest = json.loads((scratch_work / MANIFEST).read_text())
    exported = {role: m["graphs"] for role, m in manifest["models"].items()} | {"pruning": manifest["pruning"]}
    assert record["files"] == exported
    assert all(g["data"] for role, graphs in exported.items() if role != "pruning" for g in graphs.values())
    assert not (scratch_work / "engines").exists()
    datas = [p for p in scratch_work.rglob("*.data")]
    assert len({sha(p) for p in datas}) == len(datas)  # no data file twice

    rc, out, err = cli(capfd, "info", scratch_work)
    assert rc == 0 and "the exported graphs, not a copy" in out and "(with 1 data file)" in out


# --- export: sharded checkpoints and the default --max-seq ---------------------------------


@pytest.fixture
def sharded_model(tmp_path) -> Path:
    """The gqa model saved as a published checkpoint is: shards plus model.safetensors.index.json."""
    return make_tiny_model_dir(tmp_path / "sharded", TINY_SPECS["gqa"], max_shard_size="150KB")


def test_export_sharded_model_missing_a_shard(capfd, sharded_model, tmp_path):
    shard = sorted(sharded_model.glob("model-*-of-*.safetensors"))[-1]
    shard.unlink()
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(sharded_model, out)), code=USER_ERROR)
    assert f"shard '{shard.name}'" in msg and "model.safetensors.index.json" in msg and "download the missing shard" in msg
    assert_nothing_written(out)


def test_export_sharded_model_with_corrupt_index(capfd, sharded_model, tmp_path):
    (sharded_model / "model.safetensors.index.json").write_text('{"weight_map": ')
    out = tmp_path / "w"
    msg = error_line(*cli(capfd, *export_args(sharded_model, out)), code=USER_ERROR)
    assert "model.safetensors.index.json' is not valid JSON" in msg
    assert_nothing_written(out)


def test_export_help_documents_the_default_max_seq(capfd):
    from hippo_trt.dims import TEXT_BUDGET

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capfd.readouterr().out.split())
    assert f"visual tokens of a --max-frames video plus {TEXT_BUDGET}" in out


def test_export_sharded_model_without_max_seq_fits_the_video_and_text(capfd, sharded_model, tmp_path):
    """--max-seq left out: the longest video's visual tokens plus the text budget."""
    from hippo_trt.dims import TEXT_BUDGET

    out = tmp_path / "w"
    rc, stdout, err = cli(capfd, "export", "--target", sharded_model, "--out", out, "--max-frames", 4, "--quiet")
    assert rc == 0, err
    seq = 4 * 4 + 1 + TEXT_BUDGET  # 4 frames of 4 pooled tokens, a newline, the text budget
    assert stdout.strip().endswith(f"into {out}, up to {seq} tokens per sequence")
    dims = json.loads((out / MANIFEST).read_text())["dims"]
    assert dims["vis_tokens"]["max"] == 17 and dims["seq"]["max"] == dims["past"]["max"] == seq
