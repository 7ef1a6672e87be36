"""What a served request and its responses hold, independent of the server that carries them.

The same tensors are bound by ``hippo-trt serve`` (PyTriton) and written into the
``config.pbtxt`` of ``hippo-trt export-triton``'s Python model, so a client talks to both alike.

Request: ``prompt`` (UTF-8 bytes), the video as ``video`` (the encoded file's bytes) or
``frames`` (uint8 [T, H, W, 3]), and ``options``, a JSON object of generation options that
override the server's defaults (``RequestOptions``). Response: ``text``, ``tokens`` and
``stats`` (JSON). A streaming response is a sequence of the same three: each ``text`` and
``tokens`` a new piece, ``stats`` empty (``{}``) until the last one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, make_dataclass

import numpy as np

from hippo_trt.errors import HippoError, InputError
from hippo_trt.options import Option
from hippo_trt.runtime.generation import OPTIONS, GenerationConfig, with_options

UNARY_MODEL = "hippo"
STREAM_MODEL = "hippo_stream"
STATUS_MODEL = "hippo_status"  # the instances' states, as JSON (hippo-trt serve only)
MAX_PROMPT_CHARS = 100_000
MAX_OPTIONS_BYTES = 64 << 10
MAX_FRAME_PIXELS = 3840 * 2160  # one uploaded frame, H x W (4K UHD)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, numpy dtype (``np.bytes_``: Triton BYTES) and shape
    without the batch dim (-1: any size)."""

    name: str
    dtype: type
    shape: tuple[int, ...]
    optional: bool = False


INPUTS = (
    TensorSpec("prompt", np.bytes_, (1,)),
    TensorSpec("video", np.bytes_, (1,), optional=True),
    TensorSpec("frames", np.uint8, (-1, -1, -1, 3), optional=True),
    TensorSpec("options", np.bytes_, (1,), optional=True),
)
OUTPUTS = (
    TensorSpec("text", np.bytes_, (1,)),
    TensorSpec("tokens", np.int64, (-1,)),
    TensorSpec("stats", np.bytes_, (1,)),
)
STATUS_INPUTS = (TensorSpec("probe", np.bytes_, (1,)),)  # any bytes: the request carries nothing else
STATUS_OUTPUTS = (TensorSpec("status", np.bytes_, (1,)),)


def wire_text(message: str) -> str:
    """An error message as a client gets it: one line, and valid UTF-8 even where it quotes a
    request's lone surrogates (``{"\\ud800": 1}``), which would fail the error's own encoding."""
    return " ".join(str(message).split()).encode("utf-8", "backslashreplace").decode("utf-8")


FRAMES = Option("frames", int, "frames sampled from an uploaded video (default: the model's)")
FPS = Option("fps", float, "the source frame rate of sent frames, or over an upload's own (Qwen3-VL prompts carry frame timestamps)")
VIDEO_OPTIONS = (FRAMES, FPS)  # how to sample and time the video: not generation options
REQUEST_OPTIONS = OPTIONS + VIDEO_OPTIONS


class _RequestOptions:
    """Per-request options (every one optional: None keeps the server's default); its fields
    are ``REQUEST_OPTIONS``, the generation options' table (runtime/generation.py), ``frames`` and ``fps``."""

    @classmethod
    def from_json(cls, text: str | bytes | None) -> RequestOptions:
        if text is not None and len(text) > MAX_OPTIONS_BYTES:
            raise InputError(f"'options' is {len(text)} bytes, more than the {MAX_OPTIONS_BYTES} accepted")
        try:
            text = text.decode("utf-8") if isinstance(text, bytes) else text
            if text is None or not text.strip():
                return cls()
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints past Python's digit limit
            raise InputError(f"'options' is not valid JSON ({str(e)[:120]})") from None
        except RecursionError:
            raise InputError("'options' is nested too deeply; send a flat JSON object") from None
        if not isinstance(raw, dict):
            raise InputError("'options' must be a JSON object, e.g. {\"max_new_tokens\": 32}")
        known = {o.name: o for o in REQUEST_OPTIONS}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**{name: _typed(known[name], value) for name, value in raw.items()})

    def set_options(self) -> dict:
        """The options this request sets (not None), by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def apply(self, defaults: GenerationConfig) -> GenerationConfig:
        """The server's defaults with this request's options; each is checked there."""
        video = {o.name for o in VIDEO_OPTIONS}
        return with_options(defaults, {k: v for k, v in self.set_options().items() if k not in video})

    def to_json(self) -> str:
        return json.dumps(self.set_options())


RequestOptions = make_dataclass(
    "RequestOptions",
    [(o.name, f"{o.type.__name__} | None", field(default=None)) for o in REQUEST_OPTIONS],
    bases=(_RequestOptions,),
    frozen=True,
)
RequestOptions.__module__ = __name__  # made from the table, kept importable (and picklable) from here


def _typed(option: Option, value):
    """``value`` checked against the option's type (bool is not an int; an int is a float)."""
    if value is None:
        return None
    kind = option.type
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        name = kind.__name__
        raise InputError(f"option '{option.name}' must be a{'n' if name == 'int' else ''} {name}, got {json.dumps(value)}")
    return float(value) if kind is float else value


