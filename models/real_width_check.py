"""Export, build and run a random pair at the published widths; measure time, memory and disk.

    python models/real_width_check.py --family llava|qwen|qwen3 --out DIR \
        [--layers 1 --draft-layers 2 --vision-layers 2 --frames 4 --dtype bf16 --width-scale 1]

Writes (or reuses) DIR/models/{target,draft} with ``hippo_trt.testing.real_widths``, a synthetic clip
DIR/clip.mp4 (384 x 384), then runs each step as a subprocess, measuring wall time and peak
RSS (GNU ``/usr/bin/time -v``, or polling /proc over the child's process tree without it):

  models       the random checkpoints (skipped when DIR/models matches the arguments)
  export       hippo-trt export --target T --draft D --out DIR/work   (default limits)
  build        hippo-trt build DIR/work --backend onnxruntime
  run ar|sd|parallel   hippo-trt run DIR/work --video clip.mp4 --json ... (sd/parallel: --prune hippo)
  transformers          the target's greedy generate (fp32), same frames and prompt (and, for
                        Qwen3-VL's timestamps, the same frame indices and stream fps as the run)
  transformers+draft    assisted generation with the draft (greedy: the same tokens)

and prints a markdown table (also DIR/report.md, raw figures in DIR/results.json). A failed
step prints its last stderr lines and is marked in the table; later steps that need its
output are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

GNU_TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").is_file() else None)
STDERR_TAIL = 15
POLL_S = 0.2


# --- measuring one subprocess ----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One subprocess: exit status, wall time, peak RSS (bytes; None when unknown), output."""

    name: str
    cmd: list[str]
    rc: int | None  # None: killed at the timeout
    wall_s: float
    peak_rss: int | None
    stdout: str
    stderr_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def status(self) -> str:
        return "ok" if self.ok else "TIMEOUT" if self.rc is None else f"FAILED (rc {self.rc})"


def _gnu_time_rss(stderr: str) -> tuple[int | None, str]:
    """Peak RSS in bytes from ``time -v``'s report, and stderr without the report."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    start = stderr.rfind("\tCommand being timed:")
    cleaned = stderr[:start] if start >= 0 else stderr
    return (int(match.group(1)) * 1024 if match else None), cleaned


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants, from /proc (0 when gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def _run_polled(cmd: list[str], timeout: float, out, err) -> tuple[int | None, int]:
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    peak, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
            proc.wait()
            return None, peak
        time.sleep(POLL_S)
    return proc.returncode, peak


def _run_timed(cmd: list[str], timeout: float, out, err) -> int | None:
    proc = subprocess.Popen([GNU_TIME, "-v", *cmd], stdout=out, stderr=err, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return None


def measure(name: str, cmd: list[str], timeout: float, logs: Path) -> Measured:
    """Run ``cmd`` with a timeout; stdout and stderr go to ``logs``/``name``.{out,err}."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    print(f"[{name}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        if GNU_TIME:
            rc, peak = _run_timed(cmd, timeout, out, err), None
        else:
            rc, peak = _run_polled(cmd, timeout, out, err)
    wall = time.monotonic() - start
    stderr = err_path.read_text(errors="replace")
    if GNU_TIME:
        peak, stderr = _gnu_time_rss(stderr)
    result = Measured(name, cmd, rc, wall, peak, out_path.read_text(errors="replace"), stderr.rstrip().splitlines()[-STDERR_TAIL:])
    print(f"[{name}] {result.status()} in {wall:.1f} s, peak RSS {_gib(peak)}", file=sys.stderr, flush=True)
    if not result.ok:
        print("\n".join(f"    {line}" for line in result.stderr_tail), file=sys.stderr, flush=True)
    return result


# --- the check's inputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckConfig:
    family: str
    out: Path
    layers: int = 1
    draft_layers: int = 2
    vision_layers: int = 2
    frames: int = 4
    dtype: str = "bf16"
    width_scale: int = 1
    seed: int = 0
    max_new_tokens: int = 16
    gamma: int = 4
    keep: float = 0.1
    timeout_s: float = 3600.0
    modes: tuple[str, ...] = ("ar", "sd", "parallel")
    skip_reference: bool = False

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def clip(self) -> Path:
        return self.out / "clip.mp4"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def model_stamp(self) -> dict:
        """What decides the checkpoints: a matching stamp lets a later run reuse them."""
        keys = ("family", "layers", "draft_layers", "vision_layers", "dtype", "width_scale", "seed")
        return {"init": 2, **{k: getattr(self, k) for k in keys}}


def _hippo_trt() -> list[str]:
    exe = Path(sys.executable).parent / "hippo-trt"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "hippo_trt"]


