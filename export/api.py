"""``export_work_dir``: target (and draft) model dirs -> validated ONNX graphs + manifest."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from hippo_trt import __version__
from hippo_trt.atomic import publish, staging
from hippo_trt.dims import DimsTable, ExportLimits
from hippo_trt.errors import InputError, ModelError
from hippo_trt.export.onnx_export import OPSET, export_graph
from hippo_trt.export.prune_graph import save_prune_graph
from hippo_trt.export.trt_compat import check_work_dir
from hippo_trt.export.validate import compare_outputs, reference_outputs
from hippo_trt.graphs.families import family, graph_feeds
from hippo_trt.graphs.numerics import TOLERANCES
from hippo_trt.graphs.specs import PRUNE_GRAPHS as GRAPHS
from hippo_trt.manifest import FORMAT, MANIFEST, FileRecord, Manifest, ModelRecord, is_work_dir, locked
from hippo_trt.model_dir import ModelDir, torch_dtype
from hippo_trt.preprocess import default_frame_count

# Export traces at one set of sizes; validation runs at others, so a size baked into the
# graph by mistake shows up as a shape error or a mismatch.
# Every symbolic size is at least 2 at export (torch.export specialises 0 and 1); validation
# feeds both kinds of decoder call: a prefill (no past, importance scored, one logit row) and
# steps (a cached past, nothing scored, a logit row per token), at the sizes' extremes.
EXPORT_SIZES = {
    "batch": 1,
    "frames": 2,
    "seq": 24,
    "past": 16,
    "spec_len": 3,
    "scored_tokens": 6,
    "queries": 3,
    "prompt_rows": 5,
    "logit_rows": 3,
    "grid_t": 2,
    "grid_tokens": 6,
}
VALIDATION_SIZES = (
    {
        "batch": 1,
        "frames": 3,
        "seq": 37,
        "past": 0,
        "spec_len": 1,
        "scored_tokens": 11,
        "queries": 4,
        "prompt_rows": 11,
        "logit_rows": 1,
        "grid_t": 3,
        "grid_tokens": 12,
    },
    {
        "batch": 1,
        "frames": 1,
        "seq": 5,
        "past": 29,
        "spec_len": 5,
        "scored_tokens": 0,
        "queries": 0,
        "prompt_rows": 1,
        "logit_rows": 5,
        "grid_t": 1,
        "grid_tokens": 4,
    },
    {
        "batch": 1,
        "frames": 1,
        "seq": 1,
        "past": 3,
        "spec_len": 1,
        "scored_tokens": 0,
        "queries": 0,
        "prompt_rows": 1,
        "logit_rows": 1,
        "grid_t": 1,
        "grid_tokens": 4,
    },
)


@dataclass(frozen=True)
class Source:
    """One model to export, before its weights are loaded: its dir, config and processor."""

    role: str
    model_dir: ModelDir
    config: object  # the transformers config
    processor: object

    @property
    def family(self):
        return family(self.model_dir.architecture)

    @property
    def vision_input(self) -> dict:
        return self.family.vision_input(self.config, self.processor)


def _sizes(base: Mapping[str, int], dims: DimsTable) -> dict[str, int]:
    sizes = {k: min(v, dims[k].max) for k, v in base.items() if k in dims.ranges}
    if "grid_t" not in dims.ranges:  # pooled frames + a newline (LLaVA-OneVision)
        sizes["vis_tokens"] = sizes["frames"] * (dims["vis_tokens"].min - 1) + 1
    return sizes


def _source(role: str, path: Path) -> Source:
    """The model's dir, config and processor, checked; its weights stay on disk until its turn."""
    model_dir = ModelDir.open(path)
    config = model_dir.load_config()
    arch = family(model_dir.architecture)
    arch.check_supported(config)
    return Source(role, model_dir, config, arch.prepare_processor(model_dir.load_processor()))


def _check_pair(target: Source, draft: Source) -> None:
    if target.model_dir.architecture != draft.model_dir.architecture:
        raise ModelError(
            f"draft and target must be of one family (draft: {draft.model_dir.architecture}, target: {target.model_dir.architecture})"
        )
    if target.processor.tokenizer.get_vocab() != draft.processor.tokenizer.get_vocab():
        raise ModelError("draft and target must share one tokenizer (their vocabularies differ)")
    if target.family.grid_key(target.vision_input) != draft.family.grid_key(draft.vision_input):
        raise ModelError("draft and target must give the same visual token grid per frame (image/patch sizes differ)")
    if target.config.video_token_id != draft.config.video_token_id:
        raise ModelError("draft and target must use the same video token id")


def _eos_ids(model) -> tuple[int, ...]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return tuple(int(e) for e in eos)


