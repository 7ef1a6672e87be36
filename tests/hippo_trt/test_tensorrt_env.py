"""tensorrt_env: the TensorRT versions hippo-trt runs on, refused in one line outside them."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from hippo_trt import tensorrt_env
from hippo_trt.errors import EngineError


@pytest.mark.parametrize("version", ["10.3.0.26", "10.13.0.35", "10.16.1"])
def test_tensorrt_10_3_and_newer_10_are_taken(version, monkeypatch):
    module = SimpleNamespace(__version__=version)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    assert tensorrt_env.require_tensorrt() is module


@pytest.mark.parametrize("version", ["11.4.0.106", "10.2.0", "10.0.1.6", "8.6.1", "unknown"])
def test_other_tensorrt_versions_are_refused_with_what_to_install(version, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__=version))
    with pytest.raises(EngineError) as e:
        tensorrt_env.require_tensorrt()
    message = str(e.value)
    assert f"TensorRT {version} is not supported" in message and "10.3 <= version < 11" in message
    assert "tensorrt>=10.3,<11" in message and "\n" not in message


def test_a_missing_tensorrt_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    with pytest.raises(EngineError, match=r"TensorRT is not installed .*pip install 'hippo-trt\[tensorrt\]'"):
        tensorrt_env.require_tensorrt()
