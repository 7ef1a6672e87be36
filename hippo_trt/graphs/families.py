"""The supported model families, by the ``architectures`` name of their config.json.

Each family module gives the same functions: ``check_supported(config)``,
``prepare_processor(processor)`` (the processor the work dir keeps),
``vision_input(config, processor)`` (the settings saved in the manifest), ``grid_key``,
``dims(limits, vision_input)``, ``specs(decoder_shape, vision_input)``,
``vision_sample(vision_input, sizes, seed)`` and ``graph_modules(model)``; and
``decoder_shape(config)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import numpy as np

from hippo_trt.errors import ModelError
from hippo_trt.graphs import llava_onevision, qwen2_5_vl, qwen3_vl
from hippo_trt.graphs.specs import DecoderShape, GraphSpec
from hippo_trt.manifest import ModelRecord

FAMILIES: dict[str, ModuleType] = {m.ARCHITECTURE: m for m in (llava_onevision, qwen2_5_vl, qwen3_vl)}


def family(architecture: str) -> ModuleType:
    if architecture not in FAMILIES:
        raise ModelError(f"unsupported architecture '{architecture}' (supported: {', '.join(FAMILIES)})")
    return FAMILIES[architecture]


def language_decoder(model):
    """The model's language stack as ``qwen2_decoder.Qwen2Decoder`` runs it (Qwen3-VL's: ``Qwen3Decoder``),
    over its own weights: what the torch-cuda static decoder steps."""
    from hippo_trt.graphs.qwen2_decoder import Qwen2Decoder
    from hippo_trt.graphs.qwen3_decoder import Qwen3Decoder

    return (Qwen3Decoder if type(model).__name__ == qwen3_vl.MODEL_CLASS else Qwen2Decoder)(model)


def graph_feeds(architecture: str, vision_input: Mapping, spec, sizes: Mapping[str, int], vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Valid random feeds for one graph: the family's own for its vision graph (Qwen2.5-VL's
    window layout must be a real one), else random values of the spec's shapes."""
    custom = family(architecture).vision_sample(vision_input, sizes, seed) if spec.name == "vision" else None
    return custom if custom is not None else spec.sample_inputs(sizes, vocab, seed)


def specs_from_record(record: ModelRecord) -> dict[str, GraphSpec]:
    specs = family(record.architecture).specs(DecoderShape(**record.decoder), record.vision_input)
    return {spec.name: spec for spec in specs}
