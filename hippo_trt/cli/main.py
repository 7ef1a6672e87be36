"""``hippo-trt``: a thin command line over the Python API.

Every failure a user can cause ends in one line on stderr and a non-zero exit code. The command
modules import the export and runtime inside each command: those pull torch, transformers and
onnxscript (seconds), which ``--help`` and an argument error should not wait for.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from hippo_trt import __version__
from hippo_trt.cli import bench as bench_commands
from hippo_trt.cli import gpu, models, run, serve
from hippo_trt.cli.common import INTERNAL_ERROR, Parser
from hippo_trt.cli.options import flag_error
from hippo_trt.errors import HippoError, OptionError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hippo-trt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hippo-trt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    models.add_commands(sub)
    run.add_commands(sub)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True, parser_class=Parser)
    bench_commands.add_commands(bench)
    serve.add_commands(sub, bench)
    gpu.add_commands(bench)
    return parser


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except OptionError as e:  # the library names the field; the command line, its flag
        print(f"hippo-trt: error: {flag_error(e)}", file=sys.stderr)
        return e.exit_code
    except HippoError as e:
        print(f"hippo-trt: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hippo-trt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: still one line, with a way to see more
        if os.environ.get("HIPPO_TRT_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"hippo-trt: internal error: {type(e).__name__}: {first} (HIPPO_TRT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
