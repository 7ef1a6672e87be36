"""The Python model of ``hippo-trt export-triton``'s repository: the speculative loop inside
Triton's Python backend.

Each model's ``1/model.py`` only imports ``TritonPythonModel`` from here, so the repository
runs whatever hippo-trt is installed in the server's Python environment. The model's
``config.pbtxt`` ``parameters`` (``BackendParameters``) say where its copy of the work dir
is, which generation defaults and request limits apply, and how the graphs run:

``bls``    every graph is its own Triton model (``{role}_{graph}``, ``pruning_{name}``;
           ONNX Runtime or TensorRT), called per step through BLS (``BlsEngine``); the
           pruning graphs too (``BlsSession`` under the ``GraphPruner``).
``local``  the work dir's ONNX Runtime engines run in this process (``Pipeline.load``).

Requests and responses go through ``RequestHandler`` as in ``hippo-trt serve``; a bad
request gets an error response with a one-line message and the model keeps serving.
``triton_python_backend_utils`` is imported in ``initialize``, so this module imports
anywhere.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hippo_trt.errors import HippoError, InputError, WorkDirError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.pruning import PruneOptions
from hippo_trt.pruning_scores import Debias
from hippo_trt.runtime.backends.triton_bls import BlsSession, bls_engines, pruning_model, triton_utils
from hippo_trt.runtime.generation import GenerationConfig, option_values
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.pruner import GraphPruner
from hippo_trt.runtime.serving.handler import RequestHandler, ServeLimits, instance_ort_options, served_with_draft
from hippo_trt.runtime.serving.protocol import INPUTS, RequestOptions, wire_text

ENGINE_MODES = ("bls", "local")
WORK_DIR = "work"  # the work dir's copy, inside each Python model's directory


# --- parameters: config.pbtxt <-> what the model needs ----------------------------------------


def _defaults_json(config: GenerationConfig) -> str:
    """The defaults as ``RequestOptions`` (what a request may override, under the same names)."""
    return RequestOptions(**option_values(config)).to_json()


def _prune_options_json(options: PruneOptions) -> str:
    return json.dumps({**asdict(options), "debias": options.debias.value}, sort_keys=True)


def _prune_options(text: str | None) -> PruneOptions:
    if not text:
        return PruneOptions()
    raw = json.loads(text)
    return PruneOptions(**{**raw, "debias": Debias(raw.get("debias", Debias.TREND.value))})


@dataclass(frozen=True)
class BackendParameters:
    """What ``config.pbtxt`` ``parameters`` tell the Python model. ``work_dir``: its copy of the
    work dir, relative to the model's directory (or absolute). ``ort_threads``: ONNX Runtime
    threads per instance in ``local`` mode (0: the cores divided among the instances)."""

    engine_mode: str = "bls"
    work_dir: str = WORK_DIR
    defaults: GenerationConfig = GenerationConfig()
    limits: ServeLimits = ServeLimits()
    ort_threads: int = 0

    def __post_init__(self) -> None:
        if self.engine_mode not in ENGINE_MODES:
            raise InputError(f"unknown engine mode '{self.engine_mode}' (available: {', '.join(ENGINE_MODES)})")
        if self.ort_threads < 0:
            raise InputError(f"ort_threads must be >= 0, got {self.ort_threads}")

    def to_parameters(self) -> dict[str, str]:
        """config.pbtxt ``parameters`` (every value a string)."""
        return {
            "engine_mode": self.engine_mode,
            "work_dir": self.work_dir,
            "defaults": _defaults_json(self.defaults),
            "prune_options": _prune_options_json(self.defaults.prune_options),
            "repack": json.dumps(self.defaults.repack),
            "request_timeout_s": repr(float(self.limits.request_timeout_s)),
            "max_video_bytes": str(self.limits.max_video_bytes),
            "ort_threads": str(self.ort_threads),
        }

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> BackendParameters:
        get = params.get
        try:
            base = GenerationConfig(prune_options=_prune_options(get("prune_options")), repack=json.loads(get("repack") or "false"))
            limits = ServeLimits(
                request_timeout_s=float(get("request_timeout_s") or ServeLimits.request_timeout_s),
                max_video_bytes=int(get("max_video_bytes") or ServeLimits.max_video_bytes),
            )
            return cls(
                engine_mode=get("engine_mode") or "bls",
                work_dir=get("work_dir") or WORK_DIR,
                defaults=RequestOptions.from_json(get("defaults")).apply(base),
                limits=limits,
                ort_threads=int(get("ort_threads") or 0),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"bad config.pbtxt parameters ({type(e).__name__}: {e}); re-run hippo-trt export-triton") from None


def config_parameters(model_config: Mapping) -> dict[str, str]:
    """``parameters`` of a model config as Triton hands it over (JSON): name -> string value."""
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


# --- engines over BLS -----------------------------------------------------------------------


# --- the pipeline ---------------------------------------------------------------------------


def bls_pipeline(work: Path, manifest: Manifest) -> Pipeline:
    """A pipeline whose graphs are the repository's Triton models (the draft's too when the
    work dir has one; the pruning graphs' when it has them, else the numpy reference)."""

    target = bls_engines(manifest, "target")
    if "draft" not in manifest.models:
        return Pipeline.from_engines(work, manifest, target)
    pruner = GraphPruner({name: BlsSession(pruning_model(name)) for name in manifest.pruning}) if manifest.pruning else None
    return Pipeline.from_engines(work, manifest, target, bls_engines(manifest, "draft"), pruner)


