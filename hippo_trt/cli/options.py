"""The generation options as command-line flags, made from their one table
(runtime/generation.py ``OPTIONS``): ``--max-new-tokens`` for ``max_new_tokens``, and so on."""

from __future__ import annotations

import argparse
from typing import Any

from hippo_trt.errors import InputError, OptionError
from hippo_trt.options import Option
from hippo_trt.runtime.generation import OPTIONS, GenerationConfig, option_values, with_options
from hippo_trt.runtime.serving.protocol import FRAMES, RequestOptions

BY_NAME = {o.name: o for o in OPTIONS + (FRAMES,)}
COUNTS = frozenset({"max_new_tokens", "frames"})  # parsed as positive integers: argparse names the flag and the value


def add_flag(group, option: Option, default: Any) -> None:
    """One option's flag; ``default`` None leaves it unset (a server's default applies)."""
    if option.type is bool:
        group.add_argument(option.flag, action="store_true", default=default, help=option.help)
    else:
        kind = positive if option.name in COUNTS else option.type
        group.add_argument(option.flag, type=kind, default=default, help=option.help)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_generation_flags(group, names: tuple[str, ...] | None = None, server_defaults: bool = False) -> None:
    """Flags for the options ``names`` (default: all), defaulting to GenerationConfig's values,
    or to None with ``server_defaults`` (a client: the server's defaults apply)."""
    defaults = option_values(GenerationConfig())
    for option in OPTIONS:
        if names is None or option.name in names:
            add_flag(group, option, None if server_defaults else defaults[option.name])


def flag_error(error: OptionError) -> InputError:
    """The library's error re-worded with the option's flag."""
    return InputError(error.spelled(BY_NAME[error.name].flag if error.name in BY_NAME else error.name))


def generation_config(args: argparse.Namespace, base: GenerationConfig = GenerationConfig()) -> GenerationConfig:
    """``base`` with every generation option the command has a flag for."""
    values = {o.name: getattr(args, o.name) for o in OPTIONS if hasattr(args, o.name)}
    try:
        return with_options(base, values)
    except OptionError as e:
        raise flag_error(e) from None


def request_options(args: argparse.Namespace) -> RequestOptions:
    """The options a client sets (its flags left unset keep the server's defaults)."""
    return RequestOptions(**{name: getattr(args, name) for name in BY_NAME if hasattr(args, name)})
