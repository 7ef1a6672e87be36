"""Train the demo pair (LLaVA-OneVision target + draft) on the synthetic shapes task.

    python models/train_demo_pair.py --out models/demo-pair

Seeded and deterministic on a given machine. Four stages, each printing progress:
  1. vision: the SigLIP tower learns, per pooled visual token, which (colour, shape) occupies
     it and which grid cell it is (auxiliary heads that are thrown away afterwards). Direct
     supervision is what makes the tower learn shapes; captions alone do not (see the card).
  2. align: with the tower frozen and shared, each model's projector learns to map a visual
     token to the sum of its own input embeddings of the words that describe the token.
  3. draft: the draft's Qwen2 decoder learns to answer (tower and projector frozen), starting
     on short clips, with a look-up attention loss (see ``lookup_loss``).
  4. target: the same for the target.
Weights are saved as fp16 safetensors with config, tokenizer and processor, atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hippo_trt.atomic import staged_dir
from hippo_trt.testing.demo_pair import (
    IGNORE,
    Batcher,
    answer_logits,
    answer_predictions,
    held_out_samples,
    pruned_forward,
    train_samples,
    write_sample_clips,
)
from hippo_trt.testing.synthetic import GRID, NUM_CLASSES, frames_curriculum
from hippo_trt.testing.tiny import TinySpec, build_model, build_processor, build_tokenizer

VISION = dict(vision_layers=2, vision_hidden=128, vision_heads=4, vision_intermediate=256, image_size=64, patch_size=8, frames=8)
TARGET = TinySpec(layers=6, hidden=512, heads=8, kv_heads=2, intermediate=1024, extra_vocab=0, init_range=0.02, **VISION)
DRAFT = TinySpec(layers=2, hidden=128, heads=4, kv_heads=2, intermediate=384, extra_vocab=0, init_range=0.02, **VISION)


def pooled_vision(model, pixels: torch.Tensor) -> torch.Tensor:
    """The tower's last hidden state pooled as LLaVA-OV pools video: [N, GRID*GRID, D]."""
    out = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1]  # [N, P, D]
    side = int(math.isqrt(out.shape[1]))
    grid = out.view(out.shape[0], side, side, -1).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.interpolate(grid, size=[GRID, GRID], mode="bilinear")
    return pooled.permute(0, 2, 3, 1).reshape(out.shape[0], GRID * GRID, -1)


