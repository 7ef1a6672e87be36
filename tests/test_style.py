"""The code stays in shape: ruff's lint and format (configured in pyproject.toml) are clean,
and no module grows past ~400 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")
MAX_LINES = 420  # "about 400": split a module by job before it grows past this


@pytest.fixture(scope="module")
def ruff():
    if not RUFF.exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return str(RUFF)


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(ruff, command):
    result = subprocess.run([ruff, *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_no_module_is_over_the_size_limit():
    sizes = {
        p.relative_to(ROOT): len(p.read_text().splitlines()) for d in ("export", "runtime", "hippo_trt") for p in (ROOT / d).rglob("*.py")
    }
    assert sizes, "no modules found"
    assert {str(p): n for p, n in sizes.items() if n > MAX_LINES} == {}
