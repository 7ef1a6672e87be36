"""The supported model families, by the ``architectures`` name of their config.json.

Each family module gives the same functions: ``check_supported(config)``,
``vision_input(config, processor)`` (the settings saved in the manifest), ``grid_key``,
``dims(limits, vision_input)``, ``specs(decoder_shape, vision_input)``,
``vision_sample(vision_input, sizes, seed)`` and ``graph_modules(model)``; and
``decoder_shape(config)``, shared by both (the Qwen2 language model).
"""

from __future__ import annotations

from types import ModuleType

from hippo_trt.errors import ModelError
from . import llava_onevision, qwen2_5_vl

FAMILIES: dict[str, ModuleType] = {m.ARCHITECTURE: m for m in (llava_onevision, qwen2_5_vl)}


def family(architecture: str) -> ModuleType:
    if architecture not in FAMILIES:
        raise ModelError(f"unsupported architecture '{architecture}' (supported: {', '.join(FAMILIES)})")
    return FAMILIES[architecture]