def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def write_clip(path: Path, frames: int, seed: int = 0) -> str:
    """A synthetic shapes clip of ``frames`` frames scaled to 384 x 384; returns its prompt."""
    from hippo_trt.testing.synthetic import SIZE, make_sample
    from hippo_trt.video import write_video

    sample = make_sample(seed, "describe", frames=frames)
    scale = 384 // SIZE
    video = np.repeat(np.repeat(sample.scene.render(), scale, axis=1), scale, axis=2)  # [T, 384, 384, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.ascontiguousarray(video))
    return sample.prompt


def _models_current(cfg: CheckConfig) -> bool:
    stamp = cfg.models / "stamp.json"
    return (
        stamp.is_file()
        and json.loads(stamp.read_text()) == cfg.model_stamp()
        and all((cfg.models / role / "config.json").is_file() for role in ("target", "draft"))
    )


# --- steps -----------------------------------------------------------------------------------


def _run_cmd(cfg: CheckConfig, mode: str, prompt: str) -> list[str]:
    cmd = [
        *_hippo_trt(),
        "run",
        str(cfg.work),
        "--video",
        str(cfg.clip),
        "--frames",
        str(cfg.frames),
        "--prompt",
        prompt,
        "--json",
        "--quiet",
        "--max-new-tokens",
        str(cfg.max_new_tokens),
        "--mode",
        mode,
    ]
    if mode != "ar":
        cmd += ["--prune", "hippo", "--keep", str(cfg.keep), "--gamma", str(cfg.gamma)]
    return cmd


def _reference_cmd(cfg: CheckConfig, prompt: str, assisted: bool) -> list[str]:
    cmd = _self(
        "_reference",
        "--model",
        str(cfg.models / "target"),
        "--video",
        str(cfg.clip),
        "--frames",
        str(cfg.frames),
        "--prompt",
        prompt,
        "--max-new-tokens",
        str(cfg.max_new_tokens),
    )
    return cmd + (["--assistant", str(cfg.models / "draft")] if assisted else [])


def run_steps(cfg: CheckConfig) -> dict[str, Measured]:
    """Every step in order; a step whose input is missing is left out."""
    steps: dict[str, Measured] = {}
    cfg.out.mkdir(parents=True, exist_ok=True)
    prompt = write_clip(cfg.clip, cfg.frames * 2, cfg.seed)
    if not _models_current(cfg):
        shutil.rmtree(cfg.models, ignore_errors=True)
        build = _self(
            "_models",
            "--family",
            cfg.family,
            "--out",
            str(cfg.models),
            "--layers",
            str(cfg.layers),
            "--draft-layers",
            str(cfg.draft_layers),
            "--vision-layers",
            str(cfg.vision_layers),
            "--dtype",
            cfg.dtype,
            "--width-scale",
            str(cfg.width_scale),
            "--seed",
            str(cfg.seed),
        )
        steps["models"] = measure("models", build, cfg.timeout_s, cfg.logs)
        if not steps["models"].ok:
            return steps
        (cfg.models / "stamp.json").write_text(json.dumps(cfg.model_stamp()))
    target, draft = cfg.models / "target", cfg.models / "draft"
    export = [*_hippo_trt(), "export", "--target", str(target), "--draft", str(draft), "--out", str(cfg.work), "--quiet"]
    steps["export"] = measure("export", export, cfg.timeout_s, cfg.logs)
    if steps["export"].ok:
        build = [*_hippo_trt(), "build", str(cfg.work), "--backend", "onnxruntime", "--quiet"]
        steps["build"] = measure("build", build, cfg.timeout_s, cfg.logs)
        if steps["build"].ok:
            for mode in cfg.modes:
                steps[f"run {mode}"] = measure(f"run-{mode}", _run_cmd(cfg, mode, prompt), cfg.timeout_s, cfg.logs)
    if not cfg.skip_reference:
        steps["transformers"] = measure("transformers", _reference_cmd(cfg, prompt, False), cfg.timeout_s, cfg.logs)
        steps["transformers+draft"] = measure("transformers-assisted", _reference_cmd(cfg, prompt, True), cfg.timeout_s, cfg.logs)
    return steps


