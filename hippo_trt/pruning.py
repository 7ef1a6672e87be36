"""Which visual tokens the draft keeps (reference implementations, numpy).

Every method returns sorted int64 indices into the video's visual tokens [0, n), i.e. the kept
tokens in their original order, exactly ``kept_count(n, keep)`` of them, unique.

Token layout (LLaVA-OneVision video): ``frames * height * width`` pooled grid tokens in
frame-major order (frame, row, col), then ``extra`` trailing tokens (one newline token), see
``hippo_trt.token_grid.TokenGrid``. The score-based methods (``attention``, ``local``,
``hippo``, ``specvlm``) always keep the extra tokens; they count toward the budget k.

Methods:

- ``none``: every token. ``uniform``: evenly strided. ``random``: seeded, uniformly at random.
- ``attention``: the target's (position-debiased) attention from the text after the video, top-k.
- ``local``: local spatial-temporal distinctiveness of the features (cosine), top-k.
- ``hippo``: a weighted fusion of the two, top-k (``fused_score``).
- ``specvlm``: SpecVLM's two stages: the top-attention tokens holding ``specvlm_fraction`` of the
  attention, then the rest of the budget evenly spaced among the remaining tokens.

The scores are ``hippo_trt.pruning_scores`` (float32, bit-exact with ``export/prune_graph.py``);
this module holds the methods, their options and the selection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hippo_trt.errors import InputError
from hippo_trt.pruning_scores import Debias, debiased_importance, fused_score, specvlm_grid_indices, top_k
from hippo_trt.token_grid import TokenGrid, grid_vector


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


# --- options and budget ---------------------------------------------------------------------


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


def specvlm_mass(importance: np.ndarray, grid: TokenGrid, options: PruneOptions, reference=None) -> np.ndarray:
    """The attention mass SpecVLM ranks and sums, float32 [G]: the raw attention, or with
    ``specvlm_debias`` exp(debiased log-importance) = attention / position baseline."""
    if not options.specvlm_debias:
        return grid_vector(importance, grid, "importance")
    return np.exp(debiased_importance(importance, grid, options.debias, reference).astype(np.float64)).astype(np.float32)


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


def kept_positions(input_ids: np.ndarray, video_token_id: int, kept: np.ndarray) -> np.ndarray:
    """Sequence positions [S'] a pruned model reads: all text, and the ``kept`` visual tokens.
    input_ids [1, S] (or [S])."""
    ids = np.asarray(input_ids).reshape(-1)
    slots = np.flatnonzero(ids == video_token_id)  # [Nv]
    keep = ids != video_token_id
    keep[slots[np.asarray(kept)]] = True
    return np.flatnonzero(keep)
