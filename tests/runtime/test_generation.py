"""The generation options are declared once (runtime/generation.py OPTIONS) and every one
reaches every surface: the CLI's flags (run and client), a serving request's options and a
Triton model's defaults. Library errors name the field, the CLI its flag."""

from __future__ import annotations

import json

import pytest

from hippo_trt.cli.main import build_parser
from hippo_trt.cli.options import generation_config, request_options
from hippo_trt.errors import InputError, OptionError
from hippo_trt.options import Option
from hippo_trt.runtime.generation import OPTIONS, GenerationConfig, option_values, with_options
from hippo_trt.runtime.serving.protocol import RequestOptions
from hippo_trt.runtime.serving.triton_model import BackendParameters

DEFAULTS = option_values(GenerationConfig())
NAMES = [o.name for o in OPTIONS]


def other_value(option: Option):
    """A valid value other than the default."""
    default = DEFAULTS[option.name]
    if option.type is bool:
        return not default
    if option.choices:
        return next(c for c in option.choices if c != default)
    if option.type is int:
        return default + 1 if option.high is None or default + 1 <= option.high else default - 1
    high = option.high if option.high is not None else option.low + 2.0
    return next(v for v in ((option.low + high) / 2, (option.low + high) / 4) if v != default)


def flag_args(option: Option, value) -> list[str]:
    return [option.flag] if option.type is bool else [option.flag, str(value)]


def test_the_table_covers_every_generation_field():
    assert set(NAMES) == set(DEFAULTS) and len(NAMES) == len(set(NAMES))
    assert {"max_new_tokens", "mode", "gamma", "prune", "keep", "temperature", "top_k", "top_p", "seed"} <= set(NAMES)


@pytest.mark.parametrize("option", OPTIONS, ids=NAMES)
def test_every_option_is_a_flag_of_run(option):
    value = other_value(option)
    args = build_parser().parse_args(["run", "w", "--video", "v.mp4", "--prompt", "p", *flag_args(option, value)])
    config = generation_config(args)
    assert option_values(config)[option.name] == value
    assert {k: v for k, v in option_values(config).items() if k != option.name} == {k: v for k, v in DEFAULTS.items() if k != option.name}


@pytest.mark.parametrize("option", OPTIONS, ids=NAMES)
def test_every_option_is_a_flag_of_the_client_left_to_the_server_when_unset(option):
    value = other_value(option)
    parse = build_parser().parse_args
    unset = request_options(parse(["client", "--video", "v.mp4", "--prompt", "p"]))
    assert unset == RequestOptions()
    given = request_options(parse(["client", "--video", "v.mp4", "--prompt", "p", *flag_args(option, value)]))
    assert getattr(given, option.name) == value


@pytest.mark.parametrize("option", OPTIONS, ids=NAMES)
def test_every_option_is_a_request_option(option):
    value = other_value(option)
    config = RequestOptions.from_json(json.dumps({option.name: value})).apply(GenerationConfig())
    assert option_values(config)[option.name] == value


@pytest.mark.parametrize("option", OPTIONS, ids=NAMES)
def test_every_option_reaches_the_triton_defaults(option):
    value = other_value(option)
    params = BackendParameters(defaults=with_options(GenerationConfig(), {option.name: value})).to_parameters()
    assert json.loads(params["defaults"])[option.name] == value
    assert option_values(BackendParameters.from_parameters(params).defaults)[option.name] == value


@pytest.mark.parametrize(
    ("values", "library", "cli"),
    [
        ({"gamma": 40}, "gamma must be between 1 and 32, got 40", "--gamma must be between 1 and 32, got 40"),
        ({"mode": "beam"}, "unknown mode 'beam'", "unknown --mode 'beam'"),
        ({"prune": "magic"}, "unknown prune method 'magic'", "unknown --prune method 'magic'"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0", "--top-p must be in (0, 1], got 0.0"),
        ({"temperature": 101.0}, "temperature must be in [0, 100], got 101.0", "--temperature must be in [0, 100], got 101.0"),
        ({"keep": 1.5}, "keep ratio must be in (0, 1], got 1.5", "--keep ratio must be in (0, 1], got 1.5"),
    ],
)
def test_library_errors_name_the_field_and_the_cli_its_flag(values, library, cli):
    with pytest.raises(OptionError) as error:
        with_options(GenerationConfig(), values)
    assert str(error.value).startswith(library)
    flags = [a for name, value in values.items() for a in flag_args(next(o for o in OPTIONS if o.name == name), value)]
    args = build_parser().parse_args(["run", "w", "--video", "v.mp4", "--prompt", "p", *flags])
    with pytest.raises(InputError) as flagged:
        generation_config(args)
    assert str(flagged.value).startswith(cli)