@dataclass(frozen=True)
class _Exported:
    """A graph written to disk, with the torch outputs it must reproduce (the validation cases)."""

    spec: object
    path: Path
    cases: list


def _export_graphs(role: str, source: Path, out: Path, dims: Mapping, dtype: str) -> tuple[list[_Exported], tuple[int, ...]]:
    """In a process of its own (``_isolated``): load the model in ``dtype``, export each graph
    and compute its validation outputs. When the process ends, every byte of the model and of
    torch.export's traces is gone (in-process, the traces keep the weights alive)."""
    m, dims = _source(role, source), DimsTable.from_json(dims)
    model = m.model_dir.load_model(dtype)
    torch_type = torch_dtype(dtype)
    vocab = m.config.text_config.vocab_size
    modules = m.family.graph_modules(model)
    exported = []
    for spec in m.family.specs(m.family.decoder_shape(m.config), m.vision_input):

        def sample(sizes, seed):
            return graph_feeds(m.model_dir.architecture, m.vision_input, spec, _sizes(sizes, dims), vocab, seed)

        path = out / spec.filename
        export_graph(modules[spec.name], spec, dims, sample(EXPORT_SIZES, 0), path, torch_type)
        cases = []
        for i, sizes in enumerate(VALIDATION_SIZES):
            feeds = sample(sizes, 1 + i)
            cases.append((feeds, reference_outputs(spec, modules[spec.name], feeds, torch_type)))
        exported.append(_Exported(spec, path, cases))
        gc.collect()
    return exported, _eos_ids(model)


def _isolated(fn, *args):
    """``fn(*args)`` in a fresh Python process (its memory returns to the system when it ends);
    its result comes back pickled, and so do its errors, which are raised here. A plain
    subprocess, not multiprocessing: a user's script needs no ``__main__`` guard."""
    with tempfile.TemporaryDirectory(prefix="hippo-export-") as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((fn, args)))
        code = "import sys; from hippo_trt.export.api import _run_job; _run_job(sys.argv[1], sys.argv[2])"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(job), str(result)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if not result.is_file():
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise ModelError(f"the export process died ({last}); free memory, or export with --dtype fp16")
        ok, value = pickle.loads(result.read_bytes())
    if not ok:
        raise value
    return value


def _in_process(fn, *args):
    return fn(*args)


def _run_job(job: str, result: str) -> None:
    """The child's side of ``_isolated``."""
    fn, args = pickle.loads(Path(job).read_bytes())
    try:
        out = (True, fn(*args))
    except Exception as e:  # sent back whole: the parent raises it
        out = (False, e)
    try:
        data = pickle.dumps(out)
    except Exception:  # an exception that does not pickle goes back as its type and message
        data = pickle.dumps((False, RuntimeError(f"{type(out[1]).__name__}: {out[1]}")))
    Path(result).write_bytes(data)


def _export_model(m: Source, stage: Path, dims: DimsTable, dtype: str, bar: tqdm, run) -> ModelRecord:
    """``run(fn, *args)``: where the graphs are exported (``_isolated`` or ``_in_process``)."""
    out = stage / m.role
    out.mkdir(parents=True)
    m.processor.save_pretrained(out / "processor")
    bar.set_description(f"{m.role} (export)")
    exported, eos = run(_export_graphs, m.role, m.model_dir.path, out, dims.to_json(), dtype)
    graphs, validation = {}, {}
    for e in exported:  # ONNX Runtime against torch, one graph's session at a time
        bar.set_description(f"{m.role}/{e.spec.name} (validate)")
        validation[e.spec.name] = compare_outputs(e.path, e.spec, e.cases, TOLERANCES[dtype])
        graphs[e.spec.name] = FileRecord.of(stage, e.path)
        bar.update()
    return ModelRecord(
        source=str(m.model_dir.path),
        weight_hash=m.model_dir.weight_hash(),
        architecture=m.model_dir.architecture,
        processor_dir=f"{m.role}/processor",
        video_token_id=int(m.config.video_token_id),
        eos_token_ids=eos,
        default_frames=min(default_frame_count(m.processor), dims["frames"].max),  # a video's frames when --frames is not given
        decoder=asdict(m.family.decoder_shape(m.config)),
        vision_input=m.vision_input,
        graphs=graphs,
        validation=validation,
        dtype=dtype,
    )


def _export_pruning(stage: Path) -> dict[str, FileRecord]:
    """The pruning subgraphs (authored with onnxscript) that pick the draft's visual tokens."""

    return {name: FileRecord.of(stage, save_prune_graph(stage / "pruning" / f"{name}.onnx", name)) for name in GRAPHS}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    return {
        "hippo_trt": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": onnxscript.__version__,
    }