# --- the report ------------------------------------------------------------------------------


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.2f} GiB"


def tree_bytes(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in Path(path).rglob(pattern) if f.is_file()) if Path(path).exists() else 0


def _json_out(m: Measured | None) -> dict | None:
    if m is None or not m.ok:
        return None
    try:
        return json.loads(m.stdout)
    except json.JSONDecodeError:
        return None


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass(frozen=True)
class Comparison:
    """One run's tokens against transformers' greedy tokens."""

    tokens: list[int] | None
    equal: bool | None  # None: either side missing
    first_difference: int | None
    same_prompt: bool | None

    @classmethod
    def of(cls, result: dict | None, reference: dict | None) -> Comparison:
        if result is None:
            return cls(None, None, None, None)
        tokens = [int(t) for t in result.get("tokens", [])]
        if reference is None:
            return cls(tokens, None, None, None)
        ref = reference["tokens"]
        return cls(tokens, tokens == ref, _first_difference(tokens, ref), result.get("input_ids") == reference["input_ids"])

    def cell(self) -> str:
        if self.tokens is None:
            return "-"
        if self.equal is None:
            return "no reference"
        if self.equal:
            return "equal" + ("" if self.same_prompt else " (prompt ids differ!)")
        return f"DIFFERENT from token {self.first_difference}" + ("" if self.same_prompt else ", prompt ids differ")


@dataclass(frozen=True)
class Report:
    cfg: CheckConfig
    steps: dict[str, Measured]
    checkpoint_bytes: dict[str, int]
    work_bytes: int
    work_data_bytes: int
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: CheckConfig, steps: dict[str, Measured]) -> Report:
        ckpt = {role: tree_bytes(cfg.models / role, "*.safetensors") for role in ("target", "draft")}
        reference = _json_out(steps.get("transformers"))
        comparisons = {
            name: Comparison.of(_json_out(m), reference)
            for name, m in steps.items()
            if name.startswith("run ") or name == "transformers+draft"
        }
        return cls(cfg, steps, ckpt, tree_bytes(cfg.work), tree_bytes(cfg.work, "*.onnx.data"), comparisons)

    def markdown(self) -> str:
        c = self.cfg
        ckpt = sum(self.checkpoint_bytes.values())
        ref_rss = self.steps["transformers"].peak_rss if "transformers" in self.steps else None
        lines = [
            f"### real-width check: {c.family}, target {c.layers} layers, draft {c.draft_layers}, vision {c.vision_layers}, "
            f"{c.frames} frames, saved {c.dtype}" + (f", widths / {c.width_scale}" if c.width_scale > 1 else ""),
            "",
            "| step | status | wall s | peak RSS | vs transformers RSS | tokens vs transformers greedy |",
            "|---|---|---:|---:|---:|---|",
        ]
        for name, m in self.steps.items():
            ratio = (
                f"{m.peak_rss / ref_rss:.2f}x"
                if m.peak_rss and ref_rss and (name.startswith("run ") or name.startswith("transformers"))
                else ""
            )
            comp = self.comparisons.get(name)
            tokens = comp.cell() if comp else ("reference" if name == "transformers" and m.ok else "")
            lines.append(f"| {name} | {m.status()} | {m.wall_s:.1f} | {_gib(m.peak_rss)} | {ratio} | {tokens} |")
        ratio = f"{self.work_bytes / ckpt:.2f}x" if ckpt else "?"
        lines += [
            "",
            "| disk | bytes | GiB |",
            "|---|---:|---:|",
            f"| checkpoint target ({c.dtype} safetensors) | {self.checkpoint_bytes['target']} | {self.checkpoint_bytes['target'] / 2**30:.2f} |",
            f"| checkpoint draft ({c.dtype} safetensors) | {self.checkpoint_bytes['draft']} | {self.checkpoint_bytes['draft'] / 2**30:.2f} |",
            f"| work dir (all files) | {self.work_bytes} | {self.work_bytes / 2**30:.2f} |",
            f"| work dir *.onnx.data | {self.work_data_bytes} | {self.work_data_bytes / 2**30:.2f} |",
            f"| work dir / checkpoints | {ratio} | |",
        ]
        for name, m in self.steps.items():
            if not m.ok:
                lines += ["", f"{name} ({m.status()}), last stderr lines:", "```", *m.stderr_tail, "```"]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.cfg).items()},
            "steps": {n: {**asdict(m), "stdout": m.stdout[-4000:]} for n, m in self.steps.items()},
            "checkpoint_bytes": self.checkpoint_bytes,
            "work_bytes": self.work_bytes,
            "work_data_bytes": self.work_data_bytes,
            "comparisons": {n: asdict(c) for n, c in self.comparisons.items()},
        }


