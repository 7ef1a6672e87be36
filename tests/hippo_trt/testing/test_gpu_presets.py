"""The GPU benchmark presets: the configs give the published sizes, the tiny pair runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hippo_trt.errors import InputError
from hippo_trt.graphs.families import FAMILIES
from hippo_trt.testing.gpu_presets import PRESETS, PairPreset, build_models, preset, random_video

REAL = ["llava-ov-7b+0.5b", "qwen2.5-vl-7b+3b"]


def lm_params(model) -> int:
    """Parameters of the language model + lm_head, a tied lm_head counted once."""
    unique = {id(p): p for m in (model.model.language_model, model.lm_head) for p in m.parameters()}
    return sum(p.numel() for p in unique.values())


@pytest.fixture(scope="module")
def tiny_pair():
    return build_models(preset("tiny"))


@pytest.fixture(scope="module")
def tiny_qwen() -> PairPreset:
    """A tiny Qwen2.5-VL pair, to run that family's build on the CPU too."""
    return preset("tiny-qwen")


def test_every_preset_names_a_known_family():
    for p in PRESETS.values():
        assert FAMILIES[p.architecture].__name__.endswith(p.family)


def test_unknown_preset_is_an_input_error_naming_the_presets():
    with pytest.raises(InputError) as err:
        preset("nope")
    assert "nope" in str(err.value) and all(name in str(err.value) for name in PRESETS)


def test_tiny_lm_params_match_the_built_models(tiny_pair):
    p = preset("tiny")
    target, draft = tiny_pair
    assert lm_params(target) == p.target.params()
    assert lm_params(draft) == p.built_draft.params()
    assert draft.lm_head.weight is draft.model.language_model.embed_tokens.weight  # tied
    assert target.lm_head.weight is not target.model.language_model.embed_tokens.weight


@pytest.mark.parametrize("name", REAL)
def test_real_lm_params_match_meta_models(name):
    p = preset(name)
    target, draft = build_models(p, device="meta", dtype=torch.bfloat16)
    assert {t.device.type for m in (target, draft) for t in m.parameters()} == {"meta"}
    assert next(target.parameters()).dtype == torch.bfloat16
    assert target.config._attn_implementation == "sdpa"
    assert lm_params(target) == p.target.params()
    assert lm_params(draft) == p.built_draft.params()
    assert draft.config.text_config.vocab_size == p.target.vocab


# Published totals: Qwen2-7B 7.62 B, Qwen2-0.5B 0.49 B, Qwen2.5-3B 3.09 B (language models).
@pytest.mark.parametrize(
    "name, lo_target, hi_target, lo_draft, hi_draft",
    [
        ("llava-ov-7b+0.5b", 7.0e9, 7.7e9, 0.45e9, 0.55e9),
        ("qwen2.5-vl-7b+3b", 7.0e9, 7.7e9, 2.9e9, 3.2e9),
    ],
)
def test_real_sizes_are_the_published_ones(name, lo_target, hi_target, lo_draft, hi_draft):
    p = preset(name)
    assert lo_target <= p.target.params() <= hi_target
    assert lo_draft <= p.draft.params() <= hi_draft


def test_sizes_by_hand():
    qwen2_7b, qwen2_5_3b = preset("llava-ov-7b+0.5b").target, preset("qwen2.5-vl-7b+3b").draft
    assert qwen2_7b.head_dim == 128 and qwen2_5_3b.head_dim == 128
    assert qwen2_7b.kv_bytes_per_token(2) == 2 * 28 * 4 * 128 * 2 == 57344
    assert qwen2_5_3b.kv_bytes_per_token(2) == 2 * 36 * 2 * 128 * 2 == 36864
    # Qwen2-7B layer: q 3584^2+3584, k/v 2*(3584*512+512), o 3584^2, MLP 3*3584*18944, norms 2*3584
    layer = (3584**2 + 3584) + 2 * (3584 * 512 + 512) + 3584**2 + 3 * 3584 * 18944 + 2 * 3584
    assert layer == 233_057_792
    lm_head = 152128 * 3584  # the llava-hf vocabulary
    assert qwen2_7b.decode_weight_bytes(2) == 2 * (28 * layer + 3584 + lm_head)
    assert qwen2_7b.params() == 28 * layer + 3584 + 2 * lm_head
    # tied: the lm_head is the embedding table, read once per step and counted once
    tied = preset("qwen2.5-vl-7b+3b").draft
    assert tied.decode_weight_bytes(1) == tied.params() == tied.layers * tied.layer_params() + 2048 + 151936 * 2048


def test_prompt_tokens():
    assert preset("llava-ov-7b+0.5b").visual_tokens == 32 * 196 + 1
    assert preset("qwen2.5-vl-7b+3b").visual_tokens == 32 * 128
    assert preset("tiny").prompt_tokens == 4 * 4 + 1 + 8


def test_tokens_per_frame_must_agree_with_the_vision_sizes():
    p = preset("tiny")
    with pytest.raises(ValueError, match="tokens_per_frame"):
        dataclasses.replace(p, vision=dataclasses.replace(p.vision, tokens_per_frame=16))


def test_tiny_vision_gives_the_preset_token_count(tiny_pair):
    p = preset("tiny")
    with torch.no_grad():
        tokens = tiny_pair[0].model.get_video_features(**random_video(p), return_dict=True).pooler_output
    assert tokens.shape == (1, p.visual_tokens, p.target.hidden)  # [1, F*T+1, d]


def test_tiny_lms_give_target_vocab_logits(tiny_pair):
    p = preset("tiny")
    ids = torch.randint(0, p.target.vocab, (1, p.text_tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for model in tiny_pair:
            logits = model(input_ids=ids).logits
            assert logits.shape == (1, p.text_tokens, p.target.vocab) and torch.isfinite(logits).all()


def test_builds_are_seeded(tiny_pair):
    again, _ = build_models(preset("tiny"))
    assert all(torch.equal(a, b) for a, b in zip(tiny_pair[0].state_dict().values(), again.state_dict().values()))
    other, _ = build_models(preset("tiny"), seed=1)
    assert not torch.equal(other.lm_head.weight, again.lm_head.weight)


def test_tiny_qwen_pair_runs(tiny_qwen):
    p = tiny_qwen
    target, draft = build_models(p)
    assert lm_params(target) == p.target.params() and lm_params(draft) == p.built_draft.params()
    with torch.no_grad():
        tokens = target.model.get_video_features(**random_video(p), return_dict=True).pooler_output
        assert torch.cat(tokens).shape == (p.visual_tokens, p.target.hidden)  # [F/2 * m, d]
        ids = torch.randint(0, p.target.vocab, (1, p.text_tokens))
        assert draft(input_ids=ids).logits.shape == (1, p.text_tokens, p.target.vocab)
