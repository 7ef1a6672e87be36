"""The README.md of an ``export-triton`` repository: what each model is, how to run, query
and scale it. Pure text from the manifest, the models written and the options."""

from __future__ import annotations

from collections.abc import Sequence

from hippo_trt import __version__
from hippo_trt.manifest import Manifest
from hippo_trt.runtime.serving.protocol import INPUTS, OUTPUTS, STREAM_MODEL, UNARY_MODEL, RequestOptions
from hippo_trt.runtime.serving.triton_config import instance_kind

GRAPH_ROLES = {
    "vision": "vision encoder: pixels -> visual tokens",
    "decoder": "the decoder (every weight once): a prompt prefill (last logits, visual-token importance, KV entries) or a decode / verify step over the cached KV prefix",
}
PYTHON_ROLES = {
    UNARY_MODEL: "the speculative loop: one response per request (HTTP or gRPC)",
    STREAM_MODEL: "the same, decoupled: a response per committed piece (gRPC streaming)",
}
TRITON_TAG = "<yy.mm>"  # the Triton release: pick one whose Python is 3.11 or newer
PORTS = "-p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -p 127.0.0.1:8002:8002"  # loopback only: see _exposure
ADMIN_APIS = "shared-memory,logging,trace,model-repository:admin-key=$ADMIN_KEY"
RESTRICTED = f"--http-restricted-api={ADMIN_APIS} --grpc-restricted-protocol={ADMIN_APIS}"


def _what(name: str, kind: str) -> str:
    if kind == "python":
        return PYTHON_ROLES[name]
    if kind == "pruning":
        return f"visual-token pruning graph '{name.removeprefix('pruning_')}' (draft's token selection)"
    role, graph = name.split("_", 1)
    return f"{role} {GRAPH_ROLES.get(graph, graph)}"


def _models_table(models, options) -> list[str]:

    lines = ["| model | what | platform / backend | instances |", "|---|---|---|---|"]
    for m in models:
        kind = instance_kind(m.kind, options)
        lines.append(f"| `{m.name}` | {_what(m.name, m.kind)} | {m.platform} | {options.instances} x {kind} |")
    return lines


def _protocol() -> list[str]:
    lines = ["| tensor | type | shape | |", "|---|---|---|---|"]
    for direction, specs in (("input", INPUTS), ("output", OUTPUTS)):
        for s in specs:
            kind = "BYTES" if s.dtype.__name__ in ("bytes_", "object_") else s.dtype.__name__.upper()
            note = f"{direction}{', optional' if s.optional else ''}"
            lines.append(f"| `{s.name}` | {kind} | {list(s.shape)} | {note} |")
    return lines


def _engine_notes(manifest: Manifest, options) -> list[str]:
    if options.engines == "local":
        ort = manifest.engines["onnxruntime"]
        return [
            f"Engine mode **local**: `{UNARY_MODEL}` and `{STREAM_MODEL}` run the work dir's ONNX Runtime engines in-process "
            f"(CPU), from their `work/` copy; the pruning graphs run there too. The engines were built with onnxruntime "
            f"{ort['version']}: install exactly that version in the server's Python (the loop refuses others).",
        ]
    notes = [
        f"Engine mode **bls**: `{UNARY_MODEL}` and `{STREAM_MODEL}` call the graph models through BLS for every step; "
        "the pruning graphs are BLS calls to the `pruning_*` models too (on the CPU: small host-side picks, exactly the "
        "reference's on ONNX Runtime's CPU provider). The loop itself is host work, so the Python models are KIND_CPU; "
        "`work/` holds only the manifest and processors.",
    ]
    if options.backend == "tensorrt":
        trt = manifest.engines["tensorrt"]
        notes.append(
            f"The graph models are TensorRT plans built with TensorRT {trt['version']} for {trt['gpu']} (compute "
            f"capability {trt['compute_capability']}, {trt['precision']}): use the Triton release that ships TensorRT "
            f"{trt['version']} and GPUs of that model, or rebuild in that container (`hippo-trt build WORK --backend "
            "tensorrt`) and export again. The pruning graphs stay ONNX (ONNX Runtime backend)."
        )
    return notes