def cosine_lr(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


AUX_WEIGHT = 0.5  # of the cell head next to the class head


def token_labels(samples) -> torch.Tensor:
    """Each clip's per-token class labels, one row per frame: [B*T, GRID*GRID] int64."""
    return torch.stack([torch.from_numpy(s.scene.token_labels()) for s in samples]).view(-1, GRID * GRID)


def vision_loss(heads: torch.nn.ModuleDict, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, class logits) of the auxiliary heads on pooled tokens feats [B*T, GRID*GRID, D]."""
    ce = torch.nn.functional.cross_entropy
    n = feats.shape[0]
    cells = torch.arange(GRID * GRID).repeat(n)  # row-major, as the tokens are
    logits = heads["cls"](feats)
    loss = ce(logits.flatten(0, 1), labels.flatten()) + AUX_WEIGHT * ce(heads["cell"](feats).flatten(0, 1), cells)
    return loss, logits


def train_vision(model, batcher: Batcher, steps: int, batch: int, seed: int) -> dict:
    """Per pooled token: its (colour, shape) class and its cell."""
    dim = model.config.vision_config.hidden_size
    heads = torch.nn.ModuleDict({"cls": torch.nn.Linear(dim, NUM_CLASSES), "cell": torch.nn.Linear(dim, GRID * GRID)})
    params = list(model.model.vision_tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
    bar = tqdm(range(steps), desc="vision", unit="step")
    for step in bar:
        samples = train_samples(step, batch, seed + 1)
        b = batcher(samples)
        pixels = b.pixel_values_videos.flatten(0, 1)  # [B*T, 3, H, W]
        labels = token_labels(samples)
        loss, logits = vision_loss(heads, pooled_vision(model, pixels), labels)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, 2e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (logits.argmax(-1) == labels).float().mean().item()
        obj = labels > 0
        obj_acc = (logits.argmax(-1)[obj] == labels[obj]).float().mean().item()
        bar.set_postfix(loss=f"{loss.item():.3f}", token_acc=f"{acc:.4f}", object_acc=f"{obj_acc:.4f}")
    return {"steps": steps, "final_loss": round(loss.item(), 4), "object_token_acc": round(obj_acc, 4)}


def token_words(tokenizer, labels: torch.Tensor) -> torch.Tensor:
    """Word ids describing each grid token, labels [N, GRID*GRID] -> [N, GRID*GRID, 3]:
    (colour, shape, cell) for a shape's token, ("noise", "noise", -1) for a distractor's (a kind
    of object no answer names: its tokens stay as distinct as the textures), ("none", "none", -1)
    else (-1: no word).
    Background tokens name no cell: an attention that is not yet sharp reads some of every
    background token, and with their positions in them that blur held every position equally
    and drowned the shape's own (both models learned shapes but no positions in 800 steps)."""
    from hippo_trt.testing.synthetic import CELL_NAMES, COLOURS, DISTRACTOR_CLASS, NOISE_WORD, SHAPES

    ids = tokenizer.convert_tokens_to_ids
    none, noise = ids("none"), ids(NOISE_WORD)
    colour = torch.tensor([none] + [ids(c) for c in COLOURS for _ in SHAPES] + [noise])  # by class
    shape = torch.tensor([none] + [ids(s) for _ in COLOURS for s in SHAPES] + [noise])
    cells = torch.tensor([ids(c) for c in CELL_NAMES]).expand(labels.shape[0], -1)  # row-major
    is_shape = (labels > 0) & (labels != DISTRACTOR_CLASS)
    return torch.stack([colour[labels], shape[labels], cells.where(is_shape, -1)], dim=-1)


def alignment_target(table: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """table [V, d], words [..., W] (-1: none) -> [..., d]: the sum of the words' embeddings."""
    return (table[words.clamp(min=0)] * (words >= 0)[..., None]).sum(dim=-2)


def alignment_loss(feats: torch.Tensor, target: torch.Tensor, shape_tokens: torch.Tensor) -> torch.Tensor:
    """Relative squared error, averaged over the shapes' tokens and over the background's
    separately, then summed. A plain mean is 98% background: it reached 2% relative error,
    and after 800 draft steps (the projector then trained along) a shape token's nearest cell
    embedding was its own cell's for 4% of them (chance: 6%); with this loss, 71% right after
    150 alignment steps. feats, target [..., d]."""
    err = (feats - target).pow(2).sum(-1) / target.pow(2).sum(-1).mean()  # [...]
    return err[shape_tokens].mean() + err[~shape_tokens].mean()


def align_projector(model, batcher: Batcher, steps: int, batch: int, seed: int) -> dict:
    """LLaVA's feature-alignment stage, supervised: the projector learns to map each pooled
    visual token to the language model's own input embeddings of the words that describe it
    (colour, shape, cell; "none" for background), summed by ``alignment_target``. Without it the projected
    tokens were 10x the text embeddings' norm, with the shapes in faint directions, and neither
    language model learned to read them in 300-400 steps."""
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    tower.requires_grad_(False)
    table = model.get_input_embeddings().weight.detach()  # [V, d]
    opt = torch.optim.AdamW(projector.parameters(), lr=2e-3, weight_decay=0.0)
    bar = tqdm(range(steps), desc="align", unit="step")
    for step in bar:
        samples = train_samples(step, batch, seed + 5)
        b = batcher(samples)
        labels = token_labels(samples)  # [B*T, G*G]
        target = alignment_target(table, token_words(batcher.tokenizer, labels))  # [B*T, G*G, d]
        feats = model.model.get_video_features(
            pixel_values_videos=b.pixel_values_videos,
            vision_feature_layer=model.config.vision_feature_layer,
            vision_feature_select_strategy=model.config.vision_feature_select_strategy,
        ).pooler_output  # [B, T*G*G + 1, d]: the last is the newline
        feats = feats[:, :-1].reshape(target.shape)
        loss = alignment_loss(feats, target, labels > 0)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, 2e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(relative_mse=f"{loss.item():.4f}")
    return {"steps": steps, "relative_mse": round(loss.item(), 4)}


def _teacher_forced(model, b) -> tuple[float, float]:
    """(answer-token accuracy, exact-match rate) of greedy decoding, exactly, from one forward."""
    pairs = answer_predictions(*answer_logits(model, b))
    tokens = sum(len(t) for _, t in pairs)
    correct = sum(int((p == t).sum()) for p, t in pairs)
    exact = sum(bool((p == t).all()) for p, t in pairs)
    return correct / tokens, exact / len(pairs)


PRUNED_KEEPS = (0.5, 0.25, 0.1, 0.05)


def _forward(model, b, rng, pruned_share: float, attentions: bool = False):
    """(model output, its labels) of the training forward: with probability ``pruned_share``
    the model reads a random subset of the visual tokens (a random keep ratio, uniformly
    random tokens), so a draft learns to answer from whatever tokens a pruning method keeps
    without favouring any method. ``attentions``: also return the attention maps (unpruned only)."""
    if rng.random() >= pruned_share:
        out = model(
            input_ids=b.input_ids,
            attention_mask=b.attention_mask,
            pixel_values_videos=b.pixel_values_videos,
            labels=b.labels,
            output_attentions=attentions,
        )
        return out, b.labels
    n = int((b.input_ids[0] == model.config.video_token_id).sum())
    keep = PRUNED_KEEPS[int(rng.integers(len(PRUNED_KEEPS)))]
    kept = np.sort(rng.choice(n, size=max(1, math.ceil(keep * n)), replace=False))
    return pruned_forward(model, b, kept)


LOOKUP_HEAD = 0  # the head of the first layer whose attention the look-up loss trains


def lookup_queries(b, video_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each answer word is read from: (rows [M], query positions [M], key mask [M, S]).

    For every answer word that names a colour, a shape or a cell and follows a word naming a
    shape (its colour, its kind or its cell), the position that predicts it (that word before
    it) and the visual tokens of that shape (all frames it is visible in). Absent shapes ("none"),
    template words and words after template words have no such token."""
    from hippo_trt.testing.synthetic import CELL_NAMES, COLOURS, GRID, SHAPES, cell_name

    content = set(COLOURS) | set(SHAPES) | set(CELL_NAMES)
    rows, queries, keys = [], [], []
    for i, sample in enumerate(b.samples):
        start = int((b.labels[i] != IGNORE).nonzero()[0])  # the first answer token
        slots = (b.input_ids[i] == video_token_id).nonzero()[:, 0]  # [Nv] sequence positions
        named = {**sample.scene.by_colour(), **{cell_name(c): t for c, t in sample.scene.by_cell().items()}}
        named.update({t.shape: t for t in sample.scene.tracks})
        previous = None
        for j, word in enumerate(sample.answer.split()):
            track, previous = named.get(previous), word
            if word in content and track is not None:
                r, c = track.cell
                mask = torch.zeros(b.input_ids.shape[1], dtype=torch.bool)
                mask[slots[[t * GRID * GRID + r * GRID + c for t in track.frames]]] = True
                rows.append(i), queries.append(start + j - 1), keys.append(mask)
    return torch.tensor(rows), torch.tensor(queries), torch.stack(keys)


def lookup_loss(attention: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """-log of the attention mass that ``LOOKUP_HEAD`` puts on the right visual tokens, averaged
    over the look-ups; attention [B, H, S, S] of the first layer."""
    probs = attention[rows, LOOKUP_HEAD, queries].float()  # [M, S]
    return -(probs * keys).sum(-1).clamp(min=1e-6).log().mean()


CE_WEIGHT = 0.2  # of the reference answers' cross-entropy next to the distillation loss


def distill_loss(
    student_logits: torch.Tensor, student_labels: torch.Tensor, teacher_logits: torch.Tensor, teacher_labels: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || student) of the next-token distributions at the answer positions.

    The student may read fewer visual tokens (a pruned draft): its rows are shorter, but the
    answer positions are the same tokens in the same order, so the masks line up."""
    f = torch.nn.functional
    s = student_logits[:, :-1][student_labels[:, 1:] != IGNORE]  # [M, V]
    t = teacher_logits[:, :-1][teacher_labels[:, 1:] != IGNORE]  # [M, V]
    return f.kl_div(f.log_softmax(s, -1), f.log_softmax(t, -1), log_target=True, reduction="batchmean")


def train_lm(
    model,
    batcher: Batcher,
    name: str,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    held_out,
    first_step: int = 0,
    on_eval=None,
    pruned_share: float = 0.0,
    teacher=None,
    bf16: bool = False,
    curriculum: float = 0.0,
    lookup: float = 0.0,
) -> dict:
    """``first_step``: where a continued run picks up, so it sees fresh clips. ``on_eval(log)``
    runs after every held-out evaluation with the stage's log so far (checkpointing).
    ``pruned_share``: the share of steps on randomly pruned visual tokens (see ``_forward``).
    ``teacher``: distil from this model (the target), so the draft agrees with the target's
    own answers, mistakes included, which is what speculative decoding accepts.
    ``bf16``: the forward under CPU bfloat16 autocast (fp32 master weights and optimizer):
    about 1.6x faster steps where the CPU has AVX512-BF16.
    ``curriculum``: the share of steps on shorter clips, 2 frames then 4 (``frames_curriculum``);
    0 trains on the task's 8-frame clips throughout.
    The vision tower and the aligned projector stay frozen: trained along, the projector's
    outputs grew to 40x the word embeddings' norm and lost the shapes' cells (their cell word
    was the nearest for 4% of shape tokens after 800 draft steps).
    ``lookup``: weight of ``lookup_loss``, which trains one first-layer head to attend from each
    colour (or shape) word to its shape's visual tokens; the look-up is then there from the first
    steps instead of being found by chance after a long plateau (or, for the draft, not at all)."""
    rng = np.random.default_rng(seed + first_step)
    model.model.vision_tower.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(False)  # aligned already (see the docstring)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    bar = tqdm(range(steps), desc=name, unit="step")
    history = []
    attn_implementation = model.config._attn_implementation
    if lookup:
        model.set_attn_implementation("eager")  # SDPA returns no attention maps
    for step in bar:
        model.train()
        b = batcher(train_samples(first_step + step, batch, seed, frames_curriculum(step, steps, curriculum)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, labels = _forward(model, b, rng, pruned_share, attentions=lookup > 0)
            loss = out.loss.float()
            if out.attentions is not None:  # asked for only with a look-up loss, on unpruned steps
                loss = loss + lookup * lookup_loss(out.attentions[0], *lookup_queries(b, model.config.video_token_id))
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(
                        input_ids=b.input_ids, attention_mask=b.attention_mask, pixel_values_videos=b.pixel_values_videos
                    ).logits
                loss = distill_loss(out.logits.float(), labels, t_logits.float(), b.labels) + CE_WEIGHT * loss
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % 100 == 0 or step + 1 == steps:
            model.eval()
            acc, exact = _teacher_forced(model, held_out)
            history.append({"step": step + 1, "loss": round(out.loss.item(), 4), "token_acc": round(acc, 4), "exact": round(exact, 4)})
            tqdm.write(f"{name} step {step + 1}: loss {out.loss.item():.4f}, held-out token acc {acc:.4f}, exact {exact:.3f}")
            if on_eval is not None:
                on_eval({"steps": step + 1, "lr": lr, "batch": batch, "pruned_share": pruned_share, "lookup": lookup, "history": history})
    model.eval()
    model.set_attn_implementation(attn_implementation)
    return {"steps": steps, "lr": lr, "batch": batch, "pruned_share": pruned_share, "lookup": lookup, "history": history}


def scale_residual_init(model) -> None:
    """GPT-2's init: each layer's output projections (attention o_proj, MLP down_proj) scaled by
    1/sqrt(2 * layers), so a deep stack starts near the identity and the residual stream's
    variance does not grow with depth; the 6-layer target sat on the template plateau longer
    than the 2-layer draft without it."""
    layers = model.model.language_model.layers
    scale = 1 / math.sqrt(2 * len(layers))
    with torch.no_grad():
        for layer in layers:
            layer.self_attn.o_proj.weight.mul_(scale)
            layer.mlp.down_proj.weight.mul_(scale)


def save(model, processor, path: Path) -> None:
    model.to(torch.float16).save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    model.to(torch.float32)


def save_pair(out: Path, target, draft, processor, log: dict) -> None:
    """The whole pair directory, replaced atomically (also used for mid-training checkpoints)."""
    with staged_dir(out) as stage:
        save(target, processor, stage / "target")
        save(draft, processor, stage / "draft")
        (stage / "train_log.json").write_text(json.dumps(log, indent=1))
        write_sample_clips(stage / "clips")


def _load(path: Path):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(path, dtype=torch.float32)


def _steps_so_far(log: dict, role: str) -> int:
    return log.get(role, {}).get("steps", 0) + (_steps_so_far(log["previous"], role) if "previous" in log else 0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "demo-pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--vision-steps", type=int, default=400)
    p.add_argument("--align-steps", type=int, default=400, help="projector alignment steps per model (see align_projector)")
    p.add_argument("--draft-steps", type=int, default=1000)
    p.add_argument("--target-steps", type=int, default=1400)
    p.add_argument("--draft-lr", type=float, default=2e-3)
    p.add_argument(
        "--target-lr",
        type=float,
        default=6e-4,
        help="about the draft's rate x its width / the target's (muP): at 1.5e-3 the target stayed on the template plateau for 500+ steps",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--draft-pruned-share", type=float, default=0.3, help="share of draft steps on randomly pruned visual tokens")
    p.add_argument(
        "--distill", action="store_true", help="the draft learns the target's next-token distributions (KL) instead of only the references"
    )
    p.add_argument("--checkpoint", action="store_true", help="save the pair to --out after every held-out evaluation")
    p.add_argument("--lookup", type=float, default=1.0, help="weight of the look-up attention loss (see lookup_loss); 0 turns it off")
    p.add_argument("--curriculum", type=float, default=0.3, help="share of each language model's steps on shorter clips (2 frames, then 4)")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the language models under CPU bfloat16 autocast (faster where the CPU has AVX512-BF16)",
    )
    p.add_argument("--init", type=Path, help="continue from a saved pair (its log is kept under 'previous')")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.time()
    tokenizer = build_tokenizer()
    processor = build_processor(TARGET, tokenizer)
    batcher = Batcher(processor)
    held_out = batcher(held_out_samples(48))  # a small held-out probe for the progress log
    log = {"seed": args.seed, "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"}
    done = {"draft": 0, "target": 0}
    if args.init:
        target, draft = (_load(args.init / role) for role in ("target", "draft"))
        log["previous"] = json.loads((args.init / "train_log.json").read_text())
        done = {role: _steps_so_far(log["previous"], role) for role in done}
    else:
        target = build_model(replace(TARGET, seed=args.seed), tokenizer)
        draft = build_model(replace(DRAFT, seed=args.seed + 1), tokenizer)
        for model in (target, draft):
            scale_residual_init(model)
        target.train()
        log["vision"] = train_vision(target, batcher, args.vision_steps, args.batch, args.seed)
        draft.model.vision_tower.load_state_dict(target.model.vision_tower.state_dict())
        if args.align_steps:
            log["align"] = {
                role: align_projector(model, batcher, args.align_steps, args.batch, args.seed)
                for role, model in (("target", target), ("draft", draft))
            }
    log["specs"] = {"target": asdict(TARGET), "draft": asdict(DRAFT)}

    def checkpoint(role: str):
        def on_eval(stage_log: dict) -> None:
            log[role] = stage_log
            log["minutes"] = round((time.time() - started) / 60, 1)
            save_pair(args.out, target, draft, processor, log)

        return on_eval if args.checkpoint else None

    if args.draft_steps:
        log["draft"] = train_lm(
            draft,
            batcher,
            "draft",
            args.draft_steps,
            args.batch,
            args.draft_lr,
            args.seed + 2,
            held_out,
            done["draft"],
            checkpoint("draft"),
            args.draft_pruned_share,
            teacher=target if args.distill else None,
            bf16=args.bf16,
            curriculum=args.curriculum,
            lookup=args.lookup,
        )
    if args.target_steps:
        log["target"] = train_lm(
            target,
            batcher,
            "target",
            args.target_steps,
            args.batch,
            args.target_lr,
            args.seed + 3,
            held_out,
            done["target"],
            checkpoint("target"),
            bf16=args.bf16,
            curriculum=args.curriculum,
            lookup=args.lookup,
        )
    log["minutes"] = round((time.time() - started) / 60, 1)
    save_pair(args.out, target, draft, processor, log)
    print(f"saved {args.out} after {log['minutes']} min")


if __name__ == "__main__":
    main()
