"""One error family for everything a user can get wrong or act on.

Every message is one line that says what is wrong and, where there is one, what to do.
The CLI prints ``hippo-trt: error: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations


class HippoError(Exception):
    """Base of every error hippo-trt raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:  # keep messages on one line
        return " ".join(super().__str__().split())


class InputError(HippoError):
    """A file or option given by the user is missing, unreadable or out of range."""

    exit_code = 2


class VideoError(InputError):
    """A video cannot be decoded into frames."""


class ModelError(InputError):
    """A model directory is missing, corrupt or of an unsupported architecture."""


class ProfileError(InputError):
    """A shape lies outside the exported or built range of a symbolic dim."""


class WorkDirError(HippoError):
    """A work dir is missing, stale, tampered with or built for something else."""

    exit_code = 3


class ExportValidationError(HippoError):
    """An exported graph disagrees with torch beyond the stated tolerance."""

    exit_code = 4

    def __init__(self, graph: str, output: str, max_diff: float, tolerance: str):
        self.graph, self.output, self.max_diff = graph, output, max_diff
        super().__init__(
            f"exported graph '{graph}' output '{output}' differs from torch: max |diff| = {max_diff:.3g} exceeds tolerance {tolerance}"
        )


class EngineError(HippoError):
    """An engine cannot be loaded or run."""

    exit_code = 5


class ServingError(HippoError):
    """A server cannot start or stay up, or a served request failed (the server's one-line reason)."""

    exit_code = 6


class OptionError(InputError):
    """An option out of range. The library's message names the option's field (``gamma``); a
    surface that spells it otherwise (the CLI's ``--gamma``) re-words it with ``spelled``."""

    def __init__(self, name: str, template: str):
        self.name, self.template = name, template
        super().__init__(template.format(name=name))

    def spelled(self, spelling: str) -> str:
        return self.template.format(name=spelling)
