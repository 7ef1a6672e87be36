"""What only real TensorRT can show; run it on a machine with an NVIDIA GPU and TensorRT 10.3+:

    python models/trt_gpu_check.py --out DIR [--pairs demo,llava,qwen] [--dtypes fp32,fp16] \
        [--max-new-tokens N] [--clips static,random] [--prompts 2]

Per pair (the demo pair as ``hippo-trt demo`` finds it, tiny random LLaVA-OneVision and Qwen2.5-VL
pairs) and export dtype: export (validated against torch), build for ONNX Runtime and TensorRT;
every engine output vs torch (``hippo-trt check --backend tensorrt``); greedy ar / sd / parallel
tokens, prune ``local`` and ``hippo``, on a ``static`` clip (one frame repeated: the temporal
scores tie) and a ``random`` one, equal to ONNX Runtime's (fp16: sd / parallel equal TensorRT's
ar, ar vs fp32 ONNX Runtime is information); how many pruned requests' kept sets differ from the
numpy reference (allowed: TopK's tie order is undocumented). Prints a markdown table, writes
DIR/trt_gpu_check.json atomically, exits 1 if an engine comparison or a lossless token check
fails; without TensorRT or a CUDA GPU it prints one ``SKIP: ...`` line and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hippo_trt import tensorrt_env
from hippo_trt.atomic import staged_dir, write_json
from hippo_trt.cli.options import positive
from hippo_trt.dims import ExportLimits
from hippo_trt.errors import EngineError
from hippo_trt.testing.synthetic import QUESTIONS
from hippo_trt.testing.tiny import make_tiny_model_dir, make_tiny_qwen_dir
from hippo_trt.testing.tiny_pairs import DRAFT_OF, QWEN_DRAFTS, QWEN_SPECS, TINY_SPECS
from hippo_trt.video import decode_video, write_video

PASS, FAIL, INFO = "pass", "FAIL", "info"  # INFO never fails the run
PAIRS = ("demo", "llava", "qwen")
DTYPES = ("fp32", "fp16")
CLIPS = ("static", "random")
STAGES = ("export", "build", "engines", "tokens")
GAMMA, KEEP, PRUNES, SPEC_MODES = 4, 0.25, ("local", "hippo"), ("sd", "parallel")
CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH = 8, 48, 64
# The test suite's pairs (hippo_trt/testing/tiny_pairs.py): LLaVA-OneVision gqa with its mqa draft,
# Qwen2.5-VL qwen_gqa with its own draft.
TINY_LIMITS = ExportLimits(max_frames=8, max_seq=200, max_spec_len=9)
TINY_PAIRS = {
    "llava": (make_tiny_model_dir, TINY_SPECS["gqa"], TINY_SPECS[DRAFT_OF["gqa"]]),
    "qwen": (make_tiny_qwen_dir, QWEN_SPECS["qwen_gqa"], QWEN_DRAFTS["qwen_gqa"]),
}


@dataclass(frozen=True)
class CheckResult:
    """One row of the report; ``data``: the figures behind it (JSON only)."""

    pair: str
    dtype: str
    check: str
    result: str  # PASS, FAIL or INFO
    detail: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One generation: a clip, a prompt and a decoding mode (``prune`` "none" for ar)."""

    clip: str
    prompt: str
    mode: str
    prune: str = "none"

    @property
    def request(self) -> tuple[str, str]:
        return self.clip, self.prompt

    def label(self) -> str:
        return f"{self.clip} '{self.prompt}' {self.mode}" + (f"/{self.prune}" if self.mode != "ar" else "")


@dataclass(frozen=True)
class KeptCompare:
    """One pruned request: the TensorRT pruner's kept set against the numpy reference's."""

    method: str
    kept: int  # tokens kept
    differing: int  # tokens in one set and not in the other (0: the same set)


@dataclass(frozen=True)
class PairSource:
    name: str
    target: Path
    draft: Path
    limits: ExportLimits
    note: str = ""


