"""bench gpu on the CPU with the tiny preset: every phase and replayed decode in one run, the
replay labelled as such; the decode rows run the shipped schedules (ParallelDecoder for
parallel), whose greedy output is ar's; bad options are one-line errors. (The real presets
need a GPU.)"""

from __future__ import annotations

import json

import pytest
import torch

from hippo_trt.cli.main import main
from hippo_trt.errors import EngineError, InputError
from hippo_trt.runtime.backends.replay import Outcomes, ReplayScript, windows
from hippo_trt.runtime.bench.common import KEEPS
from hippo_trt.runtime.bench.gpu import GpuBenchConfig, bench_gpu, format_gpu_tables, rig_for
from hippo_trt.runtime.bench.gpu_config import PREFILL_KEEPS
from hippo_trt.runtime.bench.gpu_decode import PairSessions, overlap
from hippo_trt.runtime.decoding.parallel import ParallelDecoder

CONFIG = GpuBenchConfig(preset="tiny", device="cpu", dtype="fp32", mats=(2.0, 6.0), new_tokens=24, reps=2, graphs=(False,))
PARALLEL_RUNS: list[int] = []  # tokens of every ParallelDecoder.run during the module's bench run


@pytest.fixture(scope="module")
def result():
    shipped = ParallelDecoder.run

    def spy(self, first_logits):
        tokens = shipped(self, first_logits)
        PARALLEL_RUNS.append(len(tokens))
        return tokens

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ParallelDecoder, "run", spy)
        return bench_gpu(CONFIG, progress=False)


def test_every_phase_is_measured_and_decode_steps_sit_beside_their_bound(result):
    phases = {p.phase: p for p in result.phases}
    expected = {
        "vision (target tower)",
        "pruning (hippo, keep 0.1, host)",
        "target prefill",
        "draft prefill keep 1",
        "draft prefill keep 0.25",
        "draft prefill keep 0.1",
        "target decode step",
        "verify step (gamma 4)",
        "draft decode step",
    }
    assert set(phases) == expected
    assert all(p.ms > 0 for p in result.phases)
    assert phases["draft prefill keep 0.1"].tokens < phases["draft prefill keep 0.25"].tokens < phases["draft prefill keep 1"].tokens
    assert phases["verify step (gamma 4)"].tokens == 5
    for name in ("target decode step", "verify step (gamma 4)", "draft decode step"):
        assert phases[name].bound_ms > 0 and phases[name].over_bound == pytest.approx(phases[name].ms / phases[name].bound_ms)
    assert result.context == 25 and result.bandwidth_gb_s > 0


def test_decode_rows_cover_every_method_and_mat_with_ratios_from_the_same_run(result):
    rows = {(r.method, r.mat): r for r in result.decode}
    assert set(rows) == {("ar", None), ("hf_generate", None), ("sd", 2.0), ("parallel", 2.0), ("sd", 6.0), ("parallel", 6.0)}
    ar, hf = rows[("ar", None)], rows[("hf_generate", None)]
    assert ar.speedup_vs_ar == 1.0
    for r in result.decode:
        assert r.tokens_per_s > 0
        assert r.speedup_vs_hf_generate == pytest.approx(r.tokens_per_s / hf.tokens_per_s, rel=1e-2)
    assert rows[("sd", 6.0)].gamma == 6 and rows[("sd", 2.0)].gamma == 4  # MAT 6 needs a longer draft
    assert 1 <= rows[("sd", 2.0)].replayed_mat < rows[("sd", 6.0)].replayed_mat <= 7
    for mat in (2.0, 6.0):  # on a CPU the lanes are threads: the draft's steps may overlap the target's
        assert 0.0 <= rows[("parallel", mat)].draft_hidden <= 1.0 and rows[("sd", mat)].draft_hidden is None


def test_parallel_rows_run_the_shipped_parallel_decoder(result):
    assert PARALLEL_RUNS == [CONFIG.new_tokens + 1] * 2  # one per MAT; output 0 is the prefill's


