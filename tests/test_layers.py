"""The layers hold (import-linter contracts in pyproject.toml), and a reintroduced import against
them is caught. import-linter reads the package as installed, where export/ and runtime/ are
hippo_trt.export and hippo_trt.runtime, so each test stages that layout from the sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def staged(tmp: Path) -> Path:
    """The installed package layout (without the demo pair's files) under ``tmp``."""
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "hippo_trt", tmp / "hippo_trt", ignore=skip)
    for sub in ("export", "runtime"):
        shutil.copytree(ROOT / sub, tmp / "hippo_trt" / sub, ignore=skip)
    return tmp


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def add_import(tree: Path, module: str, statement: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{statement}\n")


@pytest.fixture(scope="module")
def lint_ready():
    if not LINT.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")


def test_every_contract_is_kept(tmp_path, lint_ready):
    result = lint(staged(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("hippo_trt.runtime.decoding.verify", "from hippo_trt.export import validate", "cli > export | runtime"),
        ("hippo_trt.export.api", "import hippo_trt.runtime.pipeline", "cli > export | runtime"),
        ("hippo_trt.manifest", "from hippo_trt.runtime.backends import loader", "cli > export | runtime"),
        ("hippo_trt.graphs.specs", "import hippo_trt.cli.main", "cli > export | runtime"),
        ("hippo_trt.runtime.backends.arrays", "from hippo_trt.runtime.decoding import generate", "backends: the loader"),
        ("hippo_trt.runtime.decoding.decoder", "from hippo_trt.runtime import pipeline", "runtime: bench"),
    ],
)
def test_an_import_against_the_layers_is_caught(tmp_path, lint_ready, module, statement, contract):
    tree = staged(tmp_path)
    add_import(tree, module, statement)
    result = lint(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken and module in broken, result.stdout[-3000:]
