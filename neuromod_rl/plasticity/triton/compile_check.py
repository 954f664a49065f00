"""Compile the Triton kernels for a CUDA target without a GPU, and report their resource use.

Triton's interpreter (what the CPU tests run) accepts code the GPU compiler rejects; compiling ahead
of time for a real target (default ``sm_90``, the H100/H200) catches that on any machine, and ptxas's
resource report (registers and spill stack per thread) is the best view of a kernel's fit on chip
short of running it. Run it in a process where ``TRITON_INTERPRET`` is not set::

    python -m neuromod_rl.plasticity.triton.compile_check            # N = 128 and 256, every rule
    python -m neuromod_rl.plasticity.triton.compile_check --sizes 64
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from neuromod_rl.plasticity.fused.spec import RULE_CODES
from neuromod_rl.plasticity.rules import Oja

RULES = ("neuromod", "clipped", "hebbian", "retroactive", *(["oja"] if Oja in RULE_CODES else []))
_INTS = ("t_start", "t_end", "T", "K", "B", "N", "post_stride", "post_offset")
#: the LSTM kernels also run abcd
LSTM_RULES = (*RULES, "abcd")


def _signature(fn, consts: dict, dtype: str) -> dict:
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in _INTS:
            sig[name] = "i32"
        elif name == "clip":
            sig[name] = "fp32"
        elif name == "STARTS":
            sig[name] = "*i8"
        else:
            sig[name] = f"*{dtype}"
    return sig


def _resources(cubin: bytes) -> dict:
    """Registers and spill stack per thread, from ``cuobjdump -res-usage`` (shipped with Triton)."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        out = subprocess.run([str(tool), "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", out)
    if not found:
        raise RuntimeError(f"cuobjdump printed no resource line:\n{out}")
    return {"registers": int(found[1]), "stack_bytes": int(found[2]), "shared_bytes": int(found[3])}


def compile_kernels(
    N: int, rule: str = "neuromod", alpha_full: bool = True, dtype: str = "fp32", arch: int = 90, cell: str = "rnn"
) -> dict[str, dict]:
    """Compile the kernels of one configuration (``cell``: ``"rnn"`` or ``"lstm"``); returns
    ``{kernel: resources}``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from neuromod_rl.plasticity import PlasticLSTMCell, PlasticRNNCell
    from neuromod_rl.plasticity.triton import function, function_lstm, kernels, kernels_lstm, kernels_replay
    from neuromod_rl.plasticity.triton.config import config_for

    if function.interpreted():
        raise RuntimeError("compile_check needs compiled kernels: run it with TRITON_INTERPRET unset")
    cls = {"rnn": PlasticRNNCell, "lstm": PlasticLSTMCell}[cell]
    cfg = config_for(cls(1, N, rule=rule, alpha_shape="full" if alpha_full else "neuron"), T=1)
    block_n, block_j = function.blocks(N) if cell == "rnn" else function_lstm.lstm_blocks(N)
    consts = dict(RULE=cfg.rule_code, MOD=cfg.mod_code, EXTERNAL=False, ALPHA_FULL=alpha_full,
                  HAS_STARTS=True, BLOCK_N=block_n, BLOCK_J=block_j)
    out = {}
    fns = (
        (kernels.plastic_rnn_forward, kernels_replay.trace_replay, kernels.plastic_rnn_backward)
        if cell == "rnn"
        else (kernels_lstm.plastic_lstm_forward, kernels_replay.trace_replay, kernels_lstm.plastic_lstm_backward)
    )
    for fn in fns:
        used = {k: v for k, v in consts.items() if k in fn.arg_names}
        src = ASTSource(fn=fn, signature=_signature(fn, used, dtype), constexprs=used)
        options = {"num_warps": function.num_warps(block_n)}
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
        out[fn.fn.__name__] = {"block_n": block_n, "block_j": block_j, **_resources(compiled.asm["cubin"])}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200)")
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: the interpreter does not compile")
    print(f"{'N':>5} {'rule':<12}{'kernel':<22}{'tile':>9}{'regs':>6}{'spill B':>9}")
    for cell in args.cells:
        for N in args.sizes:
            for rule in RULES if cell == "rnn" else LSTM_RULES:
                for name, r in compile_kernels(N, rule, arch=args.arch, cell=cell).items():
                    tile = f"{r['block_n']}x{r['block_j']}"
                    print(f"{N:>5} {rule:<12}{name:<22}{tile:>9}{r['registers']:>6}{r['stack_bytes']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
