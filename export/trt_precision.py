"""An engine's precision, by type and not by builder flag.

TensorRT keeps each I/O tensor in its ONNX type and, in a weakly typed network, lets the FP16
flag run any layer in fp16, RMSNorm's mean of squares included, which overflows on Qwen2's
hidden states (TensorRT warns of it); the FP16/BF16 flags are deprecated from 10.12 and gone in
11. So engines are built from dtype-native graphs (``hippo-trt export --dtype``) as strongly
typed networks: every layer runs in the type the graph gives it, and the graph keeps the norms'
and softmax's arithmetic in float32 (the HF modules' upcasts, exported as written).

    export --dtype   build --precision   engine                                   I/O, KV cache
    fp32             (default) fp32      strongly typed, fp32, TF32 off           fp32
    fp16             (default) fp16      strongly typed, fp16 (norms in fp32)     fp16
    fp32             bf16                weakly typed + BF16 flag (TensorRT 10)   fp32
    fp32             fp16                refused: export --dtype fp16 instead
    fp16             fp32, bf16          refused: export --dtype fp32 instead

bf16 has no dtype-native export (opset 18 has no bfloat16 Conv), so it stays the one weakly
typed build; bf16 has float32's range, so a norm run in bf16 loses precision, not range.
The pruning graphs are always fp32 and strongly typed (``PRUNE_PRECISION``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hippo_trt.errors import InputError
from hippo_trt.export.trt_limits import BYTES_PER_ELEMENT

WEAK_FLAGS = ("bf16",)  # the compute precisions still built by builder flag (from an fp32 graph)


@dataclass(frozen=True)
class EnginePrecision:
    """How one engine is built: ``compute`` is what its layers run in, ``graph`` its ONNX
    graph's dtype (weights, KV cache and float I/O, which TensorRT keeps at the engine's I/O)."""

    compute: str  # fp32 | fp16 | bf16
    graph: str  # fp32 | fp16: the export's --dtype
    strongly_typed: bool

    @property
    def builder_flag(self) -> str | None:
        """The reduced-precision builder flag a weakly typed build sets (None: strongly typed)."""
        return None if self.strongly_typed else self.compute

    @property
    def tf32(self) -> bool:
        """TF32 stays off: fp32 engines compute in fp32, as validated against torch."""
        return False

    @property
    def weight_bytes_per_element(self) -> int:
        return BYTES_PER_ELEMENT[self.compute]

    @property
    def io_bytes_per_element(self) -> int:
        """The KV cache's and float I/O's element size: the graph's dtype, whatever the flags."""
        return BYTES_PER_ELEMENT[self.graph]

    def to_json(self) -> dict:
        return {"compute": self.compute, "graph": self.graph, "strongly_typed": self.strongly_typed, "tf32": self.tf32}


def engine_precision(graph_dtype: str, requested: str | None) -> EnginePrecision:
    """The precision of an engine built from a ``graph_dtype`` graph when the user asks for
    ``requested`` (None: the graph's own); a one-line InputError for what the table refuses."""
    if requested is None or requested == graph_dtype:
        return EnginePrecision(graph_dtype, graph_dtype, strongly_typed=True)
    if graph_dtype == "fp32" and requested in WEAK_FLAGS:
        return EnginePrecision(requested, graph_dtype, strongly_typed=False)
    if requested == "fp16":
        raise InputError(
            "--precision fp16 needs an fp16 export (hippo-trt export --dtype fp16): engines are built strongly typed from "
            "the graph's own types, and the FP16 flag on an fp32 graph may run RMSNorm in fp16 and overflow"
        )
    raise InputError(
        f"--precision {requested} cannot be built from this {graph_dtype} export; re-export with hippo-trt export --dtype fp32 "
        f"(or build without --precision: {graph_dtype})"
    )