@dataclass(frozen=True)
class ServedRequest:
    """One request's inputs, decoded from the wire."""

    prompt: str
    video: bytes | None
    frames: np.ndarray | None  # [T, H, W, 3] uint8
    options: RequestOptions

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], max_video_bytes: int) -> ServedRequest:
        """The named input arrays of one request (batch dim already removed)."""
        prompt = _one_string(tensors, "prompt")
        if prompt is None:
            raise InputError("the request has no 'prompt' input")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"the prompt is {len(prompt)} characters, more than the {MAX_PROMPT_CHARS} accepted")
        video = _one_bytes(tensors, "video")
        frames = tensors.get("frames")
        if (video is None) == (frames is None):
            raise InputError("send exactly one of 'video' (the encoded file) or 'frames' (uint8 [T, H, W, 3])")
        if video is not None and len(video) > max_video_bytes:
            raise InputError(f"the video is {len(video)} bytes, more than the server's limit of {max_video_bytes}")
        if frames is not None:
            frames = _checked_frames(np.asarray(frames), max_video_bytes)
        return cls(prompt, video, frames, RequestOptions.from_json(_one_bytes(tensors, "options")))


def _checked_frames(frames: np.ndarray, max_bytes: int) -> np.ndarray:
    """uint8 [T, H, W, 3] within the byte limit (the video's) and the per-frame pixel limit."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InputError(f"'frames' must be uint8 [T, H, W, 3] with T, H, W > 0, got {frames.dtype} {list(frames.shape)}")
    if frames.nbytes > max_bytes:
        raise InputError(f"'frames' is {frames.nbytes} bytes, more than the server's limit of {max_bytes}")
    t, h, w, _ = frames.shape
    if h * w > MAX_FRAME_PIXELS:
        raise InputError(f"'frames' are {w}x{h}, more than the {MAX_FRAME_PIXELS} pixels a frame may hold (3840x2160)")
    return frames


def _one_bytes(tensors: dict[str, np.ndarray], name: str) -> bytes | None:
    value = tensors.get(name)
    if value is None:
        return None
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise InputError(f"'{name}' must hold one element, got {flat.size}")
    item = flat[0]
    return item if isinstance(item, bytes) else str(item).encode("utf-8")


def _one_string(tensors: dict[str, np.ndarray], name: str) -> str | None:
    data = _one_bytes(tensors, name)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"'{name}' is not UTF-8 text") from None


def response(text: str, tokens: list[int], stats: dict | None) -> dict[str, np.ndarray]:
    """One response's output arrays (``stats`` None: a streamed piece before the last)."""
    return {
        "text": np.array([text.encode("utf-8")], dtype=np.object_),
        "tokens": np.asarray(tokens, dtype=np.int64).reshape(-1),
        "stats": np.array([json.dumps(stats or {}).encode("utf-8")], dtype=np.object_),
    }


class TextStream:
    """Token pieces -> text pieces whose concatenation is the decoded whole.

    The text of the newest token is held back until the next one arrives (or ``finish``): a
    token may end inside a UTF-8 character, and decoding may join or clean up text at the
    boundary, so only text that later tokens can no longer change is sent."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.sent = ""

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def push(self, tokens) -> str:
        self.tokens.extend(int(t) for t in tokens)
        stable = self._decode(self.tokens[:-1])
        if stable.endswith("\ufffd") or not stable.startswith(self.sent):
            return ""
        piece, self.sent = stable[len(self.sent) :], stable
        return piece

    def finish(self) -> str:
        """The rest of the text (everything if the pieces so far were not a prefix of it)."""
        whole = self._decode(self.tokens)
        if not whole.startswith(self.sent):
            raise HippoError("streamed text diverged from the decoded whole")  # never with HF tokenizers (tested)
        piece, self.sent = whole[len(self.sent) :], whole
        return piece


__all__ = [
    "INPUTS",
    "OUTPUTS",
    "RequestOptions",
    "ServedRequest",
    "STATUS_INPUTS",
    "STATUS_MODEL",
    "STATUS_OUTPUTS",
    "STREAM_MODEL",
    "TensorSpec",
    "TextStream",
    "UNARY_MODEL",
    "response",
    "wire_text",
]