# --- pure logic: clips, cases, verdicts, the report ----------------------------------------------


def static_frames(frames: int = CLIP_FRAMES, height: int = CLIP_HEIGHT, width: int = CLIP_WIDTH, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8: one mosaic of 8x8-pixel blocks repeated T times. Every frame is the
    same (and H.264 keeps them so), so every temporal redundancy score ties."""
    blocks = np.random.default_rng(seed).integers(0, 256, (-(-height // 8), -(-width // 8), 3), dtype=np.uint8)
    frame = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]  # [H, W, 3]
    return np.repeat(frame[None], frames, axis=0)


def random_frames(frames: int = CLIP_FRAMES, height: int = CLIP_HEIGHT, width: int = CLIP_WIDTH, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8 noise, as tests/conftest.py's clips."""
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


CLIP_MAKERS = {"static": static_frames, "random": random_frames}


def make_cases(clips: Sequence[str], prompts: Sequence[str]) -> list[Case]:
    """Per clip and prompt: ar, then each speculative mode with each pruning method."""
    return [
        case
        for clip in clips
        for prompt in prompts
        for case in [Case(clip, prompt, "ar")] + [Case(clip, prompt, m, p) for m in SPEC_MODES for p in PRUNES]
    ]


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first position where the token lists differ (None: equal)."""
    return None if list(a) == list(b) else next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def token_verdict(pair: str, dtype: str, check: str, pairs: Sequence[tuple[Case, list, list]], result_if_differ: str) -> CheckResult:
    """``pairs``: (case, tokens, expected tokens); the row says how many are equal."""
    differ = [(c, first_difference(a, b), a, b) for c, a, b in pairs if first_difference(a, b) is not None]
    detail = f"{len(pairs) - len(differ)}/{len(pairs)} equal"
    if differ:
        detail += "; " + "; ".join(f"{c.label()} from token {i}" for c, i, *_ in differ[:3]) + ("; ..." if len(differ) > 3 else "")
    data = {"differ": [{**asdict(c), "first": i, "tokens": list(a), "expected": list(b)} for c, i, a, b in differ]}
    return CheckResult(pair, dtype, check, PASS if not differ else result_if_differ, detail, data)


def token_results(pair: str, dtype: str, got: Mapping[Case, list], reference: Mapping[Case, list]) -> list[CheckResult]:
    """fp32: every mode's TensorRT tokens equal ONNX Runtime's. Lower precisions: TensorRT's sd
    and parallel equal TensorRT's ar (lossless), and its ar vs ONNX Runtime is information."""
    ar = {c.request: t for c, t in got.items() if c.mode == "ar"}
    rows = []
    for mode in ("ar", *SPEC_MODES):
        cases = [c for c in got if c.mode == mode]
        to_ar = dtype != "fp32" and mode != "ar"  # lossless against TensorRT's own ar
        name = "tensorrt ar" if to_ar else "onnxruntime" if dtype == "fp32" else "fp32 onnxruntime"
        expected = [ar[c.request] if to_ar else reference[c] for c in cases]
        verdict = INFO if dtype != "fp32" and mode == "ar" else FAIL
        rows.append(token_verdict(pair, dtype, f"tokens {mode} = {name}", [(c, got[c], e) for c, e in zip(cases, expected)], verdict))
    return rows


def kept_result(pair: str, dtype: str, records: Sequence[KeptCompare]) -> CheckResult:
    """How many pruned requests' kept sets differ from the reference (allowed: INFO)."""
    differ = [r for r in records if r.differing]
    by_method = ", ".join(f"{m} {sum(r.method == m for r in differ)}/{sum(r.method == m for r in records)}" for m in PRUNES)
    detail = f"{len(differ)}/{len(records)} requests' kept sets differ from the numpy reference ({by_method})"
    return CheckResult(pair, dtype, "kept sets = reference", INFO if differ else PASS, detail, {"requests": [asdict(r) for r in records]})


def engine_results(pair: str, dtype: str, rows: Sequence) -> list[CheckResult]:
    """One row per engine call (role/graph) from ``compare_backend``'s per-output rows."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(f"{r.role}/{r.graph}", []).append(r)
    results = []
    for name, outs in groups.items():
        worst = max(outs, key=lambda r: r.max_abs / r.allowed_abs if r.allowed_abs else float("inf"))
        passed = sum(r.passed for r in outs)
        detail = (
            f"{passed}/{len(outs)} outputs within tolerance; worst {worst.output}: max abs {worst.max_abs:.3g} "
            f"(allowed {worst.allowed_abs:.3g}), max rel {worst.max_rel:.3g}"
        )
        verdict = PASS if passed == len(outs) else FAIL
        results.append(CheckResult(pair, dtype, f"engine {name} vs torch", verdict, detail, {"outputs": [asdict(r) for r in outs]}))
    return results


def failed(pair: str, dtype: str, stage: str, error: BaseException) -> CheckResult:
    message = " ".join(str(error).split()) or type(error).__name__
    return CheckResult(pair, dtype, stage, FAIL, f"{type(error).__name__}: {message}")


def run_stages(pair: str, dtype: str, stages: Iterator[list[CheckResult]], bar) -> list[CheckResult]:
    """Each of ``STAGES`` in turn (``stages`` yields each one's rows); the first that raises is a
    FAIL row and ends this pair and dtype."""
    results, done = [], 0
    try:
        while done < len(STAGES):
            bar.set_description(f"{pair} {dtype}: {STAGES[done]}")
            results += next(stages)
            done += 1
            bar.update()
    except Exception as e:  # one line in the report; the other pairs and dtypes still run
        results.append(failed(pair, dtype, STAGES[done], e))
        bar.update(len(STAGES) - done)
    return results


def summary_rows(results: Sequence[CheckResult]) -> list[tuple[str, str, str, str, str]]:
    return [(r.pair, r.dtype, r.check, r.result, r.detail) for r in results]


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| pair | dtype | check | result | detail |", "|---|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows])


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.result == FAIL for r in results) else 0


# --- the project's API: pairs, export and builds, pipelines -------------------------------------


def pair_source(name: str, root: Path) -> PairSource:
    """The demo pair as ``hippo-trt demo`` finds it, or a tiny random pair (written once under ``root``)."""
    if name == "demo":
        from hippo_trt.cli.demo import DEMO_LIMITS, demo_pair

        pair = demo_pair(root / "demo")
        return PairSource(name, pair.target, pair.draft, DEMO_LIMITS, "trained demo pair" if pair.trained else "untrained stand-in")
    make, *specs = TINY_PAIRS[name]
    for role, spec in zip(("target", "draft"), specs):
        if not (root / name / role / "config.json").is_file():
            with staged_dir(root / name / role) as stage:
                make(stage, spec)
    return PairSource(name, root / name / "target", root / name / "draft", TINY_LIMITS, "tiny random")


def write_clips(clips_dir: Path, names: Sequence[str]) -> dict[str, Path]:
    clips_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: clips_dir / f"{name}.mp4" for name in names}
    for name, path in paths.items():
        write_video(path, CLIP_MAKERS[name]())
    return paths


def clip_results(paths: Mapping[str, Path]) -> list[CheckResult]:
    """Whether the static clip's frames are still identical after H.264 (information)."""
    if "static" not in paths:
        return []
    frames = decode_video(paths["static"], CLIP_FRAMES)
    same = int(sum(np.array_equal(f, frames[0]) for f in frames))
    return [CheckResult("-", "-", "static clip", PASS if same == len(frames) else INFO, f"{same}/{len(frames)} decoded frames identical")]


class KeptSetRecorder:
    """A pipeline's pruner whose every selection is also made by the numpy reference on the same
    inputs (features on the host, float32 as the pruning engines read them)."""

    def __init__(self, pruner):
        self.pruner, self.records = pruner, []

    def select(self, method, keep, inputs, options):
        from hippo_trt.runtime.backends.arrays import to_host
        from hippo_trt.runtime.pruner import PruneInputs, ReferencePruner

        kept = np.asarray(self.pruner.select(method, keep, inputs, options))  # [k]
        host = PruneInputs(inputs.grid, np.asarray(inputs.importance), np.asarray(to_host(inputs.features), np.float32))
        expected = np.asarray(ReferencePruner().select(method, keep, host, options))  # [k]
        self.records.append(KeptCompare(method, len(kept), len(np.setxor1d(kept, expected))))
        return kept


def generate_all(pipeline, cases: Sequence[Case], clips: Mapping[str, Path], max_new_tokens: int) -> dict[Case, list[int]]:
    from hippo_trt.runtime.generation import GenerationConfig

    requests = {c.request: pipeline.prepare(clips[c.clip], c.prompt) for c in cases}
    tokens = {}
    for c in cases:
        config = GenerationConfig(max_new_tokens=max_new_tokens, mode=c.mode, gamma=GAMMA, prune=c.prune, keep=KEEP)
        tokens[c] = list(pipeline.generate(requests[c.request], config).tokens)
    return tokens


class Checks:
    """One run: the settings, the clips, and per pair its fp32 ONNX Runtime reference (work
    dir and tokens, made once and shared by the dtypes)."""

    def __init__(self, args: argparse.Namespace, clips: Mapping[str, Path]):
        self.args, self.clips = args, clips
        self.cases = make_cases(list(clips), list(QUESTIONS.values())[: args.prompts])
        self._works: dict[tuple[str, str], Path] = {}
        self._reference: dict[str, dict[Case, list[int]]] = {}

    def work(self, pair: PairSource, dtype: str) -> Path:
        """``pair`` exported in ``dtype`` and built for ONNX Runtime (once per run)."""
        from hippo_trt.export.api import export_work_dir
        from hippo_trt.export.ort_build import build_onnxruntime

        key = (pair.name, dtype)
        if key not in self._works:
            work = self.args.out / "work" / f"{pair.name}-{dtype}"
            export_work_dir(pair.target, work, draft=pair.draft, limits=pair.limits, progress=False, dtype=dtype, overwrite=True)
            build_onnxruntime(work, progress=False)
            self._works[key] = work
        return self._works[key]

    def reference_tokens(self, pair: PairSource) -> dict[Case, list[int]]:
        from hippo_trt.runtime.pipeline import Pipeline

        if pair.name not in self._reference:
            ort = Pipeline.load(self.work(pair, "fp32"), with_draft=True)
            self._reference[pair.name] = generate_all(ort, self.cases, self.clips, self.args.max_new_tokens)
        return self._reference[pair.name]

    def stages(self, pair: PairSource, dtype: str) -> Iterator[list[CheckResult]]:
        """Each of ``STAGES``' rows in turn."""
        from hippo_trt.export.trt_build import build_tensorrt
        from hippo_trt.export.trt_limits import BuildLimits

        work = self.work(pair, dtype)
        self.work(pair, "fp32")  # the token reference
        yield [CheckResult(pair.name, dtype, "export", PASS, f"validated against torch ({pair.note})")]
        record = build_tensorrt(work, BuildLimits(max_new_tokens=self.args.max_new_tokens, gamma=GAMMA), progress=False).engines["tensorrt"]
        yield [CheckResult(pair.name, dtype, "build", PASS, f"TensorRT {record['version']} on {record['gpu']}, {record['precision']}")]
        yield self.engine_checks(pair, dtype, work)
        yield self.token_checks(pair, dtype, work)

    def engine_checks(self, pair: PairSource, dtype: str, work: Path) -> list[CheckResult]:
        """``hippo-trt check WORK --backend tensorrt``: the static parser rules (information
        here: the real build above decides) and every engine output vs torch."""
        from hippo_trt.export.trt_compat import check_work_dir
        from hippo_trt.manifest import Manifest
        from hippo_trt.runtime.compare import compare_backend

        reports = check_work_dir(work, Manifest.load(work))
        flagged = [f"{r.graph}: {', '.join(r.rules_hit())}" for r in reports if not r.ok]
        detail = f"{len(reports) - len(flagged)}/{len(reports)} graphs clean" + (f"; {'; '.join(flagged)}" if flagged else "")
        compat = CheckResult(pair.name, dtype, "static parser rules", INFO if flagged else PASS, detail)
        return [compat, *engine_results(pair.name, dtype, compare_backend(work, "tensorrt"))]

    def token_checks(self, pair: PairSource, dtype: str, work: Path) -> list[CheckResult]:
        from hippo_trt.runtime.pipeline import Pipeline

        reference = self.reference_tokens(pair)
        trt = Pipeline.load(work, backend="tensorrt", with_draft=True)
        trt.pruner = recorder = KeptSetRecorder(trt.pruner)
        got = generate_all(trt, self.cases, self.clips, self.args.max_new_tokens)
        return [*token_results(pair.name, dtype, got, reference), kept_result(pair.name, dtype, recorder.records)]

    def run(self, bar) -> list[CheckResult]:
        results = []
        for name in self.args.pairs:
            bar.set_description(f"{name}: models")
            try:
                pair = pair_source(name, self.args.out / "models")
            except Exception as e:
                results.append(failed(name, "-", "models", e))
                bar.update(1 + len(STAGES) * len(self.args.dtypes))
                continue
            bar.update()
            for dtype in self.args.dtypes:
                results += run_stages(name, dtype, self.stages(pair, dtype), bar)
        return results


def _names(allowed: Sequence[str]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names or set(names) - set(allowed):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got '{text}'")
        return names

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="models, work dirs, clips and trt_gpu_check.json go here")
    p.add_argument("--pairs", type=_names(PAIRS), default=PAIRS, help="comma-separated: demo, llava, qwen")
    p.add_argument("--dtypes", type=_names(DTYPES), default=DTYPES, help="export dtypes, comma-separated: fp32, fp16")
    p.add_argument("--max-new-tokens", type=positive, default=24)
    p.add_argument("--clips", type=_names(CLIPS), default=CLIPS, help="comma-separated: static (tie-heavy), random")
    p.add_argument("--prompts", type=positive, default=2, help=f"how many prompts per clip (at most {len(QUESTIONS)})")
    return p.parse_args(argv)


def environment() -> dict[str, str]:
    """TensorRT's version and the GPU, or an EngineError saying which is missing."""
    trt = tensorrt_env.require_tensorrt()
    return {"tensorrt": str(trt.__version__), **tensorrt_env.gpu_identity()}


def main(argv: Sequence[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    try:
        env = environment()
    except EngineError as e:
        print(f"SKIP: {e}")
        return 0
    args.out = args.out.absolute()
    clips = write_clips(args.out / "clips", args.clips)
    checks = Checks(args, clips)
    with tqdm(total=len(args.pairs) * (1 + len(STAGES) * len(args.dtypes)), unit="step") as bar:
        results = clip_results(clips) + checks.run(bar)
    table, code = format_table(summary_rows(results)), exit_code(results)
    print(f"TensorRT {env['tensorrt']} on {env['gpu']} (sm {env['compute_capability']})\n\n{table}")
    print("\ntrt_gpu_check passed" if code == 0 else "\ntrt_gpu_check FAILED")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(
        args.out / "trt_gpu_check.json",
        {"passed": code == 0, "exit_code": code, "environment": env, "settings": settings, "results": [asdict(r) for r in results]},
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
