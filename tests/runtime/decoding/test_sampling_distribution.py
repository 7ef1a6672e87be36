"""Sampling `sd` and `parallel` follow the target's distribution over whole speculative windows.

Every case's budget is ``gamma + 2`` tokens or more, so the first verification judges
``gamma`` (2 to 4) draft tokens and may add the bonus token: every row of the window's q and p
is used; the residual is drawn at every position (the draft often disagrees with the target)
and the bonus token in many runs (in most, with a close draft). The first token is the
prefill's: the tests make it certain, so the window's context is fixed and every sample goes
to the window's joint distribution, computed exactly from the toy target's table (its
processed conditionals multiplied along each sequence).

Test and power. Each case is one Pearson chi-square test of the sampled sequences against the
exact joint (outcomes expected fewer than 5 times pooled into one bin) at ALPHA / FAMILY
(Bonferroni over every chi-square test of this file). For a sampler whose joint Q is at total
variation eps from the target's P, Cauchy-Schwarz gives chi2(Q || P) = sum (Q - P)^2 / P >=
(sum |Q - P|)^2 = 4 eps^2: the statistic's noncentrality is >= 4 n eps^2 whatever the bias's
shape (the least favourable spreads it over every outcome in proportion to P; a bias on a few
outcomes shows far more; the pooled outcomes hold 0.02% of P, in sd-close only). The comments of CASES give each case's worst-case TV detected with
probability 0.9 (noncentral chi-square draws, seeded): 0.026 to 0.035. Cases together (GROUPS)
are one more test each, their statistics and degrees of freedom adding up: a TV of 0.02 in
every case, what a systematic bug in the verification both modes share gives, fails the test
of every case (103 df, 72000 runs) with probability 0.99 (checked by the test itself); a TV
of 0.02 in every case of one mode fails that mode's test with probability 0.69 (sd: 57 df,
36000 runs) or 0.77 (parallel: 46 df, 36000 runs), one of 0.023 with probability 0.9.

`parallel`'s target lane is an inline stand-in for its worker thread here (_InlineLane: each
verification's result comes in after a seeded number of draft steps, from at once to past the
lookahead): cheap and deterministic. Its draws are keyed by (role, output index), so a seed's
output does not depend on the interleaving: a test checks it against real threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import pytest
import torch

from hippo_trt.runtime import pipeline as pipeline_module
from hippo_trt.runtime.decoding import parallel as parallel_module
from hippo_trt.runtime.decoding.generate import Lane, OutputBudget, TokenChooser, generate_sd
from hippo_trt.runtime.decoding.parallel import ParallelOptions, generate_parallel
from hippo_trt.runtime.decoding.verify import AcceptanceStats, Sampling
from tests.runtime.decoding.fake_decoder import ToyLM
from tests.runtime.decoding.test_generate import PROMPT, lanes

ALPHA = 1e-3  # family-wise: a correct sampler fails this file's chi-square tests with probability <= ALPHA
MIN_EXPECTED = 5.0  # Pearson's rule: outcomes expected fewer times are pooled


@dataclass(frozen=True)
class Case:
    """A toy target and draft (``mix``: the draft's share of the target's table; ``draft_scale``:
    how peaked its own part is), the sampling settings, the draft length and the token budget
    (the certain first token ``first`` and ``budget - 1`` tokens from speculation)."""

    name: str
    mode: str  # "sd" or "parallel"
    vocab: int
    seeds: tuple[int, int]  # (target, draft)
    mix: float
    draft_scale: float
    sampling: Sampling
    gamma: int
    budget: int
    first: int
    n: int  # sampled runs

    def models(self) -> tuple[ToyLM, ToyLM]:
        target = ToyLM(self.vocab, self.seeds[0], scale=1.5)
        return target, ToyLM(self.vocab, self.seeds[1], like=target, mix=self.mix, scale=self.draft_scale)

    @property
    def outcomes(self) -> int:
        return self.vocab ** (self.budget - 1)


T1_K2 = Sampling(temperature=1.0, top_k=2)
CASES = [
    # An unrelated draft: in 48%, 19% and 23% of the runs the window's first rejection is at
    # its 1st, 2nd, 3rd token (the residual drawn there), 10% fully accepted; top-2 of 4: the
    # draft often proposes a token the target excludes. 16 outcomes: TV 0.032 detected.
    Case("sd-disagreeing", "sd", 4, (21, 22), 0.0, 1.5, T1_K2, gamma=3, budget=5, first=0, n=12000),
    # The full vocabulary under top-p, a loosely related draft: rejections 7%, 37%; 56% fully
    # accepted. 13 outcomes in the support: TV 0.031.
    Case("sd-top-p", "sd", 3, (7, 8), 0.3, 2.0, Sampling(temperature=1.3, top_p=0.9), gamma=2, budget=4, first=1, n=12000),
    # A close draft: 79% of the windows fully accepted (the bonus token drawn from row gamma
    # of p), rejections 2-10% at each of the 4 positions. 32 outcomes: TV 0.035.
    Case("sd-close", "sd", 5, (9, 10), 0.9, 1.5, Sampling(temperature=0.8, top_k=2), gamma=4, budget=6, first=3, n=12000),
    # As sd-disagreeing, another pair: rejections 52%, 22%, 24%. 16 outcomes: TV 0.026.
    Case("parallel-disagreeing", "parallel", 4, (41, 42), 0.0, 1.5, T1_K2, gamma=3, budget=5, first=0, n=18000),
    # Two windows: 54% of the first fully accepted; in 22% of the runs the target's bonus
    # token was the draft's next one and the second window verifies that kept path.
    # 32 outcomes: TV 0.029.
    Case("parallel-close", "parallel", 4, (13, 14), 0.85, 1.5, T1_K2, gamma=2, budget=6, first=1, n=18000),
]
GROUPS = {"sd": ("sd",), "parallel": ("parallel",), "every case": ("sd", "parallel")}  # cases tested together
# The exported models whose ONNX Runtime engines are tested too, each drafting for itself over a
# pruned video: LLaVA-OneVision keeping 3/4 of the visual tokens, Qwen3-VL (its DeepStack draft)
# half of them, where its windows end at their 1st token in 73% of the runs, at the 2nd in 11%
# and are fully accepted in 16% (keeping 3/4: nearly all fully accepted; 1/4: none).
REAL_MODELS = {"gqa": ("work_dirs", 0.75), "qwen3_gqa": ("qwen3_work_dirs", 0.5)}
FAMILY = len(CASES) + len(GROUPS) + len(REAL_MODELS)  # the chi-square tests: the cases, GROUPS and the ONNX Runtime ones
CASE_IDS = [c.name for c in CASES]


def exact_joint(lm: ToyLM, sampling: Sampling, context: tuple[int, int], length: int) -> np.ndarray:
    """P(the next ``length`` tokens) [V] * length when the target alone samples after
    ``context`` (the sequence's last two tokens): the toy's logits depend on those only."""
    v = lm.vocab
    cond = sampling.probs(lm.table).reshape(v, v, v)  # [a, b, next]: P(next | ..., a, b)
    joint = cond[context[0] % v, context[1] % v]  # [V]
    if length > 1:
        joint = joint[:, None] * cond[context[1] % v]  # [V, V]
    for _ in range(length - 2):
        joint = joint[..., None] * cond  # [..., a, b] x [a, b, next] -> [..., a, b, next]
    return joint


def certain(token: int, vocab: int) -> np.ndarray:
    """Prefill logits [1, V] whose sample is ``token`` whatever the settings."""
    return np.where(np.arange(vocab) == token, 0.0, -np.inf)[None]


class _InlineJob:
    """A target step that runs when the scheduler takes its result, or once it has asked
    ``polls`` times whether it is done (the step lasted that many draft steps)."""

    def __init__(self, fn, args, polls: int):
        self.fn, self.args, self.polls, self.ran = fn, args, polls, False

    def done(self) -> bool:
        if self.polls > 0:
            self.polls -= 1
            return False
        self.result()
        return True

    def result(self):
        if not self.ran:
            self.value, self.ran = self.fn(*self.args), True
        return self.value


class _InlineLane:
    """Stands in for parallel's ThreadPoolExecutor(1), the target's lane: each job lasts a
    seeded 0 .. 2 * gamma + 1 draft steps (from "the verdict is in at once" to "the draft
    fills its lookahead")."""

    def __init__(self, rng: np.random.Generator, gamma: int):
        self.rng, self.gamma = rng, gamma

    def __enter__(self) -> _InlineLane:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> _InlineJob:
        return _InlineJob(fn, args, int(self.rng.integers(0, 2 * self.gamma + 2)))


def run_case(case: Case, seed: int, threads: bool = False) -> tuple[list[int], AcceptanceStats]:
    """One seeded run of the case (parallel: on the inline target lane unless ``threads``)."""
    target_lm, draft_lm = case.models()
    target, draft, _ = lanes(target_lm, draft_lm, [1, 3])  # the draft sees a pruned prompt
    first, stats, budget = certain(case.first, case.vocab), AcceptanceStats(), OutputBudget(case.budget, ())
    s = case.sampling
    chooser = TokenChooser(Sampling(s.temperature, s.top_k, s.top_p, seed=seed))
    if case.mode == "sd":
        return generate_sd(target, draft, first, budget, case.gamma, chooser, stats), stats
    options = ParallelOptions(gamma=case.gamma)
    with pytest.MonkeyPatch.context() as mp:
        if not threads:
            mp.setattr(parallel_module, "ThreadPoolExecutor", lambda *a, **k: _InlineLane(np.random.default_rng([seed, 1]), case.gamma))
        return generate_parallel(target, draft, first, budget, chooser, options, stats), stats


@dataclass(frozen=True)
class Sampled:
    counts: np.ndarray  # [K]: runs that gave each sequence of tokens 1.. (row-major index)
    rejected: np.ndarray  # [gamma]: runs whose first window's first rejection was at position i
    full: int  # runs whose first window was fully accepted (its bonus token drawn)
    kept: int  # parallel: runs whose first verification kept the draft's path


@cache
def sample(case: Case) -> Sampled:
    counts = np.zeros(case.outcomes, dtype=np.int64)  # [K]
    rejected, full, kept = np.zeros(case.gamma, np.int64), 0, 0  # [gamma]
    shape = (case.vocab,) * (case.budget - 1)
    for seed in range(case.n):
        out, stats = run_case(case, seed)
        assert len(out) == case.budget and out[0] == case.first
        assert stats.proposed[0] == case.gamma  # budget >= gamma + 2: the first window is whole
        counts[np.ravel_multi_index(out[1:], shape)] += 1
        if stats.accepted[0] < case.gamma:
            rejected[stats.accepted[0]] += 1
        full += stats.accepted[0] == case.gamma
        kept += bool(stats.path_kept and stats.path_kept[0])
    return Sampled(counts, rejected, full, kept)


def expected_joint(case: Case) -> np.ndarray:
    """[K]: the target alone's joint over tokens 1.. after the certain first token."""
    target, _ = case.models()
    return exact_joint(target, case.sampling, (PROMPT[-1], case.first), case.budget - 1).ravel()


def chi_square(counts: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """(Pearson's statistic, degrees of freedom) of counts [K] against probabilities [K];
    outcomes expected fewer than MIN_EXPECTED times are pooled into one bin (merged into the
    smallest other bin when the pool itself is that rare)."""
    n = counts.sum()
    big = expected * n >= MIN_EXPECTED  # [K]
    obs = np.append(counts[big], counts[~big].sum()).astype(np.float64)  # [B + 1]
    exp = np.append(expected[big] * n, expected[~big].sum() * n)  # [B + 1]
    if exp[-1] < MIN_EXPECTED:
        smallest = int(np.argmin(exp[:-1]))
        obs[smallest] += obs[-1]
        exp[smallest] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    return float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1


def chi_square_p(stat: float, df: int) -> float:
    """P(chi2(df) >= stat)."""
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


def detection_power(df: int, lam: float, level: float) -> float:
    """P(a noncentral chi2(df, lam) statistic fails the test at ``level``), by seeded draws."""
    lo, hi = 0.0, 20.0 * df + 400.0  # the critical value, by bisection
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi_square_p(mid, df) > level else (lo, mid)
    return float((np.random.default_rng(0).noncentral_chisquare(df, lam, 100000) > hi).mean())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_windows_joint_distribution_is_the_targets(case):
    expected, got = expected_joint(case), sample(case)
    assert np.isclose(expected.sum(), 1.0)
    assert not got.counts[expected == 0].any(), "sampled a sequence the processed target excludes"
    stat, df = chi_square(got.counts, expected)
    tv = 0.5 * np.abs(got.counts / case.n - expected).sum()
    assert chi_square_p(stat, df) > ALPHA / FAMILY, f"{case.name}: chi2 {stat:.1f} on {df} df, empirical TV {tv:.4f}"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_window_position_is_rejected_in_some_runs(case):
    """What the distribution tests rest on: the residual is drawn at every draft position in
    >= 2% of the runs (>= 240 draws), the close drafts draw the bonus token in >= 40% of them,
    and parallel-close's second window verifies a kept path in >= 10%."""
    got = sample(case)
    assert np.all(got.rejected >= 0.02 * case.n), got.rejected
    if "close" in case.name:
        assert got.full >= 0.4 * case.n, got.full
    if case.name == "parallel-close":
        assert got.kept >= 0.1 * case.n, got.kept


@pytest.mark.parametrize("group", GROUPS)
def test_the_cases_together_follow_the_targets_distributions(group):
    """Cases together are one more test (chi-square statistics and degrees of freedom add): a
    bias of TV >= 0.02 in every case (a systematic bug in the verification both modes share)
    fails the test of every case with probability >= 0.9 (the second assertion checks the
    design); each mode's own test, with fewer runs, with the probability given in the
    module's docstring."""
    cases = [c for c in CASES if c.mode in GROUPS[group]]
    stats = [chi_square(sample(c).counts, expected_joint(c)) for c in cases]
    stat, df = sum(s for s, _ in stats), sum(d for _, d in stats)
    assert chi_square_p(stat, df) > ALPHA / FAMILY, f"{group}: chi2 {stat:.1f} on {df} df"
    if group == "every case":
        assert detection_power(df, 4 * 0.02**2 * sum(c.n for c in cases), ALPHA / FAMILY) >= 0.9


def test_the_inline_target_lane_gives_the_threaded_output():
    """A seed's output does not depend on the lanes' interleaving, so the inline lane's
    distribution is the threaded one's."""
    for case in (c for c in CASES if c.mode == "parallel"):
        for seed in range(20):
            assert run_case(case, seed)[0] == run_case(case, seed, threads=True)[0]


# Real engines: the tiny gqa target (tests/conftest.py) under top-2 sampling at temperature 2,
# so its joint over 4 tokens (the prefill's, then one window of 2 draft tokens and the bonus)
# is over 2^4 = 16 sequences, computed from its own logits. In 23% and 26% of the runs the
# window's first rejection is at its 1st and 2nd token, 51% are fully accepted. N_REAL runs
# (15 df) detect a worst-case TV of 0.055 with probability 0.9 (see the module's docstring).
N_REAL, REAL_GAMMA = 4000, 2
REAL_SAMPLING = Sampling(temperature=2.0, top_k=2)


@pytest.fixture(scope="module", params=sorted(REAL_MODELS))
def real_lanes(request):
    """The target's and the draft's lanes right after a request's prefills, and its first logits.
    The draft is the gqa target's own engines over a pruned prompt (hippo, 3/4 of the visual
    tokens): its top-2 is mostly the target's, with other probabilities (the exported mqa
    draft's top-2 misses this target's: nearly every window would end at its first token).
    The lanes are caught from Pipeline.generate and rolled back to the prefill between runs."""
    from hippo_trt.preprocess import prepare_request
    from hippo_trt.runtime.generation import GenerationConfig
    from hippo_trt.runtime.pipeline import Pipeline
    from hippo_trt.video import FrameTimes
    from tests.conftest import random_frames

    name = request.param
    fixture, keep = REAL_MODELS[name]
    loaded = Pipeline.load(request.getfixturevalue(fixture)[name])
    pipe = Pipeline(loaded.manifest, loaded.target, loaded.processor, draft=loaded.target)
    request = prepare_request(pipe.processor, random_frames(7, 2), "what moves", FrameTimes((0, 1), 2, 2.0))
    caught = {}
    real = pipeline_module.generate_sd

    def spy(target, draft, first_logits, budget, *args):
        caught.update(target=target, draft=draft, first=first_logits)
        return real(target, draft, first_logits, budget, *args)

    config = GenerationConfig(max_new_tokens=REAL_GAMMA + 2, mode="sd", gamma=REAL_GAMMA, prune="hippo", keep=keep, sampling=REAL_SAMPLING)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline_module, "generate_sd", spy)
        pipe.generate(request, config)
    return caught["target"], caught["draft"], caught["first"]


def real_joint(target: Lane, first: np.ndarray, length: int) -> dict[tuple[int, ...], float]:
    """The target alone's distribution over its first ``length`` tokens, walking its top-2
    tree on the target lane from its prefill's logits ``first`` [1, V] (one step per branch,
    rolled back after it)."""
    joint: dict[tuple[int, ...], float] = {}

    def walk(prefix: tuple[int, ...], prob: float, logits: np.ndarray) -> None:  # logits [1, V]
        top = np.sort(logits[0])[::-1]  # [V]
        assert top[1] - top[2] > 1e-3, "a near tie at the top-2 boundary: float noise could move it"
        p = REAL_SAMPLING.probs(logits)[0]  # [V]
        for token in np.flatnonzero(p):
            seq = prefix + (int(token),)
            if len(seq) == length:
                joint[seq] = prob * p[token]
            else:
                walk(seq, prob * p[token], target.feed([int(token)]))
                target.rollback(len(seq) - 1)

    target.rollback(0)
    walk((), 1.0, first)
    return joint


def test_real_engines_sd_windows_follow_the_targets_distribution(real_lanes):
    target, draft, first = real_lanes
    length = REAL_GAMMA + 2
    expected = real_joint(target, first, length)
    keys = sorted(expected)  # the 16 sequences
    assert len(keys) == 2**length
    counts = np.zeros(len(keys), np.int64)  # [16]
    accepted = np.zeros(REAL_GAMMA + 1, np.int64)  # [gamma + 1]: runs by draft tokens accepted
    for seed in range(N_REAL):
        target.rollback(0)
        draft.rollback(0)
        stats = AcceptanceStats()
        chooser = TokenChooser(replace(REAL_SAMPLING, seed=seed))
        out = generate_sd(target, draft, first, OutputBudget(length, ()), REAL_GAMMA, chooser, stats)
        assert tuple(out) in expected, "sampled a sequence outside the target's top-2 tree"
        counts[keys.index(tuple(out))] += 1
        assert stats.proposed[0] == REAL_GAMMA
        accepted[stats.accepted[0]] += 1
    assert np.all(accepted >= 0.1 * N_REAL), accepted  # rejections at both positions, bonus tokens
    stat, df = chi_square(counts, np.array([expected[k] for k in keys]))
    assert chi_square_p(stat, df) > ALPHA / FAMILY, f"chi2 {stat:.1f} on {df} df"