def _guarded_dirs() -> set[Path]:
    """Dirs that ``--out`` may never be: the current dir's ancestors, the home dir and its."""
    dirs = set(Path.cwd().resolve().parents)
    with contextlib.suppress(RuntimeError, KeyError):  # no home dir known
        home = Path.home().resolve()
        dirs |= {home, *home.parents}
    return dirs


def check_out(out: Path, models: Sequence[Path | None], overwrite: bool = False) -> None:
    """An InputError when replacing ``out`` would delete what is not a work dir: a model dir or a
    dir holding one, an ancestor of the current dir or the home dir, a file, or (unless
    ``overwrite``) a non-empty dir without a readable manifest of this format."""
    resolved = Path(out).resolve()
    for model in filter(None, models):
        if resolved == Path(model).resolve() or resolved in Path(model).resolve().parents:
            raise InputError(f"--out '{out}' is or contains the model dir '{model}'; pick another --out")
    if resolved in _guarded_dirs():
        raise InputError(f"--out '{out}' contains the current directory or the home directory; pick another --out")
    if os.path.lexists(out) and not resolved.is_dir():
        raise InputError(f"--out '{out}' is not a directory; give a directory path for the work dir")
    if not overwrite and resolved.is_dir() and any(resolved.iterdir()) and not is_work_dir(resolved):
        raise InputError(
            f"--out '{out}' exists, is not empty and is not a hippo-trt work dir (no readable {MANIFEST} of format "
            f"{FORMAT}); pass --overwrite to replace it and everything in it, or pick another --out"
        )


def _replace_out(stage: Path, out: Path, models: Sequence[Path | None], overwrite: bool) -> None:
    """Swap the export into ``out``, checked again (it may have changed during the export); an old
    work dir's manifest lock is held meanwhile, so no build records into it half-way."""
    check_out(out, models, overwrite)
    with locked(out) if is_work_dir(out) else contextlib.nullcontext():
        publish(stage, out)


def export_work_dir(
    target: Path,
    out: Path,
    draft: Path | None = None,
    limits: ExportLimits = ExportLimits(),
    progress: bool = True,
    dtype: str = "fp32",
    overwrite: bool = False,
    isolate: bool = True,
) -> Manifest:
    """Export and validate every graph of the target (and draft) with weights in ``dtype``
    (fp32, fp16, bf16); write ``out`` atomically. The models are loaded one after the other,
    each in a process of its own (``isolate``; False: in this one, faster for small models,
    but the memory an export took is not handed back).
    An existing work dir at ``out`` is replaced; anything else there only with ``overwrite``,
    and never the model dirs or a dir holding them (``check_out``)."""
    torch_dtype(dtype)  # an unknown dtype is refused before anything loads
    if dtype == "bf16":
        raise InputError(
            "--dtype bf16 cannot be exported: ONNX opset 18 has no bfloat16 Conv (the vision towers' patch "
            "embedding) and ONNX Runtime's CPU kernels could not validate it; export --dtype fp16, or fp32 and "
            "build TensorRT engines with --precision bf16"
        )
    check_out(out, (target, draft), overwrite)
    sources = [_source("target", target)] + ([_source("draft", draft)] if draft else [])
    if draft:
        _check_pair(*sources)
    dims = sources[0].family.dims(limits, sources[0].vision_input)
    total = sum(len(m.family.specs(m.family.decoder_shape(m.config), m.vision_input)) for m in sources)
    with staging(out) as stage, tqdm(total=total, disable=not progress, unit="graph") as bar:
        run = _isolated if isolate else _in_process
        models = {m.role: _export_model(m, stage, dims, dtype, bar, run) for m in sources}
        manifest = Manifest(
            versions=_versions(),
            opset=OPSET,
            dims=dims.to_json(),
            limits={**asdict(limits), "max_seq": dims["seq"].max},  # as resolved for the target
            models=models,
            pruning=_export_pruning(stage) if draft else {},
        )
        manifest.save(stage)
        warn_tensorrt_problems(stage, manifest, out)
        _replace_out(stage, out, (target, draft), overwrite)
    return manifest


def warn_tensorrt_problems(stage: Path, manifest: Manifest, out: Path) -> list[str]:
    """Run the TensorRT rules (``trt_compat``) over every exported graph; print each problem as a
    one-line warning (the export stays usable with ONNX Runtime; ``build --backend tensorrt``
    refuses it). Returns the problems."""
    problems = [p for r in check_work_dir(stage, manifest) for p in r.problems]
    for p in problems:
        print(f"hippo-trt: warning: TensorRT rule: {p} (hippo-trt check {out})", file=sys.stderr)
    return problems