def _run(manifest: Manifest, options) -> list[str]:
    gpus = "--gpus all " if options.device == "gpu" and options.engines == "bls" else ""
    pins = f" 'onnxruntime=={manifest.engines['onnxruntime']['version']}'" if options.engines == "local" else ""
    return [
        "## Run it",
        "",
        "The Python models import hippo-trt, so the server's Python needs it (Python >= 3.11). A derived image:",
        "",
        "```dockerfile",
        f"FROM nvcr.io/nvidia/tritonserver:{TRITON_TAG}-py3",
        f"RUN pip install 'hippo-trt=={__version__}'{pins}",
        "```",
        "",
        "```bash",
        "docker build -t hippo-triton .",
        "ADMIN_KEY=$(openssl rand -hex 16)  # Triton's admin APIs answer only requests with the header admin-key: $ADMIN_KEY",
        f"docker run {gpus}--rm --shm-size=4g {PORTS} \\",
        "  -v $PWD/REPO:/models hippo-triton tritonserver --model-repository=/models \\",
        f"  {RESTRICTED}",
        "```",
        "",
        f"or, without a derived image (and with `ADMIN_KEY` set as above), `docker run {gpus}--rm --shm-size=4g "
        f"-p 127.0.0.1:8000-8002:8000-8002 -v $PWD/REPO:/models nvcr.io/nvidia/tritonserver:{TRITON_TAG}-py3 bash -c "
        f"\"pip install 'hippo-trt=={__version__}'{pins} && tritonserver --model-repository=/models {RESTRICTED}\"`.",
        "",
        "Every tensor between the Python models and the server passes through `/dev/shm` (in bls mode each decode "
        "step sends the cached KV prefix): size `--shm-size` to a few times the largest KV cache, or use `--ipc=host`.",
        "",
        "Ask it (`curl localhost:8000/v2/health/ready` says when it is up):",
        "",
        "```bash",
        'hippo-trt client --url localhost:8001 --video clip.mp4 --prompt "What happens?" [--stream]',
        'hippo-trt client --url localhost:8000 --protocol http --video clip.mp4 --prompt "What happens?" --max-new-tokens 32',
        "```",
        "",
        "or from Python with `hippo_trt.runtime.serving.client.HippoClient`; any Triton client works (the tensors above, "
        "the same as `hippo-trt serve`'s, each with a leading batch dim of 1: `prompt` is `[1, 1]`).",
        "",
        f"`{UNARY_MODEL}` and `{STREAM_MODEL}` bound their wait queue (`dynamic_batching.default_queue_policy` in their "
        "`config.pbtxt`: one request a batch, at most `max_queue_size` waiting, rejected past the request timeout): a "
        'request past the queue is rejected at once (UNAVAILABLE, "Exceeds maximum queue size"); retry it later.',
    ]


def _exposure() -> list[str]:
    return [
        "## Network exposure",
        "",
        "- **Loopback only**: every port is published on 127.0.0.1. A plain `-p 8000:8000` publishes on every "
        "network interface of the host (Docker's iptables rules bypass host firewalls such as ufw), and Triton has "
        "no authentication and no TLS on HTTP. To serve other hosts, put an authenticating TLS gateway (reverse proxy, "
        "API gateway, service mesh) on the host in front of 127.0.0.1 and forward only what clients need.",
        "- **Admin APIs behind a key**: a standalone tritonserver leaves them open to every client. Shared-memory "
        "registration makes the server read and write memory regions a client names; logging and trace settings "
        "change log and trace files and verbosity (disk, CPU); model-repository control loads and unloads models. "
        "`--http-restricted-api` / `--grpc-restricted-protocol` make each answer only requests that carry the header "
        "`admin-key` with the value of `$ADMIN_KEY` (keep it secret: it is on the server's command line). The other "
        "APIs (inference, health, metadata, model config, statistics) stay open.",
        f"- **Only `{UNARY_MODEL}` and `{STREAM_MODEL}` are the service**: the graph models (`target_decoder`, "
        "`pruning_fused`, ...) answer direct requests too, without hippo-trt's request checks (sizes, limits, "
        f"timeouts): let the gateway allow inference on `{UNARY_MODEL}` and `{STREAM_MODEL}` (and "
        "`/v2/health/ready`) only.",
    ]


