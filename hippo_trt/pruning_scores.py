"""The score maths of the pruning methods (``hippo_trt.pruning``), numpy, float32.

Determinism: every score is float32 and computed with a fixed operation order (sums over the
feature axis are sequential, left to right, like ONNX CumSum), so ``export/prune_graph.py``
reproduces the scores bit for bit; top-k breaks ties by the lower index first (ONNX TopK's rule).

- global importance: the target's attention, position-debiased (``debiased_importance``);
- local scores: the spatial-temporal redundancy of the features (``temporal_score``,
  ``spatial_score``);
- fusion: ``fused_score`` (HIPPO), selected with ``top_k``;
- SpecVLM's two stages over the grid tokens (``specvlm_grid_indices``).
"""

from __future__ import annotations

import enum

import numpy as np

from hippo_trt.errors import InputError
from hippo_trt.token_grid import TokenGrid, grid_features, grid_vector

LOG_EPS = 1e-12  # keeps log(attention) finite for an attention of exactly 0
DEBIAS_STEP = 2.0**-10  # resolution of the debiased log-importance (0.1 % relative attention)
NORM_EPS = np.float32(1e-12)  # a zero feature vector stays zero instead of dividing by 0


class Debias(enum.Enum):
    """How the position bias is taken out of the attention importance (see ``debiased_importance``)."""

    NONE = "none"  # log attention as is
    TREND = "trend"  # subtract a least-squares linear trend of log attention over the token index
    REFERENCE = "reference"  # divide by a caller-given per-position reference attention


# --- global importance: position debiasing --------------------------------------------------


def linear_trend(y: np.ndarray) -> np.ndarray:
    """Least-squares line alpha + beta * i through y [G] over i = 0..G-1, float64 [G]."""
    i = np.arange(len(y), dtype=np.float64)
    di = i - i.mean()
    denom = float(di @ di)
    beta = float(di @ (y - y.mean())) / denom if denom > 0 else 0.0
    alpha = y.mean() - beta * i.mean()
    return alpha + beta * i


def debiased_importance(
    importance: np.ndarray, grid: TokenGrid, debias: Debias = Debias.TREND, reference: np.ndarray | None = None
) -> np.ndarray:
    """Position-debiased log-importance of the grid tokens, float32 [G].

    Causal attention over-weights some positions whatever they show: attention sinks at the
    start of the video, recency near its end. Such a bias is smooth in the token index, a content
    signal is not, so in log space (where a multiplicative position bias is additive):

        TREND:     s_i = log(a_i + eps) - (alpha + beta * i), (alpha, beta) the least-squares fit of
                   log(a_i + eps) over the grid index i (no calibration data needed; a pure
                   exponential trend a_i = exp(c + b * i) leaves every s_i equal);
        REFERENCE: s_i = log(a_i + eps) - log(r_i + eps), i.e. a_i / r_i with r_i the mean attention
                   position i receives over a reference set (given by the caller, [n] or [G]);
        NONE:      s_i = log(a_i + eps).

    The fit is done in float64; s is rounded to a multiple of DEBIAS_STEP (2^-10, a 0.1 % relative
    attention difference) so differences at float32 input precision become exact ties, broken by
    the lower index, and so the result is exactly representable in float32.
    importance [n] (or [G]) raw attention >= 0; the extra tokens' values are ignored.
    """
    a = grid_vector(importance, grid, "importance").astype(np.float64)  # [G]
    log_a = np.log(a + LOG_EPS)
    if debias is Debias.TREND:
        log_a = log_a - linear_trend(log_a)
    elif debias is Debias.REFERENCE:
        if reference is None:
            raise InputError("debias 'reference' needs a reference attention vector: pass reference=")
        r = grid_vector(reference, grid, "reference").astype(np.float64)  # [G]
        log_a = log_a - np.log(r + LOG_EPS)
    return (np.round(log_a / DEBIAS_STEP) * DEBIAS_STEP).astype(np.float32)


# --- local scores: spatial-temporal redundancy of the features ------------------------------


