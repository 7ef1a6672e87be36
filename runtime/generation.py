"""What one generation does (``GenerationConfig``) and the options a user sets per request,
declared once (``OPTIONS``): the CLI's flags (hippo_trt/cli/options.py), the serving request
options (serving/protocol.py) and the Triton models' defaults (serving/triton_model.py) are all
made from this table, so adding an option is one edit here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from hippo_trt.errors import InputError
from hippo_trt.options import Option, check_all
from hippo_trt.pruning import METHODS as PRUNE_METHODS
from hippo_trt.pruning import PruneOptions
from hippo_trt.runtime.decoding.verify import SAMPLING_OPTIONS, Sampling

MODES = ("ar", "sd", "parallel")
MAX_NEW_TOKENS = 4096
MAX_GAMMA = 32

GENERATION_OPTIONS = (
    Option("max_new_tokens", int, "tokens to generate at most", low=1, high=MAX_NEW_TOKENS),
    Option(
        "mode", str, "ar (target alone), sd (draft proposes, target verifies) or parallel (both overlapped on two lanes)", choices=MODES
    ),
    Option("gamma", int, "draft tokens per target verification", low=1, high=MAX_GAMMA),
    Option("prune", str, f"which visual tokens the draft reads: {', '.join(PRUNE_METHODS)}", choices=PRUNE_METHODS, noun="method"),
    Option("keep", float, "fraction of visual tokens the draft keeps, in (0, 1]", noun="ratio", low=0.0, high=1.0, open_low=True),
    Option(
        "adaptive_gamma",
        bool,
        "draft length follows the verdicts (+2 after full acceptance, -1 after a rejection), at most --gamma",
    ),
    Option("pre_verify", bool, "parallel: after a rejection, verify as soon as one draft token exists"),
)
OPTIONS = GENERATION_OPTIONS + SAMPLING_OPTIONS  # every per-request option, in one order
SAMPLING_NAMES = frozenset(o.name for o in SAMPLING_OPTIONS)


@dataclass(frozen=True)
class GenerationConfig:
    """``mode`` ar: the target alone; sd: the draft (reading the ``prune``d ``keep`` fraction of
    the visual tokens, scored as ``prune_options`` say) proposes ``gamma`` tokens per target
    verification; parallel: the same with drafting and verification overlapped on two lanes
    (``pre_verify``: see parallel.py). The pruned draft reads its tokens at their original
    position ids, or, with ``repack``, at contiguous ones as SpecVLM does. ``adaptive_gamma``:
    the draft length follows the verdicts, at most ``gamma`` (see generate.DraftLength)."""

    max_new_tokens: int = 64
    mode: str = "ar"
    gamma: int = 4
    sampling: Sampling = Sampling()
    prune: str = "none"
    keep: float = 1.0
    pre_verify: bool = False
    prune_options: PruneOptions = PruneOptions()
    repack: bool = False
    adaptive_gamma: bool = False

    def __post_init__(self) -> None:
        check_all(self, GENERATION_OPTIONS)

    @property
    def speculative(self) -> bool:
        return self.mode != "ar"


def option_values(config: GenerationConfig) -> dict[str, Any]:
    """Every option's value in ``config``, by name (sampling's flattened in)."""
    return {o.name: getattr(config.sampling if o.name in SAMPLING_NAMES else config, o.name) for o in OPTIONS}


def with_options(config: GenerationConfig, values: Mapping[str, Any]) -> GenerationConfig:
    """``config`` with some options set by name; each is checked (an OptionError names it)."""
    unknown = set(values) - {o.name for o in OPTIONS}
    if unknown:
        raise InputError(f"not generation options: {', '.join(sorted(unknown))} (known: {', '.join(o.name for o in OPTIONS)})")
    sampling = {k: v for k, v in values.items() if k in SAMPLING_NAMES}
    top = {k: v for k, v in values.items() if k not in SAMPLING_NAMES}
    return replace(config, sampling=replace(config.sampling, **sampling), **top)
