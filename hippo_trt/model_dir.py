"""Local Hugging Face model directories: checks, hashing, loading model and processor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hippo_trt.errors import ModelError

# config.json architectures this toolkit exports; each is also the transformers class name
SUPPORTED = ("LlavaOnevisionForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")
HASHED_SUFFIXES = (".safetensors", ".json")


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
    def open(cls, path: str | Path) -> "ModelDir":
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
        if arch not in SUPPORTED:
            raise ModelError(
                f"unsupported architecture '{arch}' in '{path}' (supported: {', '.join(SUPPORTED)})"
            )
        if not sorted(path.glob("*.safetensors")):
            raise ModelError(f"'{path}' has no .safetensors weights")
        return cls(path=path.absolute(), architecture=arch, config=config)

    def weight_hash(self) -> str:
        """sha256 over the config and weight files (names and contents), in name order."""
        h = hashlib.sha256()
        for f in sorted(self.path.iterdir()):
            if f.is_file() and f.suffix in HASHED_SUFFIXES and not f.name.startswith("."):
                h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()

    def load_model(self):
        """The transformers model in fp32 eval mode; a corrupt checkpoint is a ModelError."""
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model = getattr(transformers, self.architecture).from_pretrained(
                self.path, dtype=torch.float32, attn_implementation="eager", local_files_only=True
            )
        except Exception as e:  # safetensors/transformers raise many types for bad files
            raise ModelError(f"cannot load model weights from '{self.path}': {_first_line(e)}") from None
        return model.eval()

    def load_processor(self):
        return load_processor(self.path)


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
