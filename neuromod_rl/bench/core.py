"""``neuromod-rl bench core``: forward+backward throughput and peak memory of the sequence engine.

Plastic RNN and plastic LSTM cores (T=128; N=64 at B=64, N=256 at B=32; rules ``neuromod`` and
``retroactive``), backends ``reference`` (the per-step autograd specification) and ``fused``, measured
in the same run. Each configuration runs in a fresh subprocess, so its peak memory (peak RSS minus the
RSS before the first pass) is its own; the bytes autograd keeps for backward are counted exactly as
well. N=256 runs at B=32 because the reference's autograd graph alone would take 11-17 GB at B=64;
both memories scale with B, so their ratio does not depend on it. Prints, per configuration, the
backend that ran (``ScanResult.backend``), steps/s (time steps of the whole batch per second), the
fused/reference speed ratio and the reference/fused memory ratios; writes JSON.

    neuromod-rl bench core                 # or: python -m neuromod_rl.bench.core
    neuromod-rl bench core --quick         # smaller sizes, a smoke run
    neuromod-rl bench core --cores lstm    # one core only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch
from tqdm import tqdm

from neuromod_rl import plasticity
from neuromod_rl.bench import core_gpu
from neuromod_rl.bench.harness import Column, print_table, write_report
from neuromod_rl.plasticity import scan

DEFAULT_JSON = "benchmarks/results/core.json"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


#: ``core`` name -> cell class name in :mod:`neuromod_rl.plasticity` (the policies' ``core`` values)
CORES = {"rnn": "PlasticRNNCell", "lstm": "PlasticLSTMCell"}


def measure(
    rule: str, backend: str, B: int, T: int, N: int, repeats: int, input_size: int = 32, core: str = "rnn"
) -> dict:
    """Time ``repeats`` forward+backward passes of one configuration in this process."""
    torch.manual_seed(0)
    cell = getattr(plasticity, CORES[core])(input_size, N, rule=rule)
    x = torch.randn(T, B, input_size)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[T // 2, : B // 4] = True  # some episodes end mid-sequence, as in a rollout
    ran = []

    def step() -> None:
        cell.zero_grad(set_to_none=True)
        result = scan(cell, x, episode_starts=starts, backend=backend)
        ran.append(result.backend)
        (result.y.sum() + result.state.F.sum()).backward()

    # Memory first: RSS before the first pass (glibc keeps freed blocks after it, so a later baseline
    # would hide the peak), and the bytes autograd saves for backward, counted exactly by a hook.
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    base = _rss_kib()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    best = min(times)
    return {
        "core": core,
        "rule": rule,
        "backend": ran[-1],  # the backend that ran, as scan reports it
        "B": B,
        "T": T,
        "N": N,
        "seconds_per_pass": best,
        "steps_per_s": T / best,
        "samples_per_s": T * B / best,
        "peak_mem_mib": max(peak - base, 0) / 1024,
        "autograd_saved_mib": saved / 2**20,
        "threads": torch.get_num_threads(),
    }


def _run_worker(
    core: str, rule: str, backend: str, B: int, T: int, N: int, repeats: int, threads: int | None
) -> dict:
    cmd = [sys.executable, "-m", "neuromod_rl.bench.core", "--worker", core, rule, backend, str(B),
           str(T), str(N), str(repeats)]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {core}/{rule}/{backend}/N={N} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_core(
    sizes: tuple[int, ...] = (64, 256),
    rules: tuple[str, ...] = ("neuromod", "retroactive"),
    B: int = 64,
    T: int = 128,
    repeats: int = 3,
    large_B: int = 32,
    threads: int | None = None,
    json_path: str | None = DEFAULT_JSON,
    cores: tuple[str, ...] = tuple(CORES),
) -> dict:
    """Run every configuration, print the table with ratios, write JSON; returns the results."""
    unknown = set(cores) - set(CORES)
    if unknown:
        raise ValueError(f"unknown cores {sorted(unknown)}; valid choices: {list(CORES)}")
    configs = [(c, r, n, be) for c in cores for n in sizes for r in rules for be in ("reference", "fused")]
    rows = []
    for core, rule, N, backend in tqdm(configs, desc="bench core", unit="config"):
        reps = 1 if backend == "reference" and N >= 256 else repeats
        rows.append(_run_worker(core, rule, backend, large_B if N >= 256 else B, T, N, reps, threads))
    ratios = []
    for core, rule, N in dict.fromkeys((c, r, n) for c, r, n, _ in configs):
        same = [r for r in rows if (r["core"], r["rule"], r["N"]) == (core, rule, N)]
        ref = next(r for r in same if r["backend"] == "reference")
        fus = next(r for r in same if r["backend"] == "fused")
        ratios.append(
            {
                "core": core,
                "rule": rule,
                "N": N,
                "speedup_fused_over_reference": fus["steps_per_s"] / ref["steps_per_s"],
                "memory_reference_over_fused": ref["peak_mem_mib"] / max(fus["peak_mem_mib"], 1e-3),
                "saved_reference_over_fused": ref["autograd_saved_mib"] / max(fus["autograd_saved_mib"], 1e-6),
            }
        )
    result = {
        "benchmark": "core",
        "what": "plastic RNN and LSTM forward+backward through scan, one batch of sequences per pass",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "rows": rows,
        "ratios": ratios,
    }
    _print(result, T)
    write_report(result, json_path)
    return result


_ROW_COLUMNS = (
    Column("core", 5, "core", align="<"),
    Column("rule", 11, "rule", align="<"),
    Column("N", 5, "N"),
    Column("B", 5, "B"),
    Column("backend ran", 12, "backend", align="<"),
    Column("steps/s", 9, "steps_per_s", "{:.0f}"),
    Column("samples/s", 11, "samples_per_s", "{:.0f}"),
    Column("peak MiB", 9, "peak_mem_mib", "{:.1f}"),
    Column("saved MiB", 10, "autograd_saved_mib", "{:.1f}"),
)
_RATIO_COLUMNS = (
    *_ROW_COLUMNS[:3],
    Column("speed fused/ref", 16, "speedup_fused_over_reference", "{:.1f}x"),
    Column("peak memory ref/fused", 22, "memory_reference_over_fused", "{:.1f}x"),
    Column("saved ref/fused", 16, "saved_reference_over_fused", "{:.1f}x"),
)


def _print(result: dict, T: int) -> None:
    threads = result["rows"][0]["threads"]
    print_table(f"\nplastic cores forward+backward, T={T}, {threads} torch threads", _ROW_COLUMNS, result["rows"])
    print_table("", _RATIO_COLUMNS, result["ratios"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench core", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=32, T=32): a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: all cores)")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--cores", nargs="+", choices=list(CORES), default=list(CORES), help="cores to measure")
    parser.add_argument(
        "--worker", nargs=7, metavar=("CORE", "RULE", "BACKEND", "B", "T", "N", "REPEATS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the GPU benchmark of reference, fused and triton (bench/core_gpu.py)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        return core_gpu.run(args.quick, args.repeats, core_gpu.DEFAULT_JSON if args.json == DEFAULT_JSON else args.json)
    if args.worker:
        core, rule, backend, B, T, N, reps = args.worker
        print(json.dumps(measure(rule, backend, int(B), int(T), int(N), int(reps), core=core)))
        return 0
    cores = tuple(args.cores)
    if args.quick:  # one rule per core: a smoke run of every code path
        bench_core(sizes=(32,), rules=("neuromod",), B=8, T=32, repeats=1, large_B=8, threads=args.threads,
                   json_path=args.json, cores=cores)
    else:
        bench_core(repeats=args.repeats, threads=args.threads, json_path=args.json, cores=cores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