def local_pipeline(work: Path, manifest: Manifest, options: OrtOptions) -> Pipeline:
    """A pipeline over the work dir's own ONNX Runtime engines, in this process."""
    return Pipeline.load(work, backend="onnxruntime", options=options, with_draft="draft" in manifest.models)


def _instance_count(model_config: Mapping) -> int:
    return max(1, sum(int(g.get("count", 1)) for g in model_config.get("instance_group", [])))


def load_pipeline(work: Path, params: BackendParameters, instances: int = 1) -> Pipeline:
    manifest = Manifest.load(work)
    served_with_draft(manifest, params.defaults)
    if params.engine_mode == "bls":
        return bls_pipeline(work, manifest)
    return local_pipeline(work, manifest, instance_ort_options(params.ort_threads, instances))


def work_path(model_dir: Path, work_dir: str) -> Path:
    work = Path(work_dir)
    work = work if work.is_absolute() else Path(model_dir) / work
    if not work.is_dir():
        raise WorkDirError(f"the model's work dir copy '{work}' is missing; re-run hippo-trt export-triton")
    return work


# --- the Triton Python model ----------------------------------------------------------------


class TritonPythonModel:
    """``hippo`` (one response per request) or, with a decoupled transaction policy,
    ``hippo_stream`` (a response per committed piece, then the final flag)."""

    def initialize(self, args: Mapping[str, str]) -> None:
        self.pb = triton_utils()
        self.model_config = json.loads(args["model_config"])
        params = BackendParameters.from_parameters(config_parameters(self.model_config))
        work = work_path(Path(args["model_repository"]), params.work_dir)
        pipeline = load_pipeline(work, params, _instance_count(self.model_config))
        name = args.get("model_instance_name", args.get("model_name", "0"))
        self.handler = RequestHandler(pipeline, params.defaults, params.limits, name=name)
        self.decoupled = bool(self.pb.using_decoupled_model_transaction_policy(self.model_config))
        self.batched = int(self.model_config.get("max_batch_size", 0)) > 0  # a queue policy: a batch dim of 1

    def _tensors(self, request) -> dict[str, np.ndarray]:
        found = {spec.name: self.pb.get_input_tensor_by_name(request, spec.name) for spec in INPUTS}
        arrays = {name: tensor.as_numpy() for name, tensor in found.items() if tensor is not None}
        return {name: a[0] for name, a in arrays.items()} if self.batched else arrays

    def _response(self, outputs: Mapping[str, np.ndarray]):
        tensors = [self.pb.Tensor(name, value[None] if self.batched else value) for name, value in outputs.items()]
        return self.pb.InferenceResponse(output_tensors=tensors)

    def _error(self, error: Exception):
        """The request's fault (INVALID_ARG) or the server's (INTERNAL), in one line."""
        if isinstance(error, HippoError):
            message, code = str(error), self.pb.TritonError.INVALID_ARG
        else:
            message, code = f"internal error ({type(error).__name__}: {error})", self.pb.TritonError.INTERNAL
        return self.pb.InferenceResponse(error=self.pb.TritonError(wire_text(message), code))

    def _answer(self, request):
        try:
            return self._response(self.handler.run(self._tensors(request)))
        except Exception as e:  # the request fails, the model keeps serving
            return self._error(e)

    def _send_pieces(self, sender, request) -> None:
        pieces = self.handler.stream(self._tensors(request))
        try:
            for piece in pieces:
                if sender.is_cancelled():
                    return
                sender.send(self._response(piece))
        finally:
            pieces.close()  # a cancelled request stops decoding at its next commit and frees its caches

    def _stream(self, request) -> None:
        sender = request.get_response_sender()
        try:
            self._send_pieces(sender, request)
        except Exception as e:  # the request fails, the model keeps serving
            with contextlib.suppress(Exception):  # the client may be gone
                sender.send(self._error(e))
        finally:
            sender.send(flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def execute(self, requests):
        if not self.decoupled:
            return [self._answer(request) for request in requests]
        for request in requests:
            self._stream(request)
        return None

    def finalize(self) -> None:
        self.handler = None


__all__ = [
    "BackendParameters",
    "ENGINE_MODES",
    "TritonPythonModel",
    "WORK_DIR",
    "bls_pipeline",
    "config_parameters",
    "load_pipeline",
    "local_pipeline",
    "work_path",
]
