"""Model directories: sharded checkpoints (index + shards), streaming weight hash, dtype-native loading."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from hippo_trt.errors import InputError, ModelError
from hippo_trt.model_dir import EXPORT_DTYPES, SHARD_INDEX, ModelDir, sha256_file, torch_dtype
from hippo_trt.testing.tiny import TinySpec, make_tiny_model_dir, make_tiny_qwen_dir

SPEC = TinySpec(seed=5)
SHARD = "150KB"  # the ~0.5 MB tiny model in a few shards


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    """The same tiny model saved whole and sharded, and a sharded Qwen2.5-VL model."""
    root = tmp_path_factory.mktemp("model-dir")
    return {
        "whole": make_tiny_model_dir(root / "whole", SPEC),
        "sharded": make_tiny_model_dir(root / "sharded", SPEC, max_shard_size=SHARD),
        "qwen_sharded": make_tiny_qwen_dir(root / "qwen", max_shard_size=SHARD),
    }


@pytest.fixture
def sharded(dirs, tmp_path) -> Path:
    """A copy of the sharded model this test may break."""
    return Path(shutil.copytree(dirs["sharded"], tmp_path / "sharded"))


def shards(path: Path) -> list[Path]:
    return sorted(path.glob("model-*-of-*.safetensors"))


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- sharded checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sharded", "qwen_sharded"])
def test_sharded_checkpoint_is_laid_out_like_a_published_one(dirs, name):
    path = dirs[name]
    assert len(shards(path)) >= 2 and (path / SHARD_INDEX).is_file()
    assert not (path / "model.safetensors").exists()
    assert ModelDir.open(path).path == path.absolute()


def test_sharded_checkpoint_loads_the_same_weights_as_a_whole_one(dirs):
    whole = ModelDir.open(dirs["whole"]).load_model().state_dict()
    sharded = ModelDir.open(dirs["sharded"]).load_model().state_dict()
    assert whole.keys() == sharded.keys()
    assert all(torch.equal(whole[k], sharded[k]) for k in whole)


def test_missing_shard_is_refused_at_open_naming_shard_and_index(sharded, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "LlavaOnevisionForConditionalGeneration", None)  # open must not load
    missing = shards(sharded)[-1]
    missing.unlink()
    with pytest.raises(ModelError) as e:
        ModelDir.open(sharded)
    msg = one_line(e)
    assert f"shard '{missing.name}'" in msg and SHARD_INDEX in msg and "more" not in msg
    assert "download the missing shard" in msg


def test_several_missing_shards_name_the_first_and_count_the_rest(sharded):
    first, *rest = shards(sharded)
    for f in (first, *rest):
        f.unlink()
    with pytest.raises(ModelError, match=f"shard '{first.name}' \\(and {len(rest)} more\\) named by"):
        ModelDir.open(sharded)


@pytest.mark.parametrize("content", [b"{ not json", b"\xff\xfe garbage", b""], ids=["syntax", "binary", "empty"])
def test_corrupt_shard_index_is_one_line(sharded, content):
    (sharded / SHARD_INDEX).write_bytes(content)
    with pytest.raises(ModelError) as e:
        ModelDir.open(sharded)
    msg = one_line(e)
    assert f"shard index '{sharded / SHARD_INDEX}'" in msg
    assert "is not valid JSON" in msg and "download it again" in msg


@pytest.mark.parametrize(
    "index",
    [[], {"metadata": {}}, {"weight_map": {}}, {"weight_map": ["a"]}, {"weight_map": {"w": 3}}],
    ids=["list", "no-map", "empty-map", "map-is-list", "non-string-file"],
)
def test_shard_index_without_a_weight_map_is_refused(sharded, index):
    (sharded / SHARD_INDEX).write_text(json.dumps(index))
    with pytest.raises(ModelError, match="has no 'weight_map' of tensor names to shard files"):
        ModelDir.open(sharded)


@pytest.mark.parametrize("name", ["../model-00001-of-00003.safetensors", "sub/x.safetensors", "weights.bin"])
def test_shard_index_naming_a_file_elsewhere_is_refused(sharded, name):
    index = json.loads((sharded / SHARD_INDEX).read_text())
    index["weight_map"][next(iter(index["weight_map"]))] = name
    (sharded / SHARD_INDEX).write_text(json.dumps(index))
    with pytest.raises(ModelError, match="not a .safetensors file beside it"):
        ModelDir.open(sharded)


def test_whole_model_file_takes_precedence_over_a_stale_index(dirs, sharded):
    """transformers loads model.safetensors when it exists; so does the check."""
    for f in shards(sharded):
        f.unlink()
    shutil.copy(dirs["whole"] / "model.safetensors", sharded)
    ModelDir.open(sharded)


def test_corrupt_shard_is_a_model_error_at_load(sharded):
    shard = shards(sharded)[0]
    shard.write_bytes(shard.read_bytes()[:100])
    model_dir = ModelDir.open(sharded)  # present: open does not read weights
    with pytest.raises(ModelError, match="cannot load model weights from") as e:
        model_dir.load_model()
    one_line(e)


# --- weight hash ---------------------------------------------------------------------------


def test_sha256_file_streams_in_chunks(tmp_path):
    data = bytes(range(256)) * 100
    f = tmp_path / "x.bin"
    f.write_bytes(data)
    assert sha256_file(f, chunk=7) == sha256_file(f) == hashlib.sha256(data).hexdigest()


def test_weight_hash_covers_every_shard_and_the_index(sharded):
    before = ModelDir.open(sharded).weight_hash()
    for f in [*shards(sharded), sharded / SHARD_INDEX]:
        original = f.read_bytes()
        f.write_bytes(original + b" ")  # index: trailing space keeps it valid JSON
        assert ModelDir.open(sharded).weight_hash() != before, f.name
        f.write_bytes(original)
    assert ModelDir.open(sharded).weight_hash() == before


def test_weight_hash_differs_between_whole_and_sharded_layouts(dirs):
    assert ModelDir.open(dirs["whole"]).weight_hash() != ModelDir.open(dirs["sharded"]).weight_hash()


# --- dtype-native loading ------------------------------------------------------------------


def test_export_dtypes_map_to_torch_dtypes():
    assert EXPORT_DTYPES == ("fp32", "fp16", "bf16")
    assert [torch_dtype(d) for d in EXPORT_DTYPES] == [torch.float32, torch.float16, torch.bfloat16]


def test_export_dtypes_agree_with_the_runtime_names():
    from hippo_trt.runtime.backends.arrays import FLOAT_DTYPES

    assert {d: str(torch_dtype(d)).removeprefix("torch.") for d in EXPORT_DTYPES} == FLOAT_DTYPES


@pytest.mark.parametrize("bad", ["float32", "int8", "", "FP16"])
def test_unknown_dtype_lists_the_choices(dirs, bad):
    with pytest.raises(InputError, match=f"unknown dtype '{bad}' \\(choose one of: fp32, fp16, bf16\\)"):
        ModelDir.open(dirs["whole"]).load_model(bad)


@pytest.mark.parametrize("name", ["sharded", "qwen_sharded"])
@pytest.mark.parametrize("dtype", EXPORT_DTYPES)
def test_load_model_in_dtype_eval_eager(dirs, name, dtype):
    model = ModelDir.open(dirs[name]).load_model(dtype)
    assert {p.dtype for p in model.parameters()} == {torch_dtype(dtype)}
    assert not model.training and not any(m.training for m in model.modules())
    assert model.config._attn_implementation == "eager"


def test_load_model_reads_weights_as_stored_then_converts_them_one_by_one(dirs, monkeypatch, tmp_path):
    """No second whole copy on the way: from_pretrained maps the weights in their stored dtype
    (fp32 here), then each tensor is converted; a bf16 checkpoint read as fp32 is the same
    model as transformers' own fp32 load, tensor for tensor."""
    import transformers

    cls = transformers.LlavaOnevisionForConditionalGeneration
    seen = []
    original = cls.from_pretrained.__func__

    def spy(klass, *args, **kwargs):
        seen.append(kwargs)
        return original(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    whole = ModelDir.open(dirs["whole"])
    assert whole.stored_dtype() == torch.float32
    model = whole.load_model("bf16")
    assert [k["dtype"] for k in seen] == [torch.float32] and seen[0]["attn_implementation"] == "eager"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}

    model.save_pretrained(tmp_path / "bf16")  # a bf16 checkpoint
    bf16 = ModelDir(tmp_path / "bf16", whole.architecture, whole.config)
    assert bf16.stored_dtype() == torch.bfloat16
    converted, direct = bf16.load_model("fp32"), original(cls, tmp_path / "bf16", dtype=torch.float32)
    for (name, a), (_, b) in zip(converted.state_dict().items(), direct.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_load_model_default_stays_fp32(dirs):
    assert next(ModelDir.open(dirs["whole"]).load_model().parameters()).dtype == torch.float32
