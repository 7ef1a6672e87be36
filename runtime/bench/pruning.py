"""``hippo-trt bench pruning``: the draft's acceptance and prefill time per pruning method and keep ratio.

``fusion`` adds an ablation of hippo's fusion weights: a row per (global, temporal, spatial)
triple, labelled ``hippo G/T/S``, at every keep ratio.

Every (method, keep) runs greedy ``sd`` over the same clips in one process. MAT is the mean
number of tokens committed per target verification (what the kept tokens buy), draft prefill
the mean time of the draft's prefill over the kept tokens (what they cost). ``none`` runs once,
at keep 1.0: every method keeps everything there. With ``repack`` the kept tokens also run
at contiguous position ids (SpecVLM) next to their original ones (our default), so the default
is chosen by measurement. Tokens are checked against the first run: pruning must never change
the output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from hippo_trt.runtime.bench.common import ALL, KEEPS, SplitPipelines, clip_groups, group_sections, groups_of
from hippo_trt.runtime.bench.decode import WARMUP_TOKENS, Clip
from hippo_trt.runtime.generation import GenerationConfig

DEFAULT_METHODS = ("none", "uniform", "random", "attention", "local", "specvlm", "hippo")
REPACK_KEEP = 0.1  # where the position-id variants are compared


@dataclass(frozen=True)
class PruneBenchConfig:
    generation: GenerationConfig = GenerationConfig(mode="sd")  # gamma, max_new_tokens, options
    keeps: tuple[float, ...] = KEEPS
    methods: tuple[str, ...] = DEFAULT_METHODS
    repack: bool = True  # also run every method at keep REPACK_KEEP with contiguous positions
    fusion: tuple[tuple[float, float, float], ...] = ()  # hippo's (global, temporal, spatial) weights to ablate

    def __post_init__(self) -> None:
        """Every setting checked as a run would check it, before anything loads."""
        for setting in _settings(self):
            setting.generation(self.generation)


@dataclass(frozen=True)
class Setting:
    """One row's pruning: a method (``hippo`` with its own fusion ``weights`` in the ablation) at
    a keep ratio, at original or repacked positions."""

    method: str
    keep: float
    repack: bool = False
    weights: tuple[float, float, float] | None = None

    @property
    def label(self) -> str:
        return self.method if self.weights is None else f"{self.method} {'/'.join(f'{w:g}' for w in self.weights)}"

    def generation(self, base: GenerationConfig) -> GenerationConfig:
        gen = replace(base, mode="sd", prune=self.method, keep=self.keep, repack=self.repack)
        if self.weights is None:
            return gen
        g, t, s = self.weights
        return replace(gen, prune_options=replace(gen.prune_options, w_global=g, w_temporal=t, w_spatial=s))


@dataclass
class PruneRow:
    method: str
    keep: float
    positions: str  # "original" or "repacked"
    group: str = ALL  # which clips: all, or one question kind
    verifications: int = 0
    committed: int = 0
    draft_prefill_ms: float = 0.0
    requests: int = 0
    mismatches: int = 0  # requests whose tokens differ from the first setting's

    def add(self, result, mismatch: bool) -> None:
        """One request's RunResult."""
        self.mismatches += mismatch
        self.verifications += result.stats["verifications"]
        self.committed += result.stats["verified_tokens"]
        self.draft_prefill_ms += result.timings_ms.get("draft_prefill", 0.0)
        self.requests += 1

    @property
    def mat(self) -> float:
        return self.committed / self.verifications if self.verifications else 0.0

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "group": self.group,
            "keep": self.keep,
            "positions": self.positions,
            "mat": round(self.mat, 3),
            "draft_prefill_ms": round(self.draft_prefill_ms / max(1, self.requests), 3),
            "matches_target": self.mismatches == 0,
        }


def _settings(config: PruneBenchConfig) -> list[Setting]:
    out = [Setting("none", 1.0)] if "none" in config.methods else []
    for method in (m for m in config.methods if m != "none"):
        out += [Setting(method, keep) for keep in config.keeps if keep < 1.0]
        if config.repack and REPACK_KEEP in config.keeps:
            out.append(Setting(method, REPACK_KEEP, repack=True))
    for weights in config.fusion:
        out += [Setting("hippo", keep, weights=tuple(weights)) for keep in config.keeps if keep < 1.0]
    return out


def bench_pruning(
    work: Path, clips: list[Clip], config: PruneBenchConfig = PruneBenchConfig(), threads: int = 0, progress: bool = True
) -> list[PruneRow]:
    """Every setting in ``sd`` on sd's lanes (``lanes.lane_threads``; ``threads``: the target's)."""
    pipeline = SplitPipelines(work, ("sd",), threads)["sd"]
    requests = [pipeline.prepare(c.video, c.prompt) for c in clips]
    settings = _settings(config)
    groups = clip_groups(clips)
    rows = {(g, s): PruneRow(s.label, s.keep, "repacked" if s.repack else "original", g) for g in groups for s in settings}
    reference: dict[int, list[int]] = {}
    gens = [s.generation(config.generation) for s in settings]
    for gen in gens:  # warm-up: each setting's first run pays ONNX Runtime's first-run cost at its shapes
        pipeline.generate(requests[0], replace(gen, max_new_tokens=WARMUP_TOKENS))
    bar = tqdm(total=len(settings) * len(requests), desc="bench pruning", unit="request", disable=not progress)
    for setting, gen in zip(settings, gens):
        for i, request in enumerate(requests):
            result = pipeline.generate(request, gen)
            reference.setdefault(i, result.tokens)
            for g in groups_of(groups, i):
                rows[(g, setting)].add(result, result.tokens != reference[i])
            bar.update()
    bar.close()
    return list(rows.values())


def format_pruning_table(rows: list[PruneRow], config: PruneBenchConfig) -> str:
    """Markdown: MAT and draft prefill ms per method (rows) and keep ratio (columns), a section
    per group of clips (all, then each question kind) when the clips have kinds."""
    g = config.generation
    lines = [f"greedy sd, gamma {g.gamma}, max new tokens {g.max_new_tokens}; cells: MAT / draft prefill ms"]
    return "\n".join(lines + group_sections(rows, lambda section: [""] + _keep_table(section)))


def _keep_table(rows: list[PruneRow]) -> list[str]:
    keeps = sorted({r.keep for r in rows}, reverse=True)
    by = {(r.method, r.keep, r.positions): r for r in rows}
    lines = [
        "| method | positions | " + " | ".join(f"keep {k}" for k in keeps) + " | output = target |",
        "|---|---|" + "---|" * (len(keeps) + 1),
    ]
    for method, positions in dict.fromkeys((r.method, r.positions) for r in rows):
        cells = []
        for k in keeps:
            r = by.get((method, k, positions)) or (by.get(("none", 1.0, "original")) if k == 1.0 else None)
            cells.append("-" if r is None else f"{r.mat:.2f} / {r.to_json()['draft_prefill_ms']:.2f}")
        same = all(r.mismatches == 0 for r in rows if (r.method, r.positions) == (method, positions))
        lines.append(f"| {method} | {positions} | " + " | ".join(cells) + f" | {'yes' if same else 'NO'} |")
    return lines
