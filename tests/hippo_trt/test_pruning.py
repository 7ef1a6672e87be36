"""Pruning reference (numpy): budgets, layout, determinism, debiasing, local scores, SpecVLM's stages, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt import pruning as P
from hippo_trt import pruning_scores as S
from hippo_trt.errors import InputError
from hippo_trt.pruning import PruneOptions, select_kept
from hippo_trt.pruning_scores import Debias
from hippo_trt.token_grid import TokenGrid

SCORE_METHODS = ("attention", "local", "hippo", "specvlm")


def _inputs(grid: TokenGrid, seed: int, dim: int = 6):
    rng = np.random.default_rng(seed)
    importance = rng.random(grid.n).astype(np.float32)  # [n]
    features = rng.standard_normal((grid.n, dim)).astype(np.float32)  # [n, D]
    return importance, features


def _select(method, grid, keep, importance=None, features=None, **kw):
    return select_kept(method, grid.n, keep, grid=grid, importance=importance, features=features, **kw)


grids = st.builds(
    TokenGrid,
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 2),
)


# --- every method: k unique sorted indices --------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(grid=grids, keep=st.floats(0.01, 1.0), seed=st.integers(0, 2**16), method=st.sampled_from(sorted(P.METHODS)))
def test_every_method_returns_k_unique_sorted_indices(grid, keep, seed, method):
    k = P.kept_count(grid.n, keep)
    importance, features = _inputs(grid, seed)
    if method in SCORE_METHODS and k < grid.extra:
        with pytest.raises(InputError, match="keep ratio too small"):
            _select(method, grid, keep, importance, features)
        return
    kept = _select(method, grid, keep, importance, features)
    assert kept.dtype == np.int64
    assert len(kept) == (grid.n if method == "none" else k)
    assert np.all(np.diff(kept) > 0)  # sorted and unique
    assert kept[0] >= 0 and kept[-1] < grid.n
    if method in SCORE_METHODS:  # the trailing newline (extra) tokens are always in
        assert set(range(grid.grid_count, grid.n)) <= set(kept.tolist())


def test_old_positional_calls_still_work():
    assert np.array_equal(select_kept("none", 7, 0.5), np.arange(7))
    assert np.array_equal(select_kept("uniform", 100, 0.1), P.uniform_indices(100, 0.1))
    assert "hippo" in P.METHODS and "uniform" in P.METHODS


@pytest.mark.parametrize("n,keep", [(10, 0.3), (100, 0.1), (37, 0.25), (5, 1.0)])
def test_uniform_is_evenly_spaced(n, keep):
    kept = select_kept("uniform", n, keep)
    assert len(kept) == P.kept_count(n, keep) and kept[0] == 0
    gaps = np.diff(np.append(kept, n))  # including the wrap to n
    assert gaps.max() - gaps.min() <= 1


def test_random_is_seeded_and_differs_across_seeds():
    runs = [select_kept("random", 200, 0.1, options=PruneOptions(seed=s)) for s in (1, 1, 2)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert len(runs[0]) == 20 and len(np.unique(runs[0])) == 20


def test_top_k_ties_go_to_the_lower_index():
    score = np.array([1, 3, 3, 2, 3, 1], dtype=np.float32)
    assert S.top_k(score, 2).tolist() == [1, 2]
    assert S.top_k(np.zeros(6, np.float32), 3).tolist() == [0, 1, 2]
    score = np.random.default_rng(0).integers(0, 3, 500).astype(np.float32)  # long runs of ties
    by_score_then_index = np.lexsort((np.arange(500), -score))
    assert S.top_k(score, 200).tolist() == sorted(by_score_then_index[:200].tolist())


# --- local: spatial-temporal distinctiveness ------------------------------------------------


def _moving_object(frames=4, size=4):
    """A static background (one feature vector) with a distinct object moving one column a frame."""
    grid = TokenGrid(frames, size, size)
    feats = np.zeros((frames, size, size, 3), np.float32)
    feats[..., 0] = 1.0  # background
    for f in range(frames):
        feats[f, 1, f % size] = (0.0, 1.0, 0.0)  # the object at row 1, col f
    object_index = [f * size * size + size + f % size for f in range(frames)]
    features = np.concatenate([feats.reshape(-1, 3), np.ones((1, 3), np.float32)])  # + newline
    return grid, features, object_index


def test_local_ranks_a_moving_object_above_the_static_background():
    grid, features, obj = _moving_object()
    keep = (len(obj) + grid.extra) / grid.n
    kept = _select("local", grid, keep, features=features)
    assert kept.tolist() == obj + [grid.grid_count]
    score = S.fused_score(grid, P.method_weights("local", PruneOptions()), features=features)
    background = np.setdiff1d(np.arange(grid.grid_count), obj)
    assert score[obj].min() > score[background].max()


def test_local_scores_single_frame_and_single_token_grids_are_defined():
    for grid in (TokenGrid(1, 3, 3), TokenGrid(2, 1, 1), TokenGrid(1, 1, 1)):
        _, features = _inputs(grid, 0)
        u = S.unit_features(features, grid)
        assert np.all(np.isfinite(S.temporal_score(u))) and np.all(np.isfinite(S.spatial_score(u)))
    assert S.temporal_partner(1).tolist() == [0]
    assert S.temporal_partner(4).tolist() == [1, 0, 1, 2]
    u = S.unit_features(np.ones((1, 4), np.float32), TokenGrid(1, 1, 1, extra=0))
    assert S.spatial_score(u).item() == 1.0  # no neighbours: mean cosine 0


def test_zero_features_stay_finite():
    grid = TokenGrid(2, 2, 2)
    score = S.fused_score(grid, np.array([0, 1, 1], np.float32), features=np.zeros((grid.n, 4), np.float32))
    assert np.all(score == 0)  # every token alike: the per-frame normalisation maps them to 0


def test_minmax_maps_a_constant_slice_to_zero_and_spans_unit_range():
    x = np.array([[[2.0, 2.0]], [[1.0, 3.0]]], np.float32)  # [F=2, H=1, W=2]
    assert S.minmax(x, axis=(1, 2)).tolist() == [[[0.0, 0.0]], [[0.0, 1.0]]]


# --- position debiasing ---------------------------------------------------------------------


@pytest.mark.parametrize("slope", [-0.2, -0.03, 0.05, 0.15])
def test_trend_debiasing_removes_a_pure_linear_log_trend(slope):
    grid = TokenGrid(3, 4, 5)
    i = np.arange(grid.n)
    importance = np.exp(1.5 + slope * i).astype(np.float32)  # [n] position bias only
    assert len(np.unique(S.debiased_importance(importance, grid))) == 1
    kept = _select("attention", grid, 6 / grid.n, importance)
    assert kept.tolist() == [0, 1, 2, 3, 4, grid.grid_count]  # all tied: the lower indices win
    raw = _select("attention", grid, 6 / grid.n, importance, options=PruneOptions(debias=Debias.NONE))
    expect = i[: grid.grid_count][::-1][:5] if slope > 0 else i[:5]  # the bias picks one end
    assert raw[:-1].tolist() == sorted(expect.tolist())


def test_trend_debiasing_preserves_a_content_spike_on_a_trend():
    grid = TokenGrid(2, 5, 6)
    importance = np.exp(0.1 * np.arange(grid.n)).astype(np.float32)  # recency: the end dominates
    spike = 17
    importance[spike] *= 5.0  # far below the last tokens' raw attention
    keep = 2 / grid.n  # one grid token + the newline
    assert _select("attention", grid, keep, importance).tolist() == [spike, grid.grid_count]
    raw = _select("attention", grid, keep, importance, options=PruneOptions(debias=Debias.NONE))
    assert raw.tolist() == [grid.grid_count - 1, grid.grid_count]


def test_reference_debiasing_divides_by_the_per_position_reference():
    grid = TokenGrid(2, 3, 3)
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.5, 50.0, grid.n).astype(np.float32)  # [n] arbitrary position profile
    content = np.ones(grid.n, np.float32)
    content[[4, 11]] = (3.0, 2.0)
    options = PruneOptions(debias=Debias.REFERENCE)
    kept = _select("attention", grid, 3 / grid.n, reference * content, reference=reference, options=options)
    assert kept.tolist() == [4, 11, grid.grid_count]
    with pytest.raises(InputError, match="reference"):
        _select("attention", grid, 0.5, content, options=options)


def test_linear_trend_is_the_least_squares_line():
    y = np.array([1.0, 2.0, 2.0, 5.0])
    beta, alpha = np.polyfit(np.arange(4), y, 1)
    np.testing.assert_allclose(S.linear_trend(y), alpha + beta * np.arange(4))
    assert S.linear_trend(np.array([3.0])).tolist() == [3.0]  # one token: its own level


# --- SpecVLM --------------------------------------------------------------------------------


def test_specvlm_stage1_is_the_fewest_top_tokens_reaching_the_fraction():
    mass = np.array([1, 2, 3, 4], np.float32)  # sorted 4, 3, 2, 1; cumulative 4, 7, 9, 10
    assert S.specvlm_stage1_count(mass, 4, 0.4) == 1  # 4 >= 4
    assert S.specvlm_stage1_count(mass, 4, 0.5) == 2  # 7 >= 5
    assert S.specvlm_stage1_count(mass, 4, 1.0) == 4
    assert S.specvlm_stage1_count(mass, 2, 1.0) == 2  # capped at the budget
    assert S.specvlm_stage1_count(np.zeros(5, np.float32), 3, 0.4) == 1  # no attention at all


def test_specvlm_stage2_spreads_the_rest_evenly_over_the_remaining_tokens():
    mass = np.ones(10, np.float32)
    mass[7] = 20.0  # 20 of 29 >= 0.4: stage I is token 7 alone
    # the 9 remaining tokens [0..6, 8, 9]; 3 positions floor(j * 8 / 2) = 0, 4, 8 -> tokens 0, 4, 9
    assert S.specvlm_grid_indices(mass, 4, 0.4).tolist() == [0, 4, 7, 9]
    assert S.specvlm_grid_indices(mass, 0, 0.4).tolist() == []
    assert S.specvlm_grid_indices(np.ones(6, np.float32), 3, 1.0).tolist() == [0, 1, 2]  # all stage I


def test_specvlm_keeps_the_newline_and_uses_the_fraction_option():
    grid = TokenGrid(1, 3, 4)
    importance = np.ones(grid.n, np.float32)
    importance[[2, 9]] = (30.0, 20.0)  # 50 of 60 visual attention
    low = _select("specvlm", grid, 4 / grid.n, importance, options=PruneOptions(specvlm_fraction=0.4))
    high = _select("specvlm", grid, 4 / grid.n, importance, options=PruneOptions(specvlm_fraction=0.8))
    # 0.4: stage I {2}, stage II 2 of the 11 others at 0, 10 -> tokens 0, 11
    assert low.tolist() == [0, 2, 11, grid.grid_count]
    # 0.8: stage I {2, 9}, stage II 1 at position 0 -> token 0
    assert high.tolist() == [0, 2, 9, grid.grid_count]


@pytest.mark.parametrize("count,length", [(1, 5), (3, 3), (4, 10), (7, 7), (2, 2), (5, 100)])
def test_linspace_floor_is_unique_and_spans_the_ends(count, length):
    pos = S.linspace_floor(count, length)
    assert len(np.unique(pos)) == count and pos[0] == 0
    if count > 1:
        assert pos[-1] == length - 1


# --- errors ---------------------------------------------------------------------------------


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(InputError, match="unknown pruning method 'topk'.*hippo.*specvlm"):
        select_kept("topk", 10, 0.5)


@pytest.mark.parametrize(
    "method,given,missing",
    [
        ("attention", {"features"}, "importance"),
        ("local", {"importance"}, "features"),
        ("hippo", {"importance"}, "features"),
        ("hippo", set(), "importance .* and features"),
        ("specvlm", {"features"}, "importance"),
    ],
)
def test_missing_inputs_are_named(method, given, missing):
    grid = TokenGrid(2, 2, 2)
    importance, features = _inputs(grid, 0)
    kw = {"importance": importance if "importance" in given else None, "features": features if "features" in given else None}
    with pytest.raises(InputError, match=f"'{method}' needs {missing}"):
        select_kept(method, grid.n, 0.5, grid=grid, **kw)
    with pytest.raises(InputError, match="needs grid"):
        select_kept(method, grid.n, 0.5, importance=importance, features=features)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"w_global": -0.1}, "finite and >= 0"),
        ({"w_spatial": float("nan")}, "finite and >= 0"),
        ({"w_global": 0, "w_temporal": 0, "w_spatial": 0}, "all zero"),
        ({"specvlm_fraction": 0.0}, r"fraction must be in \(0, 1\]"),
        ({"specvlm_fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"debias": "trend"}, "unknown debias mode .*available: none, trend, reference"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        PruneOptions(**kwargs)


def test_bad_inputs_are_input_errors():
    grid = TokenGrid(2, 2, 2)
    importance, features = _inputs(grid, 0)
    with pytest.raises(InputError, match="has 9 tokens, but the video has 12"):
        select_kept("hippo", 12, 0.5, grid=grid, importance=np.ones(12), features=np.ones((12, 2)))
    with pytest.raises(InputError, match="finite and >= 0"):
        _select("attention", grid, 0.5, -importance)
    with pytest.raises(InputError, match="importance has 5 values"):
        _select("attention", grid, 0.5, importance[:5])
    with pytest.raises(InputError, match=r"features must be \[9, D\]"):
        _select("local", grid, 0.5, features=features[:, 0])
    with pytest.raises(InputError, match="local' needs w_temporal or w_spatial"):
        _select("local", grid, 0.5, features=features, options=PruneOptions(w_global=1, w_temporal=0, w_spatial=0))
    with pytest.raises(InputError, match="keep ratio"):
        select_kept("uniform", 10, 0.0)
    for bad in ((0, 2, 2), (2, -1, 2)):
        with pytest.raises(InputError, match="frames, height, width >= 1"):
            TokenGrid(*bad)
    with pytest.raises(InputError, match="fewer than the 3 extra tokens"):
        _select("attention", TokenGrid(2, 2, 2, extra=3), 0.1, np.ones(11, np.float32))
