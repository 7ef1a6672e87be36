"""Which visual tokens the draft keeps (reference implementations, numpy).

Every method returns sorted int64 indices into the video's visual tokens [0, n), i.e. the kept
tokens in their original order, exactly ``kept_count(n, keep)`` of them, unique.

Token layout (LLaVA-OneVision video): ``frames * height * width`` pooled grid tokens in
frame-major order (frame, row, col), then ``extra`` trailing tokens (one newline token), see
``TokenGrid``. The score-based methods (``attention``, ``local``, ``hippo``, ``specvlm``) always keep
the extra tokens; they count toward the budget k.

Methods:

- ``none``: every token. ``uniform``: evenly strided. ``random``: seeded, uniformly at random.
- ``attention``: the target's (position-debiased) attention from the text after the video, top-k.
- ``local``: local spatial-temporal distinctiveness of the features (cosine), top-k.
- ``hippo``: a weighted fusion of the two, top-k (``fused_score``).
- ``specvlm``: SpecVLM's two stages: the top-attention tokens holding ``specvlm_fraction`` of the
  attention, then the rest of the budget evenly spaced among the remaining tokens.

Determinism: every score is float32 and computed with a fixed operation order (sums over the
feature axis are sequential, left to right, like ONNX CumSum), so ``export/prune_graph.py``
reproduces the scores bit for bit; top-k breaks ties by the lower index first (ONNX TopK's rule).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hippo_trt.errors import InputError

LOG_EPS = 1e-12  # keeps log(attention) finite for an attention of exactly 0
DEBIAS_STEP = 2.0**-10  # resolution of the debiased log-importance (0.1 % relative attention)
NORM_EPS = np.float32(1e-12)  # a zero feature vector stays zero instead of dividing by 0


def kept_count(n: int, keep: float) -> int:
    """ceil(keep * n), at least 1; ``keep`` in (0, 1]."""
    if not 0.0 < keep <= 1.0:
        raise InputError(f"keep ratio must be in (0, 1], got {keep}")
    return max(1, math.ceil(keep * n - 1e-9))


def uniform_indices(n: int, keep: float) -> np.ndarray:
    """Evenly strided over the frame-major token order: spatially and temporally uniform."""
    k = kept_count(n, keep)
    return np.unique(np.floor(np.arange(k) * n / k).astype(np.int64))


def all_indices(n: int, keep: float) -> np.ndarray:
    """No pruning: every token (``keep`` is ignored)."""
    return np.arange(n, dtype=np.int64)


def random_indices(n: int, keep: float, seed: int = 0) -> np.ndarray:
    """k tokens drawn uniformly without replacement with numpy's PCG64 seeded by ``seed``."""
    k = kept_count(n, keep)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)).astype(np.int64)


# --- layout and options ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGrid:
    """``frames * height * width`` grid tokens (frame-major), then ``extra`` trailing tokens."""

    frames: int
    height: int
    width: int
    extra: int = 1

    def __post_init__(self):
        dims = (self.frames, self.height, self.width)
        if any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise InputError(f"token grid needs frames, height, width >= 1, got {dims}")
        if not isinstance(self.extra, (int, np.integer)) or self.extra < 0:
            raise InputError(f"token grid extra tokens must be >= 0, got {self.extra}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.frames), int(self.height), int(self.width))

    @property
    def grid_count(self) -> int:
        return int(self.frames * self.height * self.width)

    @property
    def n(self) -> int:
        return self.grid_count + int(self.extra)


class Debias(enum.Enum):
    """How the position bias is taken out of the attention importance (see ``debiased_importance``)."""

    NONE = "none"  # log attention as is
    TREND = "trend"  # subtract a least-squares linear trend of log attention over the token index
    REFERENCE = "reference"  # divide by a caller-given per-position reference attention


@dataclass(frozen=True)
class PruneOptions:
    """Options of the pruning methods.

    Fusion weights (``hippo``; ``local`` uses the temporal and spatial ones): default 0.5 global,
    0.25 temporal, 0.25 spatial. The target's attention is the only query-aware signal (it knows what
    the question asks about), so it gets half the weight; the local scores are query-agnostic
    redundancy estimates with no evidence that one of them dominates, so they split the other half.
    With the three normalised scores in [0, 1], the fused score stays in [0, 1]. To be tuned on the
    demo set against ``attention``, ``local`` and ``specvlm``.

    ``specvlm_fraction``: stage I keeps the top tokens holding this fraction of the attention (0.4 in
    SpecVLM's code). ``debias``: for ``attention`` and ``hippo`` (default ``TREND``: calibration-free).
    ``specvlm_debias``: apply ``debias`` to ``specvlm`` too (default off, as in SpecVLM's code).
    ``seed``: for ``random``.
    """

    w_global: float = 0.5
    w_temporal: float = 0.25
    w_spatial: float = 0.25
    specvlm_fraction: float = 0.4
    debias: Debias = Debias.TREND
    specvlm_debias: bool = False
    seed: int = 0

    def __post_init__(self):
        weights = (self.w_global, self.w_temporal, self.w_spatial)
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise InputError(f"fusion weights must be finite and >= 0, got {weights}")
        if not any(w > 0 for w in weights):
            raise InputError("fusion weights are all zero: give at least one weight > 0")
        if not 0.0 < self.specvlm_fraction <= 1.0:
            raise InputError(f"specvlm fraction must be in (0, 1], got {self.specvlm_fraction}")
        if not isinstance(self.debias, Debias):
            choices = ", ".join(d.value for d in Debias)
            raise InputError(f"unknown debias mode {self.debias!r} (available: {choices})")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"random seed must be an integer >= 0, got {self.seed!r}")


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
    a = _grid_vector(importance, grid, "importance").astype(np.float64)  # [G]
    log_a = np.log(a + LOG_EPS)
    if debias is Debias.TREND:
        log_a = log_a - linear_trend(log_a)
    elif debias is Debias.REFERENCE:
        if reference is None:
            raise InputError("debias 'reference' needs a reference attention vector: pass reference=")
        r = _grid_vector(reference, grid, "reference").astype(np.float64)  # [G]
        log_a = log_a - np.log(r + LOG_EPS)
    return (np.round(log_a / DEBIAS_STEP) * DEBIAS_STEP).astype(np.float32)


