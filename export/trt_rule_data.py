"""The data behind the TensorRT 10 rules (``trt_rules``): two JSON files in ``export/data``.

``trt10_onnx_ops.json`` is written by hand from the sources its ``sources`` field names: the
operators the onnx-tensorrt parser of TensorRT 10 supports, its opset range, and what each rule
needs beyond the op names (attribute values, inputs that must be constants, TopK's K range,
which inputs the type column is about).

``trt10_onnx_types.json`` is generated: the "Supported Types" column of onnx-tensorrt's
``docs/operators.md`` as of the TensorRT 10.15 GA release (the newest 10.x table; the
Changelog's top entry is "TensorRT 10.15 GA Release"). To regenerate it, save that file and run

    python -m hippo_trt.export.trt_rule_data operators.md > export/data/trt10_onnx_types.json

(``parse_operators_md``); tests/export/test_trt_compat.py checks that its op list is the
hand-written ``supported`` list.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

DATA_PACKAGE = "hippo_trt.export.data"
DATA_FILE = "trt10_onnx_ops.json"
TYPES_FILE = "trt10_onnx_types.json"
DEFAULT_TYPE_INPUTS = (0,)  # the type column is about an op's first input unless type_inputs says otherwise


@dataclass(frozen=True)
class TrtRules:
    """The parsed data files."""

    source: str
    tensorrt: str
    min_opset: int
    max_opset: int
    max_opset_10_0: int
    supported: frozenset[str]
    types_source: str
    types: Mapping[str, tuple[str, ...]]  # op -> the parser's supported types (FP32, INT64, ...)
    type_inputs: Mapping[str, tuple[int, ...]]  # op -> the inputs the types are about
    type_outputs: Mapping[str, tuple[int, ...]]  # op -> outputs checked too (Cast's 'to', a Constant)
    types_beyond_table: Mapping[str, tuple[str, ...]]  # op -> types the importer takes beyond the table
    min_topk_k: int
    max_topk_k: int
    topk_k_input: int
    allowed_attributes: Mapping[str, Mapping[str, tuple]]
    constant_inputs: Mapping[str, Mapping[int, str]]
    constant_axes: Mapping[str, Mapping[int, str]]
    constant_axes_since: str
    first_output_only: frozenset[str]
    data_dependent: frozenset[str]
    sources: Mapping[str, str]  # rule id -> where its semantics come from

    @classmethod
    def from_json(cls, obj: Mapping, types: Mapping) -> TrtRules:
        checks = obj["checks"]
        return cls(
            source=obj["source"],
            tensorrt=obj["tensorrt"],
            min_opset=obj["opsets"]["min"],
            max_opset=obj["opsets"]["max"],
            max_opset_10_0=obj["opsets"]["max_tensorrt_10_0"],
            supported=frozenset(obj["supported"]),
            types_source=types["source"],
            types=MappingProxyType({op: tuple(t) for op, t in types["types"].items()}),
            type_inputs=_indices(checks["type_inputs"]),
            type_outputs=_indices(checks["type_outputs"]),
            types_beyond_table=_indices(checks["types_beyond_table"]),
            min_topk_k=checks["topk"]["min_k"],
            max_topk_k=checks["topk"]["max_k"],
            topk_k_input=checks["topk"]["k_input"],
            allowed_attributes=_frozen(checks["allowed_attributes"], lambda attr, values: (attr, tuple(values))),
            constant_inputs=_frozen(checks["constant_inputs"], lambda index, what: (int(index), what)),
            constant_axes=_frozen(checks["constant_axes"]["inputs"], lambda index, what: (int(index), what)),
            constant_axes_since=checks["constant_axes"]["since"],
            first_output_only=frozenset(checks["first_output_only"]),
            data_dependent=frozenset(checks["data_dependent_shapes"]),
            sources=MappingProxyType(dict(obj["sources"])),
        )

    def allowed_types(self, op: str) -> tuple[str, ...]:
        """The types the parser takes for ``op`` (empty: not in the table)."""
        return self.types.get(op, ()) + self.types_beyond_table.get(op, ())

    def inputs_typed(self, op: str) -> tuple[int, ...]:
        """The inputs whose element type the parser's type column is about."""
        return self.type_inputs.get(op, DEFAULT_TYPE_INPUTS)


def _indices(table: Mapping[str, list]) -> Mapping[str, tuple]:
    """``{op: (entry, ...)}`` without the table's ``_comment``."""
    return MappingProxyType({op: tuple(i) for op, i in table.items() if not op.startswith("_")})


def _frozen(table: Mapping[str, Mapping], entry: Callable) -> Mapping[str, Mapping]:
    """A read-only ``{op: {key: value}}`` with each entry converted by ``entry(key, value)``."""
    return MappingProxyType({op: MappingProxyType(dict(entry(k, v) for k, v in inner.items())) for op, inner in table.items()})


def _read(name: str) -> dict:
    return json.loads(resources.files(DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def load_rules() -> TrtRules:
    """The packaged TensorRT 10 rule data (``hippo_trt/export/data``)."""
    return TrtRules.from_json(_read(DATA_FILE), _read(TYPES_FILE))


# --- generating trt10_onnx_types.json from onnx-tensorrt's docs/operators.md ----------------

_HEADER = re.compile(r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+to opset\s+(\d+)")
_ROW = re.compile(r"^\|\s*([A-Za-z0-9_]+)\s*\|\s*Y\b[^|]*\|([^|\n]*)")


def parse_operators_md(text: str) -> dict:
    """The types file's content: ``{"tensorrt", "opsets", "types": {op: [type, ...]}}`` for every
    operator the table marks supported (Y), types in the table's order."""
    header = _HEADER.search(text)
    if header is None:
        raise ValueError("not onnx-tensorrt's operators.md: no 'TensorRT X supports operators in the inclusive range' line")
    types = {}
    for line in text.splitlines():
        row = _ROW.match(line)
        if row:
            types[row.group(1)] = [t.strip() for t in row.group(2).split(",") if t.strip()]
    version, low, high = header.groups()
    return {
        "source": f"onnx/onnx-tensorrt docs/operators.md, TensorRT {version} (10.15 GA release), 'Supported Types' column",
        "repository": "https://github.com/onnx/onnx-tensorrt",
        "tensorrt": version,
        "opsets": {"min": int(low), "max": int(high)},
        "generated_by": "python -m hippo_trt.export.trt_rule_data operators.md",
        "types": dict(sorted(types.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hippo_trt.export.trt_rule_data OPERATORS_MD > trt10_onnx_types.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(dumps_types(parse_operators_md(f.read())))
    return 0


def dumps_types(obj: dict) -> str:
    """``obj`` as JSON with one line per operator."""
    head = json.dumps({k: v for k, v in obj.items() if k != "types"}, indent=1)[: -len("\n}")]
    rows = ",\n".join(f"  {json.dumps(op)}: {json.dumps(types)}" for op, types in obj["types"].items())
    return f'{head},\n "types": {{\n{rows}\n }}\n}}'


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