def seq_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, sequentially left to right in float32 (ONNX CumSum's last element):
    the one summation order both numpy and the ONNX graph reproduce bit for bit."""
    return np.cumsum(x, axis=-1, dtype=np.float32)[..., -1]


def unit_features(features: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The grid tokens' features scaled to unit L2 norm, float32 [F, H, W, D] (zero rows stay 0)."""
    x = grid_features(features, grid).reshape(*grid.shape, -1)  # [F, H, W, D]
    norm = np.sqrt(seq_sum(x * x))  # [F, H, W]
    return x / np.maximum(norm, NORM_EPS)[..., None]


def temporal_partner(frames: int) -> np.ndarray:
    """The frame each frame is compared with: the previous one, frame 0 the next one (itself when
    there is a single frame): min(|f - 1|, F - 1), int64 [F]."""
    return np.minimum(np.abs(np.arange(frames, dtype=np.int64) - 1), frames - 1)


def temporal_score(u: np.ndarray) -> np.ndarray:
    """1 - cos(token, same (row, col) token in the partner frame), float32 [F, H, W].
    u [F, H, W, D] unit features."""
    return np.float32(1) - seq_sum(u * u[temporal_partner(u.shape[0])])


def spatial_score(u: np.ndarray) -> np.ndarray:
    """1 - mean cos(token, its 4-neighbours inside the frame), float32 [F, H, W].

    Neighbour cosines are added in the order up, down, left, right (a missing neighbour adds 0)
    and divided by the neighbour count (a token without neighbours scores 1).
    u [F, H, W, D] unit features."""
    vert = seq_sum(u[:, 1:] * u[:, :-1])  # [F, H-1, W]: cos(row r+1, row r)
    horiz = seq_sum(u[:, :, 1:] * u[:, :, :-1])  # [F, H, W-1]: cos(col c+1, col c)
    up, down = _pad(vert, 1, (1, 0)), _pad(vert, 1, (0, 1))  # [F, H, W] each
    left, right = _pad(horiz, 2, (1, 0)), _pad(horiz, 2, (0, 1))
    total = ((up + down) + left) + right
    ones_v, ones_h = np.ones_like(vert), np.ones_like(horiz)
    count = ((_pad(ones_v, 1, (1, 0)) + _pad(ones_v, 1, (0, 1))) + _pad(ones_h, 2, (1, 0))) + _pad(ones_h, 2, (0, 1))
    return np.float32(1) - total / np.maximum(count, np.float32(1))


def _pad(x: np.ndarray, axis: int, before_after: tuple[int, int]) -> np.ndarray:
    widths = [(0, 0)] * x.ndim
    widths[axis] = before_after
    return np.pad(x, widths)


# --- fusion and selection -------------------------------------------------------------------


def minmax(x: np.ndarray, axis=None) -> np.ndarray:
    """(x - min) / (max - min) over ``axis`` in float32; a constant slice maps to 0."""
    lo = x.min(axis=axis, keepdims=True)
    span = x.max(axis=axis, keepdims=True) - lo
    return (x - lo) / np.where(span > 0, span, np.float32(1))


def fused_score(
    grid: TokenGrid, weights: np.ndarray, global_score: np.ndarray | None = None, features: np.ndarray | None = None
) -> np.ndarray:
    """HIPPO's fused score of the grid tokens, float32 [G]:

        score = (w_g * S_global + w_t * S_temporal) + w_s * S_spatial

    in that order, with S_global = min-max of the debiased log-importance over the whole video
    (global: it carries the target's judgement of which frames matter, a per-frame normalisation
    would give every frame an equally important token), and S_temporal, S_spatial min-max
    normalised per frame (redundancy is relative to the frame: a scene cut would otherwise make one
    frame take the whole budget). All in [0, 1].

    weights [3] (w_g, w_t, w_s); a zero-weight term is skipped (it adds exactly 0, as in the graph),
    so ``global_score`` [G] (from ``debiased_importance``) and ``features`` [n, D] are only needed
    where their weights are > 0.
    """
    w_g, w_t, w_s = np.asarray(weights, dtype=np.float32)
    score = np.zeros(grid.grid_count, dtype=np.float32)  # [G]
    if w_g > 0:
        score = w_g * minmax(np.asarray(global_score, dtype=np.float32).reshape(-1))
    if w_t > 0 or w_s > 0:
        u = unit_features(features, grid)  # [F, H, W, D]
        if w_t > 0:
            score = score + w_t * minmax(temporal_score(u), axis=(1, 2)).reshape(-1)
        if w_s > 0:
            score = score + w_s * minmax(spatial_score(u), axis=(1, 2)).reshape(-1)
    return score


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, ties to the lower index (ONNX TopK), sorted ascending."""
    order = np.argsort(-score, kind="stable")  # [G]
    return np.sort(order[:k]).astype(np.int64)


# --- SpecVLM --------------------------------------------------------------------------------


def specvlm_stage1_count(mass: np.ndarray, budget: int, fraction: float) -> int:
    """Stage I size: the fewest top tokens whose cumulative mass reaches ``fraction`` of the total,
    capped at ``budget``. Sums are float32, sequential in descending-mass order; total = the last
    cumulative sum. mass [G] >= 0."""
    csum = np.cumsum(-np.sort(-mass, kind="stable"), dtype=np.float32)  # [G]
    target = np.float32(fraction) * csum[-1]
    return min(int(np.count_nonzero(csum < target)) + 1, budget)


def linspace_floor(count: int, length: int) -> np.ndarray:
    """``count`` positions evenly spaced over [0, length - 1]: floor(j * (length - 1) / (count - 1)),
    in exact integer arithmetic (SpecVLM: torch.linspace(..., dtype=long)); unique if count <= length."""
    j = np.arange(count, dtype=np.int64)
    return j * (length - 1) // max(count - 1, 1)


def specvlm_grid_indices(mass: np.ndarray, budget: int, fraction: float) -> np.ndarray:
    """SpecVLM's two stages over the grid tokens, sorted int64 [budget]. mass [G].

    Stage I: the ``specvlm_stage1_count`` top-mass tokens (ties to the lower index).
    Stage II: the rest of the budget at ``linspace_floor`` positions among the remaining tokens
    in flattened (frame-major) order."""
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    c1 = specvlm_stage1_count(mass, budget, fraction)
    stage1 = np.argsort(-mass, kind="stable")[:c1]  # [c1]
    available = np.ones(len(mass), dtype=bool)
    available[stage1] = False
    rest = np.flatnonzero(available)  # [G - c1]
    stage2 = rest[linspace_floor(budget - c1, len(rest))]  # [budget - c1]
    return np.sort(np.concatenate([stage1, stage2])).astype(np.int64)
