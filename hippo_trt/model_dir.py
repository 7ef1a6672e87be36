"""Local Hugging Face model directories: checks, hashing, loading model and processor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hippo_trt.errors import InputError, ModelError

# config.json architectures this toolkit exports; each is also the transformers class name
SUPPORTED = ("LlavaOnevisionForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration")
# architectures refused with a reason of their own
REFUSED = {
    "Qwen3VLMoeForConditionalGeneration": (
        "its decoder is mixture-of-experts (routed expert MLPs), which the exported decoder graph does not have; "
        "the dense Qwen3VLForConditionalGeneration checkpoints (2B, 4B, 8B, 32B) are supported"
    ),
}
HASHED_SUFFIXES = (".safetensors", ".json")
SHARD_INDEX = "model.safetensors.index.json"  # a sharded checkpoint's map: tensor name -> shard file
# dtypes a model is loaded and exported in: our name -> torch's attribute name
EXPORT_DTYPES = ("fp32", "fp16", "bf16")
_TORCH_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(name: str):
    """The torch dtype of an export dtype name ("fp32", "fp16", "bf16"); InputError otherwise."""
    import torch

    if name not in _TORCH_DTYPE_NAMES:
        raise InputError(f"unknown dtype '{name}' (choose one of: {', '.join(EXPORT_DTYPES)})")
    return getattr(torch, _TORCH_DTYPE_NAMES[name])


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    """A checked model directory: config parsed, weights present, architecture supported."""

    path: Path
    architecture: str
    config: dict

    @classmethod
    def open(cls, path: str | Path) -> ModelDir:
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"model directory '{path}' does not exist or is not a directory")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"'{path}' has no config.json: not a Hugging Face model directory")
        try:
            config = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"'{config_file}' is not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise ModelError(f"'{config_file}' does not hold a JSON object")
        archs = config.get("architectures") or [config.get("model_type", "unknown")]
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise ModelError(f"'{config_file}' has a malformed 'architectures' field (expected a list of names)")
        arch = archs[0]
        if arch in REFUSED:
            raise ModelError(f"unsupported architecture '{arch}' in '{path}': {REFUSED[arch]}")
        if arch not in SUPPORTED:
            raise ModelError(f"unsupported architecture '{arch}' in '{path}' (supported: {', '.join(SUPPORTED)})")
        _check_weights(path)
        return cls(path=path.absolute(), architecture=arch, config=config)

    def weight_hash(self) -> str:
        """sha256 over the config and weight files (names and contents), in name order: every
        shard of a sharded checkpoint and its index included; each file is read in chunks."""
        h = hashlib.sha256()
        for f in sorted(self.path.iterdir()):
            if f.is_file() and f.suffix in HASHED_SUFFIXES and not f.name.startswith("."):
                h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()

    def load_model(self, dtype: str = "fp32"):
        """The transformers model in eval mode with its weights in ``dtype`` (one of
        EXPORT_DTYPES); a corrupt checkpoint is a ModelError.

        Weights stored in another dtype are loaded as stored (safetensors maps the files, no
        copy) and converted one tensor at a time, each stored tensor released as soon as its
        copy exists: loading straight in ``dtype`` converts the whole checkpoint while its files
        stay mapped (measured: fp32 from a bf16 checkpoint peaked at 1.5x the fp32 weights)."""
        torch_type = torch_dtype(dtype)
        stored = self.stored_dtype()
        model = self._from_pretrained(stored or torch_type)
        if stored is not None and stored != torch_type:
            _convert_in_place(model, torch_type)
        return model.eval()

    def stored_dtype(self):
        """The torch dtype of the checkpoint's floating weights (its first file's header), or None."""
        import torch

        names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
        for f in sorted(self.path.glob("*.safetensors")):
            try:
                with open(f, "rb") as fh:
                    size = int.from_bytes(fh.read(8), "little")
                    header = json.loads(fh.read(size)) if 0 < size < 1 << 26 else {}
            except (OSError, ValueError):
                return None  # transformers names the corrupt file
            kinds = [v.get("dtype") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
            floats = [names[k] for k in kinds if k in names]
            return max(set(floats), key=floats.count) if floats else None
        return None

    def _from_pretrained(self, torch_type):
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            return getattr(transformers, self.architecture).from_pretrained(
                self.path, dtype=torch_type, attn_implementation="eager", local_files_only=True
            )
        except Exception as e:  # safetensors/transformers raise many types for bad files
            raise ModelError(f"cannot load model weights from '{self.path}': {_first_line(e)}") from None

    def load_config(self):
        """The transformers config (no weights loaded); an unreadable one is a ModelError."""
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(self.path, local_files_only=True)
        except Exception as e:  # transformers raises several types for a bad config
            raise ModelError(f"cannot read the config of '{self.path}': {_first_line(e)}") from None

    def load_processor(self):
        return load_processor(self.path)


def _convert_in_place(model, torch_type) -> None:
    """Every floating parameter and buffer of ``model`` in ``torch_type``, one tensor at a time
    (a tied weight is converted once and stays tied)."""
    done = {}
    for module in model.modules():
        for _name, p in list(module.named_parameters(recurse=False)):
            if p.is_floating_point() and p.dtype != torch_type:
                if id(p) not in done:
                    p.data = p.data.to(torch_type)
                    done[id(p)] = p
        for name, b in list(module.named_buffers(recurse=False)):
            if b is not None and b.is_floating_point() and b.dtype != torch_type:
                module._buffers[name] = b.to(torch_type)


def _check_weights(path: Path) -> None:
    """Weights are present: ``model.safetensors``, or (a sharded checkpoint) every shard its
    index names, as transformers looks for them; else some .safetensors file."""
    index = path / SHARD_INDEX
    if index.is_file() and not (path / "model.safetensors").is_file():
        _check_shards(index, _shard_names(index))
    elif not sorted(path.glob("*.safetensors")):
        raise ModelError(f"'{path}' has no .safetensors weights")


def _shard_names(index: Path) -> list[str]:
    """The shard files a ``model.safetensors.index.json`` maps tensors to, in order."""
    try:
        obj = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"shard index '{index}' is not valid JSON ({_first_line(e)}); download it again") from None
    weight_map = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelError(f"shard index '{index}' has no 'weight_map' of tensor names to shard files; download it again")
    return sorted(set(weight_map.values()))


def _check_shards(index: Path, shards: list[str]) -> None:
    for name in shards:
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise ModelError(f"shard index '{index}' names '{name}', not a .safetensors file beside it")
    missing = [name for name in shards if not (index.parent / name).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelError(
            f"shard '{missing[0]}'{more} named by '{index}' is missing from '{index.parent}'; "
            "download the missing shard files of the checkpoint"
        )


def load_processor(path: Path):
    """The model's own HF processor (tokenizer + video processor) from a local directory."""
    from transformers import AutoProcessor
    from transformers.utils import logging as hf_logging

    if not Path(path).is_dir():
        raise ModelError(f"processor directory '{path}' is missing (tokenizer and processor files)")
    hf_logging.set_verbosity_error()
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as e:
        raise ModelError(f"cannot load the processor from '{path}': {_first_line(e)}") from None
    if not hasattr(processor, "video_processor") or not hasattr(processor, "tokenizer"):
        raise ModelError(f"'{path}' has no video processor and tokenizer (processor files missing)")
    return processor


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
