"""An option a user sets per request (``--gamma`` on the command line, ``gamma`` in a serving
request, a Triton model's default): declared once, with its type, range and help, and checked
the same way on every surface."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hippo_trt.errors import OptionError


@dataclass(frozen=True)
class Option:
    """A dataclass field exposed as an option. ``choices``: the allowed values. ``low``/``high``:
    an inclusive range, except that ``open_low`` excludes ``low``. ``noun`` words the errors
    ("unknown prune method 'x'", "keep ratio must be in (0, 1]")."""

    name: str
    type: type
    help: str
    choices: tuple[str, ...] = ()
    noun: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """An OptionError naming the field if ``value`` is not allowed."""
        if self.choices and value not in self.choices:
            what = "{name}" + (f" {self.noun}" if self.noun else "")
            raise OptionError(self.name, f"unknown {what} '{value}' (available: {', '.join(self.choices)})")
        if self.type is float and isinstance(value, float) and not math.isfinite(value):
            raise OptionError(self.name, f"{{name}} must be a finite number, got {value!r}")
        if self.low is None or self.type not in (int, float):
            return
        below = value <= self.low if self.open_low else value < self.low
        if below or (self.high is not None and value > self.high):
            what = "{name}" + (f" {self.noun}" if self.noun else "")
            raise OptionError(self.name, what + " must be " + self._range() + f", got {value}")

    def _range(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.type is int:
            return f"between {self.low:g} and {self.high:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


def check_all(obj: object, options: tuple[Option, ...]) -> None:
    """Each option's check on the attribute of ``obj`` it names."""
    for option in options:
        option.check(getattr(obj, option.name))
