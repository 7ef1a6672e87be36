"""ONNX Runtime sessions as hippo-trt opens them: the build checks every graph loads with these
options, the onnxruntime backend runs them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hippo_trt.errors import EngineError

SETUP_GRAPHS = ("vision",)  # run once per request, with the other lane idle


@dataclass(frozen=True)
class OrtOptions:
    """``intra_op_threads``: the decoder graph's threads (a lane's prefill and per-token steps,
    which may run beside the other lane's; one session, so the weights are loaded once).
    ``setup_threads``: the vision graph's, which runs once per request before decoding, while
    nothing else runs, so by default it takes every core. 0 means ONNX Runtime's default (all cores)."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0
    setup_threads: int = 0
    spin: bool = True  # idle worker threads spin for a while before sleeping

    def for_graph(self, name: str) -> OrtOptions:
        """The options a graph's session is made with. The setup graphs take ``setup_threads``
        and never spin: idle sessions' spinning workers would starve whatever runs after them
        (the next request's preprocessing, many times slower), and one wake-up is nothing next
        to a prefill."""
        return replace(self, intra_op_threads=self.setup_threads, spin=False) if name in SETUP_GRAPHS else self


def _session_options(options: OrtOptions):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if not options.spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def ort_session(path: Path, options: OrtOptions):
    """An InferenceSession; a missing, truncated or corrupt file is an EngineError."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), _session_options(options), providers=list(options.providers))
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EngineError(f"ONNX Runtime cannot load '{path}': {first}") from None