def _scale() -> list[str]:
    return [
        "## Scale out",
        "",
        f"- **Instances**: each `{UNARY_MODEL}` / `{STREAM_MODEL}` instance serves one request at a time (it owns that "
        "request's KV caches), so concurrency is their instance count; raise `instance_group { count }` of the graph "
        "models with them (re-export with `--instances N`, or edit the `config.pbtxt` files; a `KIND_GPU` count is per "
        "visible GPU unless `gpus` lists them).",
        "- **Replicas**: run this repository in several containers or nodes behind a load balancer (e.g. a Kubernetes "
        "Deployment and Service; readiness probe `GET /v2/health/ready` on 8000, metrics on 8002). Replicas share "
        "nothing, every request is served whole by one. gRPC (and streaming) needs an HTTP/2-aware balancer (Envoy, "
        "an ingress with gRPC support) so streams spread over replicas rather than sticking to one connection.",
        "- **Draft and target on separate GPUs** (bls mode): pin each side in its models' `config.pbtxt`, e.g. "
        "`instance_group [ { kind: KIND_GPU, count: 1, gpus: [ 0 ] } ]` in `target_*` and `gpus: [ 1 ]` in `draft_*` "
        "(the `pruning_*` models run on the CPU). In parallel mode the draft then drafts while the target verifies "
        "without sharing a GPU.",
        "- Load only some models with `--model-control-mode=explicit --load-model=...` (the Python models need every "
        "graph model in bls mode).",
    ]


def _parameters(options) -> list[str]:
    names = ", ".join(f"`{n}`" for n in RequestOptions.__dataclass_fields__)
    d = options.defaults
    return [
        "## Generation defaults and parameters",
        "",
        f"A request's `options` (JSON: {names}) override the defaults, which are this export's: mode {d.mode}, gamma "
        f"{d.gamma}, prune {d.prune}, keep {d.keep}, max_new_tokens {d.max_new_tokens}. They live in the `parameters` "
        "of both Python models' `config.pbtxt` (`defaults`, `prune_options`, `repack`; `engine_mode`; `work_dir`, "
        "relative to the model's directory; `request_timeout_s`, `max_video_bytes`; `ort_threads`, local mode): edit "
        "them there and reload the model.",
    ]


def readme(manifest: Manifest, models: Sequence, options) -> str:
    roles = " and ".join(sorted(manifest.models, key=lambda r: r != "target"))
    lines = [
        "# hippo-trt Triton model repository",
        "",
        f"Exported by hippo-trt {__version__} (`hippo-trt export-triton`) from a work dir with the {roles} models. "
        "Every `config.pbtxt` was checked against Triton's model-config schema.",
        "",
        "## Models",
        "",
        *_models_table(models, options),
        "",
        *_engine_notes(manifest, options),
        "",
        "Each Python model's `1/model.py` only imports `hippo_trt.runtime.serving.triton_model.TritonPythonModel`; its "
        "`work/` directory (not a version, so Triton ignores it) holds what the loop reads from the work dir.",
        "",
        "Requests and responses (no batch dim; `max_batch_size: 0`):",
        "",
        *_protocol(),
        "",
        *_run(manifest, options),
        "",
        *_exposure(),
        "",
        *_scale(),
        "",
        *_parameters(options),
        "",
    ]
    return "\n".join(lines)