# --- subprocess entry points -----------------------------------------------------------------


def models_main(argv: list[str]) -> int:
    """``_models``: write the pair (one model in memory at a time)."""
    from hippo_trt.testing.real_widths import make_real_width_pair

    p = argparse.ArgumentParser(prog="real_width_check.py _models")
    p.add_argument("--family", required=True)
    p.add_argument("--out", type=Path, required=True)
    for name in ("--layers", "--draft-layers", "--vision-layers", "--width-scale", "--seed"):
        p.add_argument(name, type=int, required=True)
    p.add_argument("--dtype", required=True)
    a = p.parse_args(argv)
    make_real_width_pair(a.out, a.family, a.layers, a.draft_layers, a.vision_layers, a.dtype, a.seed, a.width_scale)
    return 0


def reference_main(argv: list[str]) -> int:
    """``_reference``: transformers greedy ``generate`` (fp32) on the frames the CLI reads, where
    it reads them (PyAV's indices and the stream's fps: Qwen3-VL's prompt timestamps); prints
    {"tokens", "input_ids"} as JSON."""
    import torch

    from hippo_trt.model_dir import ModelDir
    from hippo_trt.preprocess import prepare_request
    from hippo_trt.video import decode_clip

    p = argparse.ArgumentParser(prog="real_width_check.py _reference")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--assistant", type=Path)
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    a = p.parse_args(argv)
    model_dir = ModelDir.open(a.model)
    model = model_dir.load_model("fp32")
    clip = decode_clip(a.video, a.frames)
    request = prepare_request(model_dir.load_processor(), clip.frames, a.prompt, clip.times)
    extra = {}
    if a.assistant:
        from hippo_trt.runtime.bench.decode import assisted_tokenizers

        assistant = ModelDir.open(a.assistant).load_model("fp32")
        extra = {"assistant_model": assistant, **assisted_tokenizers(model, assistant, model_dir.load_processor().tokenizer)}
    with torch.inference_mode():
        out = model.generate(**request.hf_inputs(), max_new_tokens=a.max_new_tokens, do_sample=False, **extra)
    tokens = out[0, request.input_ids.shape[1] :].tolist()
    print(json.dumps({"tokens": tokens, "input_ids": request.input_ids[0].tolist()}))
    return 0


def parse_args(argv: list[str]) -> CheckConfig:
    from hippo_trt.testing.real_widths import FAMILIES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--out", type=Path, required=True, help="models, work dir, clip, logs and report go here")
    p.add_argument("--layers", type=int, default=1, help="target decoder layers")
    p.add_argument("--draft-layers", type=int, default=2)
    p.add_argument("--vision-layers", type=int, default=2)
    p.add_argument("--frames", type=int, default=4, help="frames the run and the reference read")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="checkpoint dtype on disk")
    p.add_argument("--width-scale", type=int, default=1, help="divide the published widths (development)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--gamma", type=int, default=4)
    p.add_argument("--keep", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds each subprocess may take")
    p.add_argument("--modes", default="ar,sd,parallel")
    p.add_argument("--skip-reference", action="store_true", help="no transformers runs")
    a = p.parse_args(argv)
    return CheckConfig(
        family=a.family,
        out=a.out.absolute(),
        layers=a.layers,
        draft_layers=a.draft_layers,
        vision_layers=a.vision_layers,
        frames=a.frames,
        dtype=a.dtype,
        width_scale=a.width_scale,
        seed=a.seed,
        max_new_tokens=a.max_new_tokens,
        gamma=a.gamma,
        keep=a.keep,
        timeout_s=a.timeout,
        modes=tuple(a.modes.split(",")),
        skip_reference=a.skip_reference,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_models"]:
        return models_main(argv[1:])
    if argv[:1] == ["_reference"]:
        return reference_main(argv[1:])
    cfg = parse_args(argv)
    report = Report.of(cfg, run_steps(cfg))
    text = report.markdown()
    (cfg.out / "report.md").write_text(text + "\n")
    (cfg.out / "results.json").write_text(json.dumps(report.to_json(), indent=1))
    print(text)
    return 0 if all(m.ok for m in report.steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
