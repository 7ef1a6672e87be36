"""Fixtures the export tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


class FakePolygraphy:
    """Recording stand-ins for the polygraphy.backend.trt loaders that trt_build uses."""

    def __init__(self):
        self.profiles, self.configs, self.networks, self.saved = [], [], [], []
        fake = self

        class Profile(dict):
            def __init__(self):
                super().__init__()
                fake.profiles.append(self)

            def add(self, name, min, opt, max):
                assert name not in self
                self[name] = (tuple(min), tuple(opt), tuple(max))
                return self

        self.Profile = Profile

    def CreateConfig(self, **kwargs):
        self.configs.append(kwargs)
        return kwargs

    def NetworkFromOnnxPath(self, path, strongly_typed):
        self.networks.append((path, strongly_typed))
        return path

    def EngineBytesFromNetwork(self, network, config, save_timing_cache):
        return lambda: b"engine of " + Path(network).name.encode()  # serialized bytes, never deserialized

    def SaveBytes(self, obj, path):
        def save():
            self.saved.append(path)
            Path(path).write_bytes(obj())

        return save


@pytest.fixture
def fake_polygraphy(monkeypatch) -> FakePolygraphy:
    import polygraphy.backend.common as common
    import polygraphy.backend.trt as trt

    fake = FakePolygraphy()
    for name in ("Profile", "CreateConfig", "NetworkFromOnnxPath", "EngineBytesFromNetwork"):
        monkeypatch.setattr(trt, name, getattr(fake, name))
    monkeypatch.setattr(common, "SaveBytes", fake.SaveBytes)
    return fake
