"""A plain (non-editable) install imports both mapped sub-packages and runs the console script."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_plain_install_imports_subpackages_and_runs_help(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies come from the running environment (a plain path entry: its .pth files,
    # including any editable finder for hippo_trt, are not processed).
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("hippo_trt", "export", "runtime", "models"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "demo-pair"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(source)], check=True, capture_output=True, text=True)
    probe = (
        "import hippo_trt, hippo_trt.export, hippo_trt.runtime, hippo_trt.export.api, hippo_trt.runtime.pipeline;"
        "import hippo_trt.models, hippo_trt.cli.demo; assert hippo_trt.cli.demo.Path;"
        "import hippo_trt.export.trt_compat as c; assert 'Add' in c.load_rules().supported;"
        "print(hippo_trt.__file__); print(hippo_trt.export.__file__); print(hippo_trt.runtime.__file__)"
    )
    out = subprocess.run([python, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    files = out.split()
    assert len(files) == 3 and all(f.startswith(site) for f in files), files
    help_out = subprocess.run([env_dir / "bin" / "hippo-trt", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert help_out.returncode == 0, help_out.stderr
    for command in ("export", "build", "run", "info", "demo"):
        assert command in help_out.stdout
