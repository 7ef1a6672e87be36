"""The ``hippo-trt`` command line (the console script's entry point is ``hippo_trt.cli:main``)."""

from hippo_trt.cli.main import main

__all__ = ["main"]