# --- local scores: spatial-temporal redundancy of the features ------------------------------


def seq_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, sequentially left to right in float32 (ONNX CumSum's last element):
    the one summation order both numpy and the ONNX graph reproduce bit for bit."""
    return np.cumsum(x, axis=-1, dtype=np.float32)[..., -1]


def unit_features(features: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The grid tokens' features scaled to unit L2 norm, float32 [F, H, W, D] (zero rows stay 0)."""
    x = _grid_features(features, grid).reshape(*grid.shape, -1)  # [F, H, W, D]
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


def with_extra(kept_grid: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """Kept grid indices [kg] followed by every extra token's index: [kg + extra]."""
    return np.concatenate([kept_grid, np.arange(grid.grid_count, grid.n, dtype=np.int64)])


def grid_budget(k: int, grid: TokenGrid) -> int:
    """Grid tokens a budget of k keeps once the extra tokens are in."""
    if k < grid.extra:
        raise InputError(f"keep ratio too small: it keeps {k} tokens, fewer than the {grid.extra} extra tokens")
    return k - int(grid.extra)


def method_weights(method: str, options: PruneOptions) -> np.ndarray:
    """The fusion weights [3] float32 that make ``fused_score`` the score of a graph-backed method."""
    if method == "attention":
        return np.array([1.0, 0.0, 0.0], dtype=np.float32)
    if method == "local":
        if options.w_temporal == 0 and options.w_spatial == 0:
            raise InputError("method 'local' needs w_temporal or w_spatial > 0")
        return np.array([0.0, options.w_temporal, options.w_spatial], dtype=np.float32)
    if method == "hippo":
        return np.array([options.w_global, options.w_temporal, options.w_spatial], dtype=np.float32)
    raise InputError(f"method '{method}' has no fusion weights (only {', '.join(FUSED_METHODS)})")


FUSED_METHODS = ("attention", "local", "hippo")


# --- SpecVLM --------------------------------------------------------------------------------


def specvlm_mass(importance: np.ndarray, grid: TokenGrid, options: PruneOptions, reference=None) -> np.ndarray:
    """The attention mass SpecVLM ranks and sums, float32 [G]: the raw attention, or with
    ``specvlm_debias`` exp(debiased log-importance) = attention / position baseline."""
    if not options.specvlm_debias:
        return _grid_vector(importance, grid, "importance")
    return np.exp(debiased_importance(importance, grid, options.debias, reference).astype(np.float64)).astype(np.float32)


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


# --- dispatch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneRequest:
    """Everything a method may read: n tokens, keep ratio and its budget k = kept_count(n, keep);
    importance [n] raw attention, features [n, D], reference [n]."""

    n: int
    keep: float
    k: int
    options: PruneOptions
    grid: TokenGrid | None = None
    importance: np.ndarray | None = None
    features: np.ndarray | None = None
    reference: np.ndarray | None = None


def _fused(method: str) -> Callable[[PruneRequest], np.ndarray]:
    def select(req: PruneRequest) -> np.ndarray:
        weights = method_weights(method, req.options)
        g = None
        if weights[0] > 0:
            g = debiased_importance(req.importance, req.grid, req.options.debias, req.reference)
        score = fused_score(req.grid, weights, g, req.features)  # [G]
        return with_extra(top_k(score, grid_budget(req.k, req.grid)), req.grid)

    return select


def _specvlm(req: PruneRequest) -> np.ndarray:
    mass = specvlm_mass(req.importance, req.grid, req.options, req.reference)  # [G]
    kept = specvlm_grid_indices(mass, grid_budget(req.k, req.grid), req.options.specvlm_fraction)
    return with_extra(kept, req.grid)


@dataclass(frozen=True)
class Method:
    """A pruning method: what it reads, and its selection."""

    select: Callable[[PruneRequest], np.ndarray]
    needs_importance: bool = False
    needs_features: bool = False

    @property
    def needs_grid(self) -> bool:
        return self.needs_importance or self.needs_features


METHODS: dict[str, Method] = {
    "none": Method(lambda r: all_indices(r.n, r.keep)),
    "uniform": Method(lambda r: uniform_indices(r.n, r.keep)),
    "random": Method(lambda r: random_indices(r.n, r.keep, r.options.seed)),
    "attention": Method(_fused("attention"), needs_importance=True),
    "local": Method(_fused("local"), needs_features=True),
    "hippo": Method(_fused("hippo"), needs_importance=True, needs_features=True),
    "specvlm": Method(_specvlm, needs_importance=True),
}


def select_kept(
    method: str,
    n: int,
    keep: float,
    *,
    grid: TokenGrid | None = None,
    importance: np.ndarray | None = None,
    features: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    options: PruneOptions | None = None,
) -> np.ndarray:
    """Sorted indices [k] of the visual tokens the draft reads (k = n for ``none``).

    ``grid``: the token layout (score methods); ``importance`` [n]: the target's raw attention from
    the text after the video to each visual token (``attention``, ``hippo``, ``specvlm``);
    ``features`` [n, D] (``local``, ``hippo``); ``reference`` [n]: per-position reference attention
    for ``Debias.REFERENCE``.
    """
    if method not in METHODS:
        raise InputError(f"unknown pruning method '{method}' (available: {', '.join(METHODS)})")
    spec = METHODS[method]
    k = kept_count(n, keep)
    _check_inputs(method, spec, n, grid, importance, features)
    req = PruneRequest(n, keep, k, options or PruneOptions(), grid, importance, features, reference)
    return spec.select(req)


def _check_inputs(method: str, spec: Method, n: int, grid, importance, features) -> None:
    missing = [
        name
        for name, need, value in (
            ("grid (the token layout)", spec.needs_grid, grid),
            ("importance (the target's attention to each visual token)", spec.needs_importance, importance),
            ("features (the visual token features)", spec.needs_features, features),
        )
        if need and value is None
    ]
    if missing:
        raise InputError(f"pruning method '{method}' needs {' and '.join(missing)}")
    if spec.needs_grid and grid.n != n:
        raise InputError(f"token grid {grid.shape} + {grid.extra} extra has {grid.n} tokens, but the video has {n}")


def _grid_vector(values: np.ndarray, grid: TokenGrid, name: str) -> np.ndarray:
    """The grid part [G] of a per-token vector [n] (or [G]), float32, checked finite and >= 0."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.shape[0] not in (grid.n, grid.grid_count):
        raise InputError(f"{name} has {v.shape[0]} values, expected {grid.n} (one per visual token)")
    v = v[: grid.grid_count]
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise InputError(f"{name} must be finite and >= 0 (attention weights)")
    return v


def _grid_features(features: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The grid rows [G, D] of the features [n, D] (or [G, D]), float32, checked finite."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] not in (grid.n, grid.grid_count) or x.shape[1] < 1:
        raise InputError(f"features must be [{grid.n}, D] (one row per visual token), got {list(x.shape)}")
    x = x[: grid.grid_count]
    if not np.all(np.isfinite(x)):
        raise InputError("features must be finite")
    return x


def kept_positions(input_ids: np.ndarray, video_token_id: int, kept: np.ndarray) -> np.ndarray:
    """Sequence positions [S'] a pruned model reads: all text, and the ``kept`` visual tokens.
    input_ids [1, S] (or [S])."""
    ids = np.asarray(input_ids).reshape(-1)
    slots = np.flatnonzero(ids == video_token_id)  # [Nv]
    keep = ids != video_token_id
    keep[slots[np.asarray(kept)]] = True
    return np.flatnonzero(keep)
