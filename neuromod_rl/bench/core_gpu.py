"""``neuromod-rl bench core --device cuda``: the sequence engine on a GPU.

Plastic RNN, rule ``neuromod`` (scalar modulation from the hidden state, full ``alpha``), B=1024,
T=200, N=128 and N=256, one episode start inside every fourth sequence; then the plastic LSTM (the
policies' default core) in the same configuration. Backends measured in the same run: ``reference``
(per-step autograd on the GPU), ``fused`` (its exact torch-op path on CUDA) and ``triton``. The
targets are read from the RNN's rows; the LSTM's ratios are printed beside them. Per backend:

* ``steps/s``: time steps of the whole batch per second, forward+backward (best of ``--repeats``
  passes, after a warm-up pass that also compiles the kernels), and the forward alone;
* peak memory: ``torch.cuda.max_memory_allocated()`` during one forward+backward pass, minus what
  was allocated before it (inputs, parameters);
* achieved bandwidth of the forward pass: the *trace bytes* divided by the forward time, against
  the GPU's peak. Trace bytes are what a pass must move when each sequence's traces cross memory
  once per step: ``F`` (and ``E``) read and written every step (``2 · n_traces · N² · 4`` bytes per
  sequence and step), the input drive read and the hidden state written (``2 · N · 4``; the LSTM
  reads four gate blocks and writes ``h`` and its five saved activities: ``10 · N · 4``), and the
  trace checkpoints written every K ≈ √T steps. Weights shared by the batch (``w``, ``alpha``, the
  modulator) are not counted: they stay in L2. The same count serves every backend, so the column is
  an effective bandwidth; above 100% means the traces were served by the L2 cache. The peak is the
  datasheet HBM bandwidth of the GPU found by name in :data:`PEAK_BANDWIDTH_GBS`; the measured
  device-to-device copy bandwidth (``2 × bytes`` per copy of a 1 GiB tensor) is reported beside it,
  and used as the peak for GPUs not in the table.

Where a backend runs out of memory at B=1024 (the reference keeps O(T·B·N²) for autograd: about
270 GB at N=256), it is measured again at B/4, then B/16, and the row says which B it ran; ratios
compare samples per second (``T · B`` per pass time), so they do not depend on B. Writes JSON.

    neuromod-rl bench core --device cuda            # needs a CUDA GPU (and triton for its rows)
    neuromod-rl bench core --device cuda --quick    # B=64, T=32, N=32: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import sys
import time

import torch

from neuromod_rl.bench.harness import Column, print_table, write_report
from neuromod_rl.plasticity import PlasticLSTMCell, PlasticRNNCell, scan
from neuromod_rl.plasticity.backends import BACKENDS as REGISTERED
from neuromod_rl.plasticity.fused.spec import segment_length

DEFAULT_JSON = "benchmarks/results/core_gpu.json"
BACKENDS = ("reference", "fused", "triton")
#: the cores a full run measures (the RNN's rows carry the targets)
CELLS = {"rnn": PlasticRNNCell, "lstm": PlasticLSTMCell}

#: datasheet HBM bandwidth (GB/s) by a substring of ``torch.cuda.get_device_name()``; first match wins
PEAK_BANDWIDTH_GBS = {
    "H200": 4800.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H100": 3350.0,  # SXM
    "GH200": 4000.0,
    "B200": 8000.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-PCIE-80GB": 1935.0,
    "A100": 1555.0,  # 40 GB
    "L40S": 864.0,
    "L4": 300.0,
    "A10G": 600.0,
    "RTX 4090": 1008.0,
    "RTX 3090": 936.0,
    "V100": 900.0,
}


def table_peak_gbs(name: str) -> float | None:
    """The datasheet bandwidth of the GPU called ``name``, or None when it is not in the table."""
    for key, gbs in PEAK_BANDWIDTH_GBS.items():
        if key in name:
            return gbs
    return None


def trace_bytes(rule: str, B: int, T: int, N: int, segment: int, elem: int = 4, cell: str = "rnn") -> int:
    """Bytes one forward pass moves when each sequence's traces cross memory once per step (see the
    module docstring): traces read+written per step, input read and activity written per step
    (``cell``: ``"rnn"`` or ``"lstm"``), trace checkpoints every ``segment`` steps."""
    n_traces = 2 if rule == "retroactive" else 1
    per_step = 2 * n_traces * N * N + (10 * N if cell == "lstm" else 2 * N)
    checkpoints = math.ceil(T / segment) * n_traces * N * N
    return B * (T * per_step + checkpoints) * elem


def copy_bandwidth_gbs(device: str = "cuda", nbytes: int = 2**30, repeats: int = 5) -> float:
    """Measured device-to-device copy bandwidth: ``2 · nbytes`` (read + write) per copy, best run."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(backend: str, rule: str, B: int, T: int, N: int, device: str = "cuda", repeats: int = 3,
            input_size: int = 32, cell: str = "rnn") -> dict:
    """Forward and forward+backward timings and peak memory of one configuration (``cell``: a key of
    :data:`CELLS`)."""
    kind = cell
    torch.manual_seed(0)
    cell = CELLS[kind](input_size, N, rule=rule).to(device)
    x = torch.randn(T, B, input_size, device=device)
    starts = torch.zeros(T, B, dtype=torch.bool, device=device)
    starts[T // 2, : B // 4] = True

    def forward():
        return scan(cell, x, episode_starts=starts, backend=backend, check_finite=False)

    def train_pass():
        cell.zero_grad(set_to_none=True)
        y, state, _ = forward()
        (y.sum() + state.F.sum()).backward()

    def best_time(fn) -> float:
        best = math.inf
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    ran = forward().backend
    train_pass()  # warm-up: compiles the kernels, fills the caching allocator
    peak = None
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_pass()
        _sync(device)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    seconds = best_time(train_pass)
    with torch.no_grad():
        fwd_seconds = best_time(forward)
    moved = trace_bytes(rule, B, T, N, segment_length(T), cell=kind)
    return {
        "cell": kind,
        "backend": ran,
        "rule": rule,
        "B": B,
        "T": T,
        "N": N,
        "seconds_per_pass": seconds,
        "steps_per_s": T / seconds,
        "samples_per_s": T * B / seconds,
        "forward_seconds": fwd_seconds,
        "forward_steps_per_s": T / fwd_seconds,
        "peak_mem_mib": peak,
        "forward_trace_gbytes": moved / 1e9,
        "forward_achieved_gbs": moved / fwd_seconds / 1e9,
    }


def _measure_fitting(backend: str, rule: str, B: int, T: int, N: int, device: str, repeats: int,
                     cell: str = "rnn") -> dict:
    """:func:`measure` at ``B``, else at B/4 and B/16 when the GPU runs out of memory."""
    last = None
    for b in (B, B // 4, B // 16):
        if b < 1:
            break
        try:
            row = measure(backend, rule, b, T, N, device, repeats, cell=cell)
            row["requested_B"] = B
            return row
        except torch.OutOfMemoryError as err:
            last = err
            torch.cuda.empty_cache()
    return {"cell": cell, "backend": backend, "rule": rule, "B": None, "requested_B": B, "T": T, "N": N,
            "error": f"out of memory even at B={max(B // 16, 1)}: {str(last).splitlines()[0]}"}


def bench_core_gpu(
    sizes: tuple[int, ...] = (128, 256),
    B: int = 1024,
    T: int = 200,
    rule: str = "neuromod",
    repeats: int = 3,
    device: str = "cuda",
    backends: tuple[str, ...] = BACKENDS,
    json_path: str | None = DEFAULT_JSON,
    cells: tuple[str, ...] = ("rnn",),
) -> dict:
    """Run every backend at every size for every core in ``cells`` (keys of :data:`CELLS`); print the
    table and ratios; write JSON; return the results."""
    rows = []
    for cell in cells:
        for N in sizes:
            for backend in backends:
                if backend not in REGISTERED:
                    rows.append({"cell": cell, "backend": backend, "rule": rule, "B": None, "requested_B": B, "T": T,
                                 "N": N, "error": "not available here (the triton backend needs the 'triton' package)"})
                    continue
                print(f"bench core --device {device}: {cell} {backend} N={N} ...", file=sys.stderr, flush=True)
                rows.append(_measure_fitting(backend, rule, B, T, N, device, repeats, cell=cell))
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    copy_gbs = copy_bandwidth_gbs(device) if device.startswith("cuda") else None
    table_gbs = table_peak_gbs(gpu)
    peak_gbs = table_gbs or copy_gbs
    for row in rows:
        if "error" not in row and peak_gbs:
            row["forward_fraction_of_peak_bandwidth"] = row["forward_achieved_gbs"] / peak_gbs
    result = {
        "benchmark": "core-gpu",
        "what": f"plastic {' and '.join(c.upper() for c in cells)} ({rule}) forward+backward through scan on {device}, "
        "one batch of sequences per pass",
        "date": datetime.date.today().isoformat(),
        "gpu": gpu,
        "peak_bandwidth_gbs": peak_gbs,
        "peak_bandwidth_source": "datasheet table" if table_gbs else "measured device-to-device copy",
        "copy_bandwidth_gbs": copy_gbs,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "rows": rows,
        "ratios": _ratios(rows, sizes),
        "lstm_ratios": _ratios(rows, sizes, cell="lstm") if "lstm" in cells else [],
        "bytes_counted": "traces read+written once per step, input read and hidden state written per step, "
        "trace checkpoints every K=ceil(sqrt(T)) steps; shared weights excluded (L2-resident)",
    }
    result["targets"] = targets(result)
    _print(result)
    write_report(result, json_path)
    return result


def _triton_version() -> str | None:
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def _ratios(rows: list[dict], sizes, cell: str = "rnn") -> list[dict]:
    """Triton against the others for one core, on samples per second (independent of the B each row
    ran at); a row without a ``cell`` is the RNN's."""
    out = []
    for N in sizes:
        got = {r["backend"]: r for r in rows
               if r["N"] == N and "error" not in r and r.get("cell", "rnn") == cell}
        if "triton" not in got:
            continue
        tri = got["triton"]["samples_per_s"]
        entry = {"N": N}
        for other in ("reference", "fused"):
            if other in got:
                entry[f"triton_over_{other}"] = tri / got[other]["samples_per_s"]
        out.append(entry)
    return out


#: the issue's targets at B=1024, T=200, N=128 on an H100/H200-class GPU: (what, ratio key or row field, bound)
TARGETS = (
    ("triton speed over reference (samples/s)", "triton_over_reference", 50.0),
    ("triton speed over fused torch ops on the GPU (samples/s)", "triton_over_fused", 5.0),
    ("triton forward bandwidth, fraction of peak", "forward_fraction_of_peak_bandwidth", 0.5),
)
TARGET_N = 128


def targets(result: dict) -> list[dict]:
    """Each target with the measured value at N=128 and whether it is met (None: not measured)."""
    ratio = next((q for q in result["ratios"] if q["N"] == TARGET_N), {})
    row = next((r for r in result["rows"] if r["N"] == TARGET_N and r["backend"] == "triton" and "error" not in r
                and r.get("cell", "rnn") == "rnn"), {})
    out = []
    for what, key, bound in TARGETS:
        value = ratio.get(key, row.get(key))
        out.append({"target": what, "N": TARGET_N, "bound": bound, "value": value,
                    "met": None if value is None else value >= bound})
    return out


def _fraction_of_peak(row: dict) -> str | None:
    frac = row.get("forward_fraction_of_peak_bandwidth")
    return None if frac is None else f"{100 * frac:.0f}%"


def _verdict(target: dict) -> str:
    return "not measured" if target["met"] is None else ("met" if target["met"] else "MISSED")


# a row that did not run shows "-" in every measured column and says why in the last one
_ROW_COLUMNS = (
    Column("cell", 5, lambda r: r.get("cell", "rnn"), align="<"),
    Column("N", 5, "N"),
    Column("B", 5, lambda r: r["requested_B"] if r["B"] is None else r["B"]),
    Column("backend", 9, "backend", align="<"),
    Column("steps/s", 9, "steps_per_s", "{:.1f}"),
    Column("samples/s", 12, "samples_per_s", "{:.0f}"),
    Column("fwd steps/s", 12, "forward_steps_per_s", "{:.1f}"),
    Column("peak MiB", 9, "peak_mem_mib", "{:.0f}"),
    Column("fwd GB/s", 9, "forward_achieved_gbs", "{:.0f}"),
    Column("of peak", 8, _fraction_of_peak),
    Column("", 0, lambda r: r.get("error", ""), align="<"),
)
_TARGET_COLUMNS = (
    Column("target", 62, lambda t: f"{t['target']} >= {t['bound']:g}", align="<"),
    Column("at N", 4, "N"),
    Column("measured", 8, "value", "{:.2f}"),
    Column("verdict", 12, _verdict, align="<"),
)


def _print(result: dict) -> None:
    peak, copy = result["peak_bandwidth_gbs"], result["copy_bandwidth_gbs"]
    title = (
        f"\n{result['what']}; GPU: {result['gpu']}, peak bandwidth {peak if peak is None else round(peak)} GB/s "
        f"({result['peak_bandwidth_source']}), measured copy {copy and round(copy)} GB/s"
    )
    ratios = {
        f"{cell} N={q['N']} {k.replace('_over_', '/')} (samples/s)": v
        for cell, key in (("rnn", "ratios"), ("lstm", "lstm_ratios"))
        for q in result.get(key, [])
        for k, v in q.items()
        if k != "N"
    }
    print_table(title, _ROW_COLUMNS, result["rows"], ratios, ratio_fmt="{:.1f}x")
    print_table("", _TARGET_COLUMNS, result["targets"])


def run(quick: bool = False, repeats: int = 3, json_path: str | None = DEFAULT_JSON) -> int:
    """The CLI entry (``neuromod-rl bench core --device cuda``): exit status 2 without a CUDA GPU."""
    if not torch.cuda.is_available():
        print(
            "neuromod-rl bench core --device cuda: no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). Run it on a machine with an "
            "NVIDIA GPU and a CUDA build of torch (make gpu-check installs one), or drop --device cuda.",
            file=sys.stderr,
        )
        return 2
    if quick:
        bench_core_gpu(sizes=(32,), B=64, T=32, repeats=1, json_path=json_path, cells=tuple(CELLS))
    else:
        bench_core_gpu(repeats=repeats, json_path=json_path, cells=tuple(CELLS))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuromod_rl.bench.core_gpu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=64, T=32, N=32: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (best is kept)")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"where to write the results (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    return run(args.quick, args.repeats, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
