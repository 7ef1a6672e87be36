"""TensorRT engines from the build plan, through Polygraphy; kept thin on purpose.

Everything this module consumes is computed by ``trt_plan`` (pure, tested everywhere);
this module only turns each ``EnginePlan`` into Polygraphy loaders:

    NetworkFromOnnxPath(onnx, strongly_typed) -> CreateConfig(profiles=[Profile, ...], tf32, bf16 flag
        only for the one weakly typed precision, timing cache)
        -> EngineBytesFromNetwork(..., save_timing_cache) -> SaveBytes

Precision comes from the graph's types (``trt_precision``): dtype-native graphs are built as
strongly typed networks, so no FP16 flag can move a norm into fp16.

The parser opens the graph's file itself (``parse_from_file``), so its external data files
(``NAME.onnx.data``, the weights) resolve relative to it.

One Polygraphy Profile per ``ProfilePlan``, in the plan's order (TensorRT's profile indices:
the decoder's prefill is 0, its step 1; the runtime selects them by the same order). Each holds
both kinds of range: the shapes of the dynamic inputs (``ProfilePlan.profile``) and the values
of the shape-tensor inputs (``ProfilePlan.values``: the pruning graphs' keep_count and grid);
Polygraphy sets the latter with ``set_shape_input`` because TensorRT marks those inputs
``is_shape_tensor``. One engine per graph, so the decoder's weights are stored once for both
profiles. Engines land in ``ROLE/GRAPH.plan``: target/, draft/ and pruning/.

Engines are written into a staging dir and swapped into ``WORK/engines/tensorrt`` in one
step, under the work dir's manifest lock together with their record (merged into the manifest
as reloaded then: a concurrent onnxruntime build's record stays); the timing cache lives beside
them in the work dir and survives rebuilds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from hippo_trt import tensorrt_env
from hippo_trt.atomic import publish, staging
from hippo_trt.errors import EngineError
from hippo_trt.export.ort_build import merge_engines, same_export
from hippo_trt.export.trt_compat import check_work_dir
from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.export.trt_plan import BuildPlan, EnginePlan, plan_build
from hippo_trt.fingerprint import export_id, verify_export
from hippo_trt.manifest import FileRecord, Manifest, locked

TRT_DIR = "engines/tensorrt"
TIMING_CACHE = "engines/tensorrt-timing.cache"


def onnx_path(plan: EnginePlan, work: Path) -> str:
    """The graph's file path, for the parser to open itself (``parse_from_file``): its external
    data files resolve relative to it. Never parse bytes: the weights are not in the graph."""
    return str((Path(work) / plan.onnx).absolute())


def engine_loader(plan: EnginePlan, work: Path, out: Path, timing_cache: Path):
    """The Polygraphy loader chain that builds ``plan``'s engine into ``out`` when called:
    NetworkFromOnnxPath (strongly typed unless the precision is a builder flag) -> CreateConfig
    (profiles, the flag if any, TF32 as the precision states, the timing cache) ->
    EngineBytesFromNetwork -> SaveBytes. The engine is serialized, never deserialized here: no
    second copy of the weights in device memory during the build."""
    from polygraphy.backend.common import SaveBytes
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    profiles = []
    for p in plan.profiles:  # in order: profile i of the engine
        profile = Profile()
        for name, r in (*p.profile.items(), *p.values.items()):  # shapes, then shape-tensor values
            profile.add(name, min=r.min, opt=r.opt, max=r.max)
        profiles.append(profile)
    typing = plan.typing
    config = CreateConfig(
        tf32=typing.tf32,
        fp16=typing.builder_flag == "fp16",
        bf16=typing.builder_flag == "bf16",
        profiles=profiles,
        load_timing_cache=str(timing_cache) if timing_cache.is_file() else None,
    )
    network = NetworkFromOnnxPath(onnx_path(plan, work), strongly_typed=typing.strongly_typed)
    return SaveBytes(EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_cache)), path=str(out))


def _build_engine(plan: EnginePlan, work: Path, out: Path, timing_cache: Path) -> None:
    engine_loader(plan, work, out, timing_cache)()


def engines_record(plan: BuildPlan, work: Path, files: dict[tuple[str, str], Path], identity: dict, version: str, export: str) -> dict:
    """What the manifest keeps about a TensorRT build; the runtime refuses any mismatch."""
    by_role: dict[str, dict] = {}
    for (role, graph), path in files.items():
        by_role.setdefault(role, {})[graph] = asdict(FileRecord.of(work, path))
    return {
        "backend": "tensorrt",
        "version": version,
        **identity,
        "precision": plan.engines[0].precision,  # the target's (pruning engines are always fp32)
        "export_id": export,
        "plan": plan.to_json(),
        "files": by_role,
    }


def weak_precision(plan: BuildPlan) -> str | None:
    """The builder flag's precision when the model engines are built weakly typed (bf16), else None."""
    return next((e.typing.builder_flag for e in plan.engines if e.typing.builder_flag), None)


def recorded_weak_precision(manifest: Manifest) -> str | None:
    """``weak_precision`` of the plan the work dir's TensorRT engines were built from (None:
    strongly typed, or no TensorRT engines)."""
    engines = manifest.engines.get("tensorrt", {}).get("plan", {}).get("engines", [])
    typings = [e.get("typing", {}) for e in engines]
    return next((t["compute"] for t in typings if not t.get("strongly_typed", True)), None)


def refuse_incompatible(work: Path, manifest: Manifest, plan: BuildPlan) -> None:
    """An EngineError naming the first problem when any graph breaks a TensorRT rule (trt_compat)
    for the way the plan builds it: such an engine would fail to build or compute wrongly."""
    reports = check_work_dir(work, manifest, weak_precision=weak_precision(plan))
    problems = [p for r in reports for p in r.problems]
    if problems:
        raise EngineError(
            f"{len(problems)} TensorRT rule problem(s) in the exported graphs, first: {problems[0]} (all of them: hippo-trt check {work})"
        )


def build_tensorrt(work: Path, limits: BuildLimits, progress: bool = True) -> Manifest:
    """Build every planned engine; record TensorRT version, GPU, precision, profiles, sha256."""

    trt = tensorrt_env.require_tensorrt()
    work = Path(work)
    manifest = Manifest.load(work)
    verify_export(work, manifest)
    plan = plan_build(manifest, limits)
    refuse_incompatible(work, manifest, plan)
    identity = tensorrt_env.gpu_identity()
    final, timing_cache = work / TRT_DIR, work / TIMING_CACHE
    files: dict[tuple[str, str], Path] = {}
    with staging(final) as stage:
        for engine in tqdm(plan.engines, disable=not progress, unit="engine", desc="tensorrt"):
            out = stage / engine.role / f"{engine.graph}.plan"
            out.parent.mkdir(parents=True, exist_ok=True)
            _build_engine(engine, work, out, timing_cache)
            files[(engine.role, engine.graph)] = out.relative_to(stage)
        export = export_id(manifest)
        paths = {key: final / rel for key, rel in files.items()}
        return _commit(work, stage, export, lambda: engines_record(plan, work, paths, identity, trt.__version__, export))


def _commit(work: Path, stage: Path, export: str, make_record: Callable[[], dict]) -> Manifest:
    """Under the manifest lock: refuse a work dir re-exported during the build, swap the staged
    engines in, then record them (hashed in place) into the manifest as it is now."""
    with locked(work):
        current = Manifest.load(work)
        same_export(current, "tensorrt", export, work)
        publish(stage, work / TRT_DIR)
        manifest = merge_engines(current, "tensorrt", make_record(), work)
        manifest.save(work)
    return manifest
