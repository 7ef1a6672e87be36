"""The torch backends' engines: a graph's own torch module run eagerly, on the host (the
reference) or on a device (``--backend torch-cuda``'s vision; its decoder steps go through
torch_static.py)."""

from __future__ import annotations

import numpy as np

from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.graphs.torch_feeds import torch_args
from hippo_trt.runtime.backends.arrays import Placement


class TorchEngine:
    """The reference: the same graph module run eagerly in torch."""

    def __init__(self, module, spec: GraphSpec):
        self.module, self.spec = module, spec

    def run(self, feeds, into=None):
        import torch

        into = into or {}
        with torch.inference_mode():
            outs = self.module(*torch_args(self.spec, {k: np.ascontiguousarray(v) for k, v in feeds.items()}))
        outs = outs if isinstance(outs, tuple) else (outs,)
        result = {}
        for t, value in zip(self.spec.outputs, outs, strict=True):
            if t.name in into:
                into[t.name][...] = value.numpy()
            else:
                result[t.name] = value.numpy()
        return result


class DeviceTorchEngine:
    """The same graph module on a torch device (CUDA, or the CPU in tests): feeds are moved
    there, outputs stay there, ``into`` tensors are written in place. The eager torch path of
    the device pipeline, and the stand-in that tests it where there is no GPU."""

    def __init__(self, module, spec: GraphSpec, device: str, dtype: str = "fp32"):

        self.module, self.spec, self.placement = module, spec, Placement(device, dtype)

    def run(self, feeds, into=None):
        import torch

        into = into or {}
        with torch.no_grad():  # not inference_mode: callers may write into the outputs
            outs = self.module(*torch_args(self.spec, feeds, self.placement.put))
        outs = outs if isinstance(outs, tuple) else (outs,)
        result = {}
        for t, value in zip(self.spec.outputs, outs, strict=True):
            if t.name in into:
                into[t.name].copy_(value)
            else:
                result[t.name] = value
        return result
