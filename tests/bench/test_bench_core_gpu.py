"""`neuromod-rl bench core --device cuda`: its refusal without a GPU, its byte count and its table."""

import json

import pytest
import torch

from neuromod_rl.bench import core as bench_core
from neuromod_rl.bench import core_gpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the benchmark would run")
def test_cuda_benchmark_without_a_gpu_exits_2_saying_why(capsys):
    assert bench_core.main(["--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible to torch" in err and "make gpu-check" in err


def test_trace_bytes_count_one_round_trip_per_step_and_the_checkpoints():
    # neuromod, B=2, T=4, N=8, K=2: per sequence 4 * (2*64 + 2*8) + 2 checkpoints * 64 elements, float32
    assert core_gpu.trace_bytes("neuromod", B=2, T=4, N=8, segment=2) == 2 * (4 * 144 + 2 * 64) * 4
    # the eligibility trace doubles the trace terms
    assert core_gpu.trace_bytes("retroactive", B=1, T=1, N=8, segment=1) == (4 * 64 + 16 + 2 * 64) * 4


def test_peak_bandwidth_table_matches_device_names():
    assert core_gpu.table_peak_gbs("NVIDIA H200") == 4800.0
    assert core_gpu.table_peak_gbs("NVIDIA H100 80GB HBM3") == 3350.0
    assert core_gpu.table_peak_gbs("NVIDIA H100 PCIe") == 2000.0
    assert core_gpu.table_peak_gbs("Some Future GPU") is None


def test_benchmark_rows_and_json_on_a_small_cpu_run(tmp_path):
    """The measuring code itself, on the CPU with the backends that run there (the CLI asks for CUDA)."""
    out = tmp_path / "gpu.json"
    result = core_gpu.bench_core_gpu(sizes=(8,), B=2, T=4, repeats=1, device="cpu",
                                     backends=("reference", "fused"), json_path=str(out))
    assert [r["backend"] for r in result["rows"]] == ["reference", "fused"]
    for row in result["rows"]:
        assert row["steps_per_s"] > 0 and row["forward_steps_per_s"] > 0 and row["B"] == 2
    assert json.loads(out.read_text())["rows"][1]["backend"] == "fused"


def test_ratios_compare_samples_per_second():
    rows = [
        {"backend": "reference", "N": 128, "samples_per_s": 10.0},
        {"backend": "fused", "N": 128, "samples_per_s": 100.0},
        {"backend": "triton", "N": 128, "samples_per_s": 1000.0},
        {"backend": "reference", "N": 256, "error": "out of memory"},
        {"backend": "triton", "N": 256, "samples_per_s": 50.0},
    ]
    assert core_gpu._ratios(rows, (128, 256)) == [
        {"N": 128, "triton_over_reference": 100.0, "triton_over_fused": 10.0},
        {"N": 256},
    ]


def test_targets_read_the_n128_figures():
    result = {
        "ratios": [{"N": 128, "triton_over_reference": 60.0, "triton_over_fused": 4.0}],
        "rows": [{"backend": "triton", "N": 128, "forward_fraction_of_peak_bandwidth": 0.7}],
    }
    assert [(t["value"], t["met"]) for t in core_gpu.targets(result)] == [(60.0, True), (4.0, False), (0.7, True)]
    assert all(t["met"] is None for t in core_gpu.targets({"ratios": [], "rows": []}))


def test_lstm_rows_count_their_gates_and_keep_out_of_the_targets(tmp_path):
    # the LSTM reads four gate blocks and writes h and five saved activities per step: 10 N instead of 2 N
    assert core_gpu.trace_bytes("neuromod", B=1, T=1, N=8, segment=1, cell="lstm") == (2 * 64 + 80 + 64) * 4
    result = core_gpu.bench_core_gpu(sizes=(8,), B=2, T=4, repeats=1, device="cpu", backends=("fused",),
                                     json_path=str(tmp_path / "gpu.json"), cells=("rnn", "lstm"))
    assert [(r["cell"], r["backend"]) for r in result["rows"]] == [("rnn", "fused"), ("lstm", "fused")]
    assert result["rows"][1]["steps_per_s"] > 0
    rows = [{"cell": "lstm", "backend": "triton", "N": 128, "forward_fraction_of_peak_bandwidth": 0.9}]
    assert all(t["met"] is None for t in core_gpu.targets({"ratios": [], "rows": rows}))