def test_the_shipped_loops_follow_the_replayed_outcomes_and_parallel_gives_ar_s_tokens():
    config = GpuBenchConfig(preset="tiny", device="cpu", dtype="fp32", mats=(6.0,), new_tokens=20, reps=1, graphs=(False,))
    rig = rig_for(config)
    gamma = rig.gammas[-1]
    outcomes = Outcomes.at_mat(6.0, gamma, 4 * config.new_tokens, config.seed)
    script = ReplayScript(outcomes)
    with torch.no_grad():
        target, draft = rig.decoders(False)
        rig.prefill(target, rig.embeds(rig.target_model, rig.context), rig.target_lane)
        rig.prefill(draft, rig.embeds(rig.draft_model, rig.draft_context), rig.draft_lane)
        pair = PairSessions(rig, target, draft)
        runs = {m: pair.decode(m, script, gamma) for m in ("ar", "sd", "parallel", "ar")}  # ar again: caches restored
    expected = [script.target_token(i) for i in range(config.new_tokens + 1)]
    assert all(run.tokens == expected for run in runs.values())
    plan = windows(outcomes, gamma, config.new_tokens)  # tokens committed per verification, as the outcomes say
    assert runs["sd"].stats.committed == plan and runs["parallel"].stats.committed == plan
    assert len(runs["parallel"].stats.path_kept) == len(plan)  # recorded by ParallelDecoder only
    assert not runs["sd"].stats.path_kept and runs["ar"].stats.verifications == 0
    assert {s.track for s in runs["parallel"].spans} >= {"target", "draft"} and 0.0 <= runs["parallel"].draft_hidden <= 1.0


def test_the_prefill_keeps_come_from_the_one_keeps():
    assert set(PREFILL_KEEPS) <= set(KEEPS) and PREFILL_KEEPS[0] == 1.0 and PREFILL_KEEPS[-1] == 0.1


def test_every_output_says_it_is_a_replay(result):
    text = format_gpu_tables(result)
    assert "acceptance-controlled replay" in text and "MAT 2 (alpha" in text and "| parallel | off | 6 |" in text
    assert "acceptance-controlled replay" in json.dumps(result.to_json())


def test_overlap_of_two_intervals():
    assert overlap((1.0, 3.0), (2.0, 5.0)) == pytest.approx(1.0)
    assert overlap((1.0, 2.0), (3.0, 5.0)) == 0.0


@pytest.mark.parametrize("name", ["tiny", "tiny-qwen"])
def test_cli_prints_json_of_a_trace_replay(tmp_path, capsys, name):
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps([1, 3, 5, 2]))
    argv = [
        "bench",
        "gpu",
        "--preset",
        name,
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--trace",
        str(trace),
        "--tokens",
        "12",
        "--reps",
        "1",
        "--graphs",
        "off",
        "--json",
        "--quiet",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["outcomes"] == ["recorded trace"]
    methods = [(r["method"], r["mat"]) for r in out["decode"]]
    assert ("sd", None) in methods and ("parallel", None) in methods
    assert out["preset"] == name and all(r["tokens_per_s"] > 0 for r in out["decode"])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--preset", "nope", "--device", "cpu"], "nope"),
        (["--preset", "tiny", "--device", "cpu", "--mat", "0.5"], "--mat values must be at least 1"),
        (["--preset", "tiny", "--device", "cpu", "--dtype", "int8"], "--dtype 'int8' is unknown"),
        (["--preset", "tiny", "--device", "cpu", "--trace", "/nonexistent.json"], "cannot be read as JSON"),
        (["--preset", "tiny", "--device", "cpu", "--frames", "0"], "expected a positive integer"),
    ],
)
def test_bad_options_are_one_line_errors(argv, needle, capsys):
    assert main(["bench", "gpu", *argv, "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the no-GPU refusal cannot be shown")
def test_without_a_gpu_the_cuda_device_is_refused():
    with pytest.raises(EngineError, match="needs a CUDA GPU.*--device cpu --preset tiny"):
        bench_gpu(GpuBenchConfig(preset="tiny"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here; the replay on streams and graphs runs where one is")
def test_tiny_replay_on_the_gpu_with_graphs_on_and_off():  # pragma: no cover - needs a GPU
    r = bench_gpu(GpuBenchConfig(preset="tiny", dtype="fp32", mats=(4.0,), new_tokens=24, reps=2), progress=False)
    assert {(row.method, row.graphs) for row in r.decode} >= {("parallel", True), ("parallel", False), ("sd", True)}
    assert all(0 <= (row.draft_hidden or 0) <= 1 for row in r.decode)


def test_config_rejects_nonsense():
    with pytest.raises(InputError, match="--gamma must be at least 1"):
        GpuBenchConfig(gamma=0)
    with pytest.raises(InputError, match="at least one setting"):
        GpuBenchConfig(graphs=())
