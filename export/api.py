"""``export_work_dir``: target (and draft) model dirs -> validated ONNX graphs + manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from hippo_trt import __version__
from hippo_trt.atomic import staged_dir
from hippo_trt.dims import DimsTable, ExportLimits
from hippo_trt.errors import ModelError
from hippo_trt.manifest import FileRecord, Manifest, ModelRecord
from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import default_frame_count
from .architectures import family, graph_feeds
from .onnx_export import OPSET, export_graph
from .validate import validate_graph

# Export traces at one set of sizes; validation runs at others, so a size baked into the
# graph by mistake shows up as a shape error or a mismatch.
# Every symbolic size is at least 2 at export (torch.export specialises 0 and 1); validation
# feeds both kinds of decoder call: a prefill (no past, importance scored, one logit row) and
# steps (a cached past, nothing scored, a logit row per token), at the sizes' extremes.
EXPORT_SIZES = {"batch": 1, "frames": 2, "seq": 24, "past": 16, "spec_len": 3, "scored_tokens": 6, "queries": 3, "prompt_rows": 5, "logit_rows": 3, "grid_t": 2, "grid_tokens": 6}
VALIDATION_SIZES = (
    {"batch": 1, "frames": 3, "seq": 37, "past": 0, "spec_len": 1, "scored_tokens": 11, "queries": 4, "prompt_rows": 11, "logit_rows": 1, "grid_t": 3, "grid_tokens": 12},
    {"batch": 1, "frames": 1, "seq": 5, "past": 29, "spec_len": 5, "scored_tokens": 0, "queries": 0, "prompt_rows": 1, "logit_rows": 5, "grid_t": 1, "grid_tokens": 4},
    {"batch": 1, "frames": 1, "seq": 1, "past": 3, "spec_len": 1, "scored_tokens": 0, "queries": 0, "prompt_rows": 1, "logit_rows": 1, "grid_t": 1, "grid_tokens": 4},
)


@dataclass(frozen=True)
class LoadedModel:
    role: str
    model_dir: ModelDir
    model: object
    processor: object

    @property
    def family(self):
        return family(self.model_dir.architecture)

    @property
    def vision_input(self) -> dict:
        return self.family.vision_input(self.model.config, self.processor)


def _sizes(base: Mapping[str, int], dims: DimsTable) -> dict[str, int]:
    sizes = {k: min(v, dims[k].max) for k, v in base.items() if k in dims.ranges}
    if "grid_t" not in dims.ranges:  # pooled frames + a newline (LLaVA-OneVision)
        sizes["vis_tokens"] = sizes["frames"] * (dims["vis_tokens"].min - 1) + 1
    return sizes


def _load(role: str, path: Path) -> LoadedModel:
    model_dir = ModelDir.open(path)
    model = model_dir.load_model()
    family(model_dir.architecture).check_supported(model.config)
    return LoadedModel(role, model_dir, model, model_dir.load_processor())


def _check_pair(target: LoadedModel, draft: LoadedModel) -> None:
    if target.model_dir.architecture != draft.model_dir.architecture:
        raise ModelError(
            f"draft and target must be of one family (draft: {draft.model_dir.architecture}, target: {target.model_dir.architecture})"
        )
    if target.processor.tokenizer.get_vocab() != draft.processor.tokenizer.get_vocab():
        raise ModelError("draft and target must share one tokenizer (their vocabularies differ)")
    if target.family.grid_key(target.vision_input) != draft.family.grid_key(draft.vision_input):
        raise ModelError("draft and target must give the same visual token grid per frame (image/patch sizes differ)")
    if target.model.config.video_token_id != draft.model.config.video_token_id:
        raise ModelError("draft and target must use the same video token id")


def _eos_ids(model) -> tuple[int, ...]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return tuple(int(e) for e in eos)


def _export_model(m: LoadedModel, stage: Path, dims: DimsTable, bar: tqdm) -> ModelRecord:
    out = stage / m.role
    out.mkdir(parents=True)
    m.processor.save_pretrained(out / "processor")
    config, arch, vision = m.model.config, m.family, m.vision_input
    vocab = config.text_config.vocab_size
    modules = arch.graph_modules(m.model)
    graphs, validation = {}, {}

    def sample(spec, sizes, seed):
        return graph_feeds(m.model_dir.architecture, vision, spec, _sizes(sizes, dims), vocab, seed)

    for spec in arch.specs(arch.decoder_shape(config), vision):
        bar.set_description(f"{m.role}/{spec.name}")
        path = out / spec.filename
        export_graph(modules[spec.name], spec, dims, sample(spec, EXPORT_SIZES, 0), path)
        diffs: dict[str, float] = {}
        for i, sizes in enumerate(VALIDATION_SIZES):
            fresh = sample(spec, sizes, 1 + i)
            for name, d in validate_graph(path, spec, modules[spec.name], fresh).items():
                diffs[name] = max(d, diffs.get(name, 0.0))
        graphs[spec.name] = FileRecord.of(stage, path)
        validation[spec.name] = diffs
        bar.update()
    return ModelRecord(
        source=str(m.model_dir.path),
        weight_hash=m.model_dir.weight_hash(),
        architecture=m.model_dir.architecture,
        processor_dir=f"{m.role}/processor",
        video_token_id=int(config.video_token_id),
        eos_token_ids=_eos_ids(m.model),
        default_frames=default_frame_count(m.processor),
        decoder=asdict(arch.decoder_shape(config)),
        vision_input=vision,
        graphs=graphs,
        validation=validation,
    )


def _export_pruning(stage: Path) -> dict[str, FileRecord]:
    """The pruning subgraphs (authored with onnxscript) that pick the draft's visual tokens."""
    from .prune_graph import GRAPHS, save_prune_graph

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


def export_work_dir(
    target: Path,
    out: Path,
    draft: Path | None = None,
    limits: ExportLimits = ExportLimits(),
    progress: bool = True,
) -> Manifest:
    """Export and validate every graph of the target (and draft); write ``out`` atomically."""
    loaded = [_load("target", target)] + ([_load("draft", draft)] if draft else [])
    if draft:
        _check_pair(*loaded)
    target_model = loaded[0]
    dims = target_model.family.dims(limits, target_model.vision_input)
    total = sum(len(m.family.specs(m.family.decoder_shape(m.model.config), m.vision_input)) for m in loaded)
    with staged_dir(out) as stage, tqdm(total=total, disable=not progress, unit="graph") as bar:
        models = {m.role: _export_model(m, stage, dims, bar) for m in loaded}
        manifest = Manifest(
            versions=_versions(),
            opset=OPSET,
            dims=dims.to_json(),
            limits=asdict(limits),
            models=models,
            pruning=_export_pruning(stage) if draft else {},
        )
        manifest.save(stage)
    return manifest
