"""The dims table: ranges, checks with one-line messages, JSON round trip, limits -> table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_trt.dims import SYMBOLS, TEXT_BUDGET, DimRange, DimsTable, ExportLimits
from hippo_trt.errors import InputError, ProfileError

# --- DimRange ------------------------------------------------------------------------------


def test_dim_range_accepts_ordered_values_and_reports_static():
    r = DimRange(1, 4, 8)
    assert (r.min, r.opt, r.max) == (1, 4, 8)
    assert not r.static
    assert DimRange(3, 3, 3).static
    assert DimRange(0, 0, 5).as_dict() == {"min": 0, "opt": 0, "max": 5}


@pytest.mark.parametrize("bad", [(2, 1, 3), (1, 5, 4), (5, 5, 4), (-1, 0, 3), (0, -1, 3)])
def test_dim_range_rejects_unordered_or_negative(bad):
    with pytest.raises(ProfileError, match="bad dim range") as info:
        DimRange(*bad)
    assert f"min={bad[0]} opt={bad[1]} max={bad[2]}" in str(info.value)
    assert isinstance(info.value, InputError)  # ProfileError is a user error (exit code 2)


def test_dim_range_is_immutable():
    r = DimRange(1, 2, 3)
    with pytest.raises(AttributeError):
        r.max = 10  # type: ignore[misc]


# --- DimsTable -----------------------------------------------------------------------------


def _table() -> DimsTable:
    return DimsTable({"frames": DimRange(1, 4, 6), "seq": DimRange(1, 100, 200)})


def test_table_lookup_and_unknown_symbol():
    t = _table()
    assert t["frames"] == DimRange(1, 4, 6)
    with pytest.raises(ProfileError, match="unknown symbolic dim\\(s\\): bogus, zzz"):
        DimsTable({"zzz": DimRange(1, 1, 1), "bogus": DimRange(1, 1, 1), "seq": DimRange(1, 1, 1)})


def test_table_missing_symbol_is_an_error_not_a_default():
    t = _table()
    assert "past" in SYMBOLS  # a known symbol ...
    with pytest.raises(ProfileError, match="symbolic dim 'past' has no range in the dims table"):
        t["past"]  # ... without a range
    with pytest.raises(ProfileError, match="'past' has no range"):
        t.check("past", 3)


def test_table_check_inside_range_passes_at_both_ends():
    t = _table()
    for v in (1, 3, 6):
        t.check("frames", v)
    t.check("seq", 200, what="prompt")


@pytest.mark.parametrize("value", [0, 7, 1000])
def test_table_check_outside_range_names_symbol_range_and_meaning(value):
    t = _table()
    with pytest.raises(ProfileError) as info:
        t.check("frames", value, what="video")
    msg = str(info.value)
    assert msg.startswith(f"video: frames = {value} is outside the exported range [1, 6]")
    assert SYMBOLS["frames"] in msg
    assert "re-export with larger limits" in msg
    assert "\n" not in msg


def test_table_check_without_what_has_no_prefix():
    with pytest.raises(ProfileError) as info:
        _table().check("seq", 201)
    assert str(info.value).startswith("seq = 201 is outside the exported range [1, 200]")


def test_table_is_read_only_and_copies_its_input():
    ranges = {"frames": DimRange(1, 2, 3)}
    t = DimsTable(ranges)
    ranges["seq"] = DimRange(1, 1, 1)  # mutating the caller's dict does not change the table
    assert "seq" not in t.ranges
    with pytest.raises(TypeError):
        t.ranges["seq"] = DimRange(1, 1, 1)  # type: ignore[index]


def test_table_json_round_trip_through_text():
    t = ExportLimits(max_frames=6, max_seq=200, max_spec_len=6).dims(4)
    obj = t.to_json()
    assert list(obj) == sorted(obj)
    again = DimsTable.from_json(json.loads(json.dumps(obj)))
    assert again == t
    assert again.to_json() == obj


def test_table_from_json_validates():
    with pytest.raises(ProfileError, match="bad dim range"):
        DimsTable.from_json({"seq": {"min": 5, "opt": 1, "max": 9}})
    with pytest.raises(ProfileError, match="unknown symbolic dim"):
        DimsTable.from_json({"nope": {"min": 1, "opt": 1, "max": 1}})


ranges = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000)).map(sorted)


@given(st.dictionaries(st.sampled_from(sorted(SYMBOLS)), ranges))
def test_table_json_round_trip_property(table):
    t = DimsTable({k: DimRange(*v) for k, v in table.items()})
    assert DimsTable.from_json(t.to_json()) == t


@given(lo_opt_hi=ranges, value=st.integers(-5, 10_010))
def test_check_agrees_with_inclusive_range(lo_opt_hi, value):
    lo, opt, hi = lo_opt_hi
    t = DimsTable({"past": DimRange(lo, opt, hi)})
    if lo <= value <= hi:
        t.check("past", value)
    else:
        with pytest.raises(ProfileError, match=f"past = {value} is outside the exported range \\[{lo}, {hi}\\]"):
            t.check("past", value)


# --- ExportLimits --------------------------------------------------------------------------


def test_limits_defaults():
    lim = ExportLimits()
    assert (lim.max_frames, lim.max_seq, lim.max_spec_len) == (32, None, 9)  # max_seq: resolved per model
    assert TEXT_BUDGET == 2048


@pytest.mark.parametrize("field,flag", [("max_frames", "--max-frames"), ("max_seq", "--max-seq"), ("max_spec_len", "--max-spec-len")])
@pytest.mark.parametrize("value", [1, 0, -3])
def test_limits_below_two_rejected_with_flag_name(field, flag, value):
    with pytest.raises(ProfileError, match=f"^{flag} must be at least 2$"):
        ExportLimits(**{field: value})


def test_limits_dims_table_contents():
    t = ExportLimits(max_frames=6, max_seq=200, max_spec_len=6).dims(4)
    assert set(t.ranges) == set(SYMBOLS) - {"kept_tokens", "grid_t", "grid_tokens"}  # grid: Qwen2.5-VL only
    assert t["batch"] == DimRange(1, 1, 1)
    assert t["frames"] == DimRange(1, 6, 6)
    assert t["vis_tokens"] == DimRange(5, 25, 25)  # 6 frames * 4 + newline
    assert t["seq"] == DimRange(1, 200, 200)
    assert t["past"] == DimRange(0, 200, 200)  # 0: a prefill has no past
    assert t["spec_len"] == DimRange(1, 1, 6)


def test_limits_dims_opt_capped_for_large_limits():
    t = ExportLimits(max_frames=32, max_seq=4096, max_spec_len=8).dims(100)
    assert t["frames"] == DimRange(1, 8, 32)
    assert t["seq"] == DimRange(1, 1024, 4096)
    assert t["past"] == DimRange(0, 1024, 4096)
    assert t["vis_tokens"] == DimRange(101, 3201, 3201)


def test_limits_too_many_visual_tokens_for_max_seq():
    lim = ExportLimits(max_frames=10, max_seq=40, max_spec_len=2)
    with pytest.raises(ProfileError) as info:
        lim.dims(4)  # 41 visual tokens >= 40
    msg = str(info.value)
    assert "--max-frames 10 gives 41 visual tokens" in msg and "--max-seq 40" in msg
    # exactly one token of room is enough
    assert ExportLimits(max_frames=10, max_seq=42, max_spec_len=2).dims(4)["vis_tokens"].max == 41


# --- max_seq left out: the longest video's visual tokens plus the text budget ---------------


@pytest.mark.parametrize(
    "per_frame,newline,frames_per_slice,visual",
    [
        (196, 1, 1, 32 * 196 + 1),  # LLaVA-OneVision: 27x27 SigLIP patches pooled to 14x14, + newline
        (768, 0, 2, 16 * 768),  # Qwen2.5-VL: 16 temporal slices of up to 768 merged tokens
    ],
    ids=["llava-onevision", "qwen2.5-vl"],
)
def test_default_max_seq_fits_real_videos(per_frame, newline, frames_per_slice, visual):
    lim = ExportLimits()
    assert lim.max_visual_tokens(per_frame, newline, frames_per_slice) == visual
    assert lim.resolved_max_seq(per_frame, newline, frames_per_slice) == visual + TEXT_BUDGET
    t = lim.dims(per_frame, newline, frames_per_slice)
    assert t["vis_tokens"].max == t["scored_tokens"].max == visual
    for symbol in ("seq", "queries", "past"):
        assert t[symbol].max == visual + TEXT_BUDGET
    assert t["seq"].opt == t["past"].opt == 1024


def test_llava_onevision_real_video_refused_by_the_old_4096_but_not_by_default():
    with pytest.raises(ProfileError, match="--max-frames 32 gives 6273 visual tokens, more than --max-seq 4096"):
        ExportLimits(max_seq=4096).dims(196)
    assert ExportLimits().dims(196)["seq"].max == 6273 + TEXT_BUDGET


def test_explicit_max_seq_wins_and_is_not_resolved():
    lim = ExportLimits(max_frames=6, max_seq=200)
    assert lim.resolved_max_seq(4) == 200
    assert lim.dims(4)["seq"].max == 200


def test_too_small_explicit_max_seq_says_how_to_fix_it():
    with pytest.raises(ProfileError) as info:
        ExportLimits(max_frames=8, max_seq=20).dims(4)
    msg = str(info.value)
    assert "--max-frames 8 gives 33 visual tokens, more than --max-seq 20" in msg
    assert f"raise --max-seq (or leave it out: visual tokens + {TEXT_BUDGET}) or lower --max-frames" in msg
    assert "\n" not in msg


@given(frames=st.integers(2, 256), per_frame=st.integers(1, 2000), newline=st.integers(0, 1), per_slice=st.integers(1, 4))
def test_default_max_seq_always_leaves_the_text_budget(frames, per_frame, newline, per_slice):
    t = ExportLimits(max_frames=frames).dims(per_frame, newline, per_slice)
    assert t["seq"].max - t["vis_tokens"].max == TEXT_BUDGET
