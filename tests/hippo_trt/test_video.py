"""Video input: PyAV round trip, uniform sampling, .npy frames, and one-line errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_trt.errors import HippoError, InputError, VideoError
from hippo_trt.testing.hostile import encode_static
from hippo_trt.video import (
    MAX_FRAMES,
    DecodeLimits,
    check_frame_count,
    decode_video,
    decode_video_bytes,
    load_frames,
    load_npy_frames,
    uniform_indices,
    write_video,
)
from tests.conftest import random_frames

# Distinct, saturated-enough colours that survive yuv420p + lossy coding.
COLOURS = np.array(
    [
        (220, 40, 40),
        (40, 200, 60),
        (50, 60, 210),
        (230, 220, 50),
        (30, 30, 30),
        (240, 240, 240),
        (200, 60, 200),
        (60, 200, 200),
        (128, 128, 128),
        (160, 90, 20),
    ],
    dtype=np.uint8,
)
TOL = 12  # mean per-channel error allowed on a plain-colour frame


def plain_frames(colours: np.ndarray, height: int = 32, width: int = 48) -> np.ndarray:
    return np.broadcast_to(colours[:, None, None, :], (len(colours), height, width, 3)).copy()


def mean_colour(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1, 3).mean(axis=1)


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("colour") / "colours.mp4"
    write_video(path, plain_frames(COLOURS))
    return path


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_all_frames_shape_dtype_and_colours(colour_clip):
    out = decode_video(colour_clip, len(COLOURS))
    assert out.dtype == np.uint8
    assert out.shape == (len(COLOURS), 32, 48, 3)
    err = np.abs(mean_colour(out) - COLOURS.astype(float))
    assert err.max() < TOL, err


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_round_trip_uniform_sampling_picks_the_right_frames(colour_clip, count):
    out = decode_video(colour_clip, count)
    assert out.shape == (count, 32, 48, 3)
    expected = COLOURS[uniform_indices(len(COLOURS), count)].astype(float)
    assert np.abs(mean_colour(out) - expected).max() < TOL


def test_round_trip_more_frames_requested_than_the_video_has(colour_clip):
    out = decode_video(colour_clip, 50)
    assert out.shape[0] == len(COLOURS)
    assert np.abs(mean_colour(out) - COLOURS.astype(float)).max() < TOL


def test_round_trip_odd_sizes_are_padded_then_decoded(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, plain_frames(COLOURS[:3], height=17, width=23))
    out = decode_video(path, 3)
    assert out.shape == (3, 18, 24, 3)  # yuv420p needs even sizes; edge padding keeps the colour
    assert np.abs(mean_colour(out) - COLOURS[:3].astype(float)).max() < TOL


def test_round_trip_random_frames_load_frames_default(clip):
    out = load_frames(clip, None, default_frames=4)
    assert out.shape == (4, 36, 44, 3) and out.dtype == np.uint8
    out = load_frames(clip, 10, default_frames=4)
    assert out.shape == (10, 36, 44, 3)
    # random noise is coded lossily, but what comes back is still correlated with what was written
    written = random_frames(0, 10).astype(float)
    corr = np.corrcoef(out.astype(float).ravel(), written.ravel())[0, 1]
    assert corr > 0.3  # about 0.6 with libx264; unrelated noise gives about 0


def test_container_without_frame_count_is_sampled_after_decoding(tmp_path):
    """Matroska does not store a frame count: its packets are counted (not decoded), then sampled."""
    path = tmp_path / "colours.mkv"
    write_video(path, plain_frames(COLOURS))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    out = decode_video(path, 4)
    assert out.shape == (4, 32, 48, 3)
    expected = COLOURS[uniform_indices(len(COLOURS), 4)].astype(float)
    assert np.abs(mean_colour(out) - expected).max() < TOL


def test_header_claiming_more_frames_than_decodable_still_gives_requested_count(tmp_path):
    full = tmp_path / "full.avi"
    write_video(full, random_frames(5, 20, 32, 32))
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with av.open(str(cut)) as c:
        claimed = c.streams.video[0].frames
        decodable = sum(1 for _ in c.decode(video=0))
    if not (claimed == 20 and 8 <= decodable < 20):  # the header must lie, and 8 frames must decode
        pytest.skip(f"this FFmpeg build gives claimed={claimed} decodable={decodable} for the cut file")
    out = decode_video(cut, 8)
    assert out.shape[0] == 8  # 8 frames requested and at least 8 decodable


# --- uniform_indices -----------------------------------------------------------------------


@given(total=st.integers(1, 5000), count=st.integers(1, 2000))
def test_uniform_indices_properties(total, count):
    idx = uniform_indices(total, count)
    assert idx.dtype == np.int64
    assert len(idx) == min(count, total)
    assert idx.min() >= 0 and idx.max() <= total - 1
    assert np.all(np.diff(idx) > 0)  # sorted, no frame taken twice
    assert idx[0] == 0
    if len(idx) >= 2:
        assert idx[-1] == total - 1


@given(total=st.integers(2, 5000), count=st.integers(2, 2000))
def test_uniform_indices_are_evenly_spread(total, count):
    idx = uniform_indices(total, count)
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1


def test_uniform_indices_examples():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]
    assert uniform_indices(7, 1).tolist() == [0]


@pytest.mark.parametrize("total", [0, -3])
def test_uniform_indices_no_frames(total):
    with pytest.raises(VideoError, match="no frames"):
        uniform_indices(total, 4)


# --- .npy frames ---------------------------------------------------------------------------


def test_npy_loads_all_frames(tmp_path):
    frames = random_frames(1, 6, 10, 12)
    np.save(tmp_path / "f.npy", frames)
    out = load_npy_frames(tmp_path / "f.npy")
    np.testing.assert_array_equal(out, frames)
    np.testing.assert_array_equal(load_frames(tmp_path / "f.npy", None, default_frames=2), frames)


@pytest.mark.parametrize("count", [1, 3, 6, 20])
def test_npy_uniform_sampling_is_exact(tmp_path, count):
    frames = random_frames(2, 6, 8, 8)
    np.save(tmp_path / "f.npy", frames)
    out = load_frames(tmp_path / "f.npy", count, default_frames=2)
    np.testing.assert_array_equal(out, frames[uniform_indices(6, count)])
    assert out.shape[0] == min(count, 6)


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg
    return msg


def test_npy_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        load_frames(tmp_path / "nope.npy", None, 4)
    assert not isinstance(info.value, VideoError)
    assert "nope.npy" in _one_line(info.value)


@pytest.mark.parametrize(
    "array,what",
    [
        (np.zeros((2, 4, 4, 3), np.float32), "float32"),
        (np.zeros((2, 4, 4, 3), np.int64), "int64"),
        (np.zeros((4, 4, 3), np.uint8), "[4, 4, 3]"),
        (np.zeros((2, 4, 4, 4), np.uint8), "[2, 4, 4, 4]"),
        (np.zeros((2, 4, 4), np.uint8), "[2, 4, 4]"),
        (np.zeros((1, 2, 4, 4, 3), np.uint8), "[1, 2, 4, 4, 3]"),
    ],
)
def test_npy_wrong_dtype_or_shape(tmp_path, array, what):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(VideoError, match="must hold uint8 frames") as info:
        load_frames(tmp_path / "bad.npy", None, 4)
    assert what in _one_line(info.value)


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (3, 0, 4, 3), (3, 4, 0, 3)])
def test_npy_empty(tmp_path, shape):
    np.save(tmp_path / "empty.npy", np.zeros(shape, np.uint8))
    with pytest.raises(VideoError, match="holds no frames"):
        load_frames(tmp_path / "empty.npy", 2, 4)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a numpy file at all", os.urandom(200), b"\x93NUMPY\x01\x00garbage"],
    ids=["empty", "text", "random", "bad-header"],
)
def test_npy_unreadable(tmp_path, content):
    (tmp_path / "x.npy").write_bytes(content)
    with pytest.raises(VideoError, match="not a readable .npy file") as info:
        load_frames(tmp_path / "x.npy", None, 4)
    _one_line(info.value)


def test_npy_object_array_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VideoError, match="not a readable .npy file"):
        load_frames(tmp_path / "obj.npy", None, 4)


def test_npy_truncated(tmp_path):
    np.save(tmp_path / "t.npy", random_frames(3, 4, 8, 8))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 50])
    with pytest.raises(VideoError, match="not a readable .npy file"):
        load_frames(tmp_path / "t.npy", None, 4)


# --- video errors --------------------------------------------------------------------------


def test_video_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        load_frames(tmp_path / "missing.mp4", None, 4)
    assert not isinstance(info.value, VideoError)
    assert "missing.mp4" in _one_line(info.value)


def test_video_path_is_a_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        decode_video(tmp_path, 4)


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"", b"hello, this is text\n" * 20],
    ids=["random-bytes", "empty", "text"],
)
def test_video_corrupt(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as info:
        load_frames(path, None, 4)
    msg = _one_line(info.value)
    assert "bad.mp4" in msg


def test_video_truncated_mp4(colour_clip, tmp_path):
    data = colour_clip.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="half.mp4"):
        decode_video(path, 4)


def test_video_container_with_zero_decodable_frames(tmp_path):
    full = tmp_path / "full.ts"
    write_video(full, plain_frames(COLOURS))
    data = full.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[:564])  # PAT/PMT packets only, no complete picture
    with av.open(str(cut)) as c:
        if not c.streams.video or any(True for _ in c.decode(video=0)):
            pytest.skip("this FFmpeg build finds no stream or a frame in 3 TS packets")
    with pytest.raises(VideoError, match="zero decodable frames"):
        decode_video(cut, 4)


def _audio_only(path: Path) -> bool:
    try:
        with av.open(str(path), mode="w") as c:
            stream = c.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                c.mux(packet)
            for packet in stream.encode():
                c.mux(packet)
    except Exception:
        return False
    return path.is_file() and path.stat().st_size > 0


def test_video_without_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    if not _audio_only(path):
        pytest.skip("PyAV cannot write an audio-only file here")
    with pytest.raises(VideoError, match="has no video stream") as info:
        load_frames(path, None, 4)
    assert "audio.wav" in _one_line(info.value)


# --- frame count ---------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [0, -1, MAX_FRAMES + 1, 10**9])
def test_frames_out_of_range(frames, colour_clip, tmp_path):
    with pytest.raises(InputError, match=f"--frames must be between 1 and {MAX_FRAMES}, got {frames}"):
        check_frame_count(frames)
    with pytest.raises(InputError, match="--frames must be between"):
        decode_video(colour_clip, frames)
    np.save(tmp_path / "f.npy", random_frames(0, 3, 4, 4))
    with pytest.raises(InputError, match="--frames must be between"):
        load_frames(tmp_path / "f.npy", frames, 4)


@pytest.mark.parametrize("frames", [None, 1, MAX_FRAMES])
def test_frames_in_range(frames):
    check_frame_count(frames)


def test_frames_checked_before_the_file_is_touched(tmp_path):
    with pytest.raises(InputError, match="--frames"):
        decode_video(tmp_path / "missing.mp4", MAX_FRAMES + 1)


def test_errors_are_hippo_errors_with_user_exit_code():
    assert issubclass(VideoError, InputError) and issubclass(InputError, HippoError)
    assert VideoError("x").exit_code == 2
    assert str(VideoError("a\n  b\tc")) == "a b c"


@pytest.mark.parametrize("count", [1, 3, 7])
def test_uploaded_bytes_decode_to_the_same_frames_as_the_file(colour_clip, count):
    from_bytes = decode_video_bytes(colour_clip.read_bytes(), count)
    np.testing.assert_array_equal(from_bytes, decode_video(colour_clip, count))


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (b"\x00\x01garbage" * 50, "cannot decode video the uploaded video"), (None, "cannot decode|zero decodable|no video")],
)
def test_bad_uploads_give_one_line_video_errors(colour_clip, data, message):
    data = colour_clip.read_bytes()[:300] if data is None else data  # None: a cut upload
    with pytest.raises(VideoError, match=message) as err:
        decode_video_bytes(data, 4)
    assert "\n" not in str(err.value)


# --- decode limits: what an untrusted video may cost ----------------------------------------

needs_x264 = pytest.mark.skipif("libx264" not in av.codecs_available, reason="this PyAV has no libx264 encoder")


def header_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return c.streams.video[0].frames


def peak_rss_rise(fn):
    """(fn(), how far this process's peak RSS rose above its RSS while fn ran, in bytes).

    Not tracemalloc: PyAV's frames (and the arrays ``to_ndarray`` returns, views of them) live in
    FFmpeg's allocations, which tracemalloc does not see. Writing 5 to /proc/self/clear_refs
    resets VmHWM (Linux >= 4.0)."""

    def kib(field: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1])

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs)")
    before = kib("VmRSS")
    result = fn()
    return result, (kib("VmHWM") - before) << 10


class _PacketSpy:
    """A demuxed packet that records in ``calls`` when it is decoded."""

    def __init__(self, packet, calls: list):
        self._packet, self._calls = packet, calls

    def __getattr__(self, name):
        return getattr(self._packet, name)

    def decode(self):
        self._calls.append(self._packet.size)
        return self._packet.decode()


class _DecodeSpy:
    """A PyAV container that records in ``calls`` every decode: its own, or of a packet it demuxed."""

    def __init__(self, container, calls: list):
        self._container, self._calls = container, calls

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, *args, **kwargs):
        return (_PacketSpy(p, self._calls) for p in self._container.demux(*args, **kwargs))

    def decode(self, *args, **kwargs):
        self._calls.append(args or kwargs)
        return self._container.decode(*args, **kwargs)


@pytest.fixture
def decode_calls(monkeypatch) -> list:
    """Every decode (of a container or a packet) while the test runs: empty, no frame was decoded."""
    calls, real_open = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _DecodeSpy(real_open(*a, **k), calls))
    return calls


def test_the_decode_spy_sees_decoding(colour_clip, decode_calls):
    decode_video(colour_clip, 2)
    assert decode_calls


@needs_x264
@pytest.mark.parametrize("ext, upload", [("mkv", False), ("mkv", True), ("h264", False), ("ts", True)])
def test_static_1080p_clip_without_a_frame_count_decodes_in_bounded_memory(tmp_path, ext, upload):
    """60 black 1080p frames in ~10 KB: today's code kept all 60 as RGB (~370 MB); only the 8
    sampled frames may be held now (8 x 6.2 MB), twice that allowed for the decoder's own buffers."""
    path = encode_static(tmp_path / f"bomb.{ext}", 60, 1920, 1080)
    assert path.stat().st_size < 64 << 10 and header_frames(path) == 0
    data = path.read_bytes()
    decode_video(encode_static(tmp_path / f"one.{ext}", 1, 1920, 1080), 1)  # FFmpeg's one-time setup (~15 MB) before measuring
    out, rise = peak_rss_rise(lambda: decode_video_bytes(data, 8) if upload else decode_video(path, 8))
    assert out.shape == (8, 1080, 1920, 3) and out.max() < 8
    assert rise < 2 * out.nbytes, f"peak RSS rose {rise / 2**20:.0f} MiB for {out.nbytes / 2**20:.0f} MiB of frames"


@needs_x264
def test_static_1080p_clip_over_the_budget_is_refused_before_decoding(tmp_path, decode_calls):
    path = encode_static(tmp_path / "bomb.mkv", 60, 1920, 1080)
    with pytest.raises(VideoError, match=r"frames of 1920x1080, above the limit of \d+ decoded pixels") as info:
        decode_video(path, 4, limits=DecodeLimits(max_decode_pixels=30 * 1920 * 1080))
    assert "bomb.mkv" in _one_line(info.value)
    with pytest.raises(VideoError, match="the uploaded video has at least 60 frames, above the limit of 59") as info:
        decode_video_bytes(path.read_bytes(), 4, limits=DecodeLimits(max_frames=59))
    _one_line(info.value)
    assert decode_calls == []


@needs_x264
def test_8k_stream_is_refused_from_its_header(tmp_path, decode_calls):
    path = encode_static(tmp_path / "8k.mkv", 2, 7680, 4320)
    with pytest.raises(VideoError, match=r"is 7680x4320 .* above the limit of 8294400 .*3840x2160") as info:
        decode_video_bytes(path.read_bytes(), 2)
    _one_line(info.value)
    assert decode_calls == []


@needs_x264
@pytest.mark.parametrize("ext", ["mp4", "h264"])
def test_frame_size_cap_is_configurable_and_checked_before_decoding(tmp_path, decode_calls, ext):
    path = encode_static(tmp_path / f"small.{ext}", 3, 128, 96)
    with pytest.raises(VideoError, match=r"small\.\w+' is 128x96 \(12288 pixels a frame\), above the limit of 4096"):
        decode_video(path, 2, limits=DecodeLimits(max_frame_pixels=64 * 64))
    assert decode_calls == []
    assert decode_video(path, 2, limits=DecodeLimits(max_frame_pixels=128 * 96)).shape == (2, 96, 128, 3)


@needs_x264
def test_sampled_frames_over_the_output_cap_are_refused_before_decoding(tmp_path, decode_calls):
    path = encode_static(tmp_path / "clip.mp4", 10, 128, 96)
    limits = DecodeLimits(max_output_bytes=4 * 96 * 128 * 3)
    assert decode_video(path, 4, limits=limits).shape == (4, 96, 128, 3)
    decoded = len(decode_calls)
    with pytest.raises(VideoError, match="5 frames of 128x96 take") as info:
        decode_video(path, 5, limits=limits)
    assert "ask for fewer frames" in _one_line(info.value)
    assert len(decode_calls) == decoded


@pytest.fixture(scope="module")
def hour_clip(tmp_path_factory) -> Path:
    """One hour of black 64x64 frames at 30 fps (108,000 frames, ~2 MB) in Matroska: no frame count."""
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV has no libx264 encoder")
    return encode_static(tmp_path_factory.mktemp("long") / "hour.mkv", 108_000, 64, 64)


DEADLINE_S = 0.25  # decoding the whole hour takes about 1 s on one core


def test_deadline_is_checked_inside_decoding(hour_clip):
    start = time.monotonic()
    with pytest.raises(VideoError, match="ran past its deadline") as info:
        decode_video(hour_clip, 8, deadline=start + DEADLINE_S)
    elapsed = time.monotonic() - start
    assert "hour.mkv" in _one_line(info.value)
    assert DEADLINE_S <= elapsed < 2 * DEADLINE_S


def test_timeout_in_the_limits_bounds_an_upload(hour_clip):
    data = hour_clip.read_bytes()
    start = time.monotonic()
    with pytest.raises(VideoError, match="ran past its deadline") as info:
        decode_video_bytes(data, 8, limits=DecodeLimits(timeout_s=DEADLINE_S))
    assert time.monotonic() - start < 2 * DEADLINE_S
    _one_line(info.value)


def test_a_deadline_already_past_refuses_at_once(colour_clip):
    with pytest.raises(VideoError, match="ran past its deadline"):
        decode_video(colour_clip, 4, deadline=time.monotonic() - 1)
    assert decode_video(colour_clip, 4, deadline=time.monotonic() + 60).shape == (4, 32, 48, 3)


@needs_x264
@pytest.mark.parametrize("ext", ["h264", "ts"])
def test_resolution_change_mid_stream_is_one_line_video_error(tmp_path, ext):
    """Two streams of different sizes back to back (raw H.264 and MPEG-TS concatenate)."""
    first = encode_static(tmp_path / f"a.{ext}", 10, 64, 64)
    second = encode_static(tmp_path / f"b.{ext}", 10, 128, 96)
    path = tmp_path / f"ab.{ext}"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    with av.open(str(path)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(64, 64), (128, 96)}
    with pytest.raises(VideoError, match="changes resolution mid-stream, from 64x64 to 128x96 at frame 10") as info:
        decode_video(path, 4)
    assert f"ab.{ext}" in _one_line(info.value)
    with pytest.raises(VideoError, match="changes resolution"):
        decode_video_bytes(path.read_bytes(), 20)


def decode_every_frame_then_sample(path: Path, count: int) -> np.ndarray:
    """The sampling before decode limits: every frame decoded, uniform_indices over what decoded."""
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack([every[i] for i in uniform_indices(len(every), count)])


@pytest.mark.parametrize("ext, claimed", [("mp4", 20), ("mkv", 0)])
@pytest.mark.parametrize("count", [1, 3, 7, 25])
def test_sampling_is_unchanged_under_limits(tmp_path, ext, claimed, count):
    path = tmp_path / f"noise.{ext}"
    write_video(path, random_frames(7, 20, 32, 48))
    assert header_frames(path) == claimed
    expected = decode_every_frame_then_sample(path, count)
    np.testing.assert_array_equal(decode_video(path, count), expected)
    tight = DecodeLimits(
        max_frame_pixels=48 * 32, max_frames=20, max_decode_pixels=20 * 48 * 32, max_output_bytes=expected.nbytes, timeout_s=60
    )
    np.testing.assert_array_equal(decode_video(path, count, limits=tight), expected)
    np.testing.assert_array_equal(decode_video_bytes(path.read_bytes(), count, limits=tight), expected)
    np.testing.assert_array_equal(load_frames(path, count, 4, limits=tight), expected)


@pytest.mark.parametrize(
    "field, value",
    [("max_frame_pixels", 0), ("max_frames", -1), ("max_decode_pixels", 0), ("max_output_bytes", 0), ("timeout_s", 0.0)],
)
def test_decode_limits_refuse_values_out_of_range(field, value):
    with pytest.raises(InputError, match=f"{field} must be") as info:
        DecodeLimits(**{field: value})
    _one_line(info.value)
