"""The compiled kernel gives the same numbers on every CPU: it is built for a fixed instruction set.

A ``-march=native`` build summed in an order set by the build machine's vector width, so the same seed
trained different agents on machines with different CPUs (a committed study did not regenerate on
another machine). These tests hold the build to a fixed target, and hold the kernel's output bits, for
fixed inputs, to the digest recorded with the portable x86-64-v3 build: a change of target, flags or
summation order that moves a single bit fails here before it moves a study's results.
"""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest
import torch

from neuromod_rl.plasticity import PlasticLSTMCell, PlasticRNNCell
from neuromod_rl.plasticity.fused import build, fused_scan_projected
from neuromod_rl.plasticity.fused import cpu as fused_cpu

AVX512_CPU = "flags : fpu sse2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave avx512f avx512bw avx512cd"
AVX2_CPU = "flags : fpu sse2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
OLD_CPU = "flags : fpu sse2 ssse3 sse4_1 sse4_2 popcnt"


@pytest.fixture(autouse=True)
def _portable(monkeypatch):
    monkeypatch.delenv("NEUROMOD_RL_KERNEL_TARGET", raising=False)


def test_build_targets_one_instruction_set_for_every_cpu_that_has_it():
    # what decides the summation order must not depend on which of these machines compiled the kernel
    assert build.target_flags(AVX512_CPU, "x86_64") == build.target_flags(AVX2_CPU, "x86_64")
    assert build.target_flags(AVX2_CPU, "x86_64") == ["-march=x86-64-v3", "-mtune=generic"]
    assert build.target_flags(OLD_CPU, "x86_64") == ["-march=x86-64", "-mtune=generic"]
    assert build.target_flags(AVX512_CPU, "aarch64") == []
    for cpu in (AVX512_CPU, AVX2_CPU, OLD_CPU):
        assert not any("native" in f for f in build.target_flags(cpu, "x86_64"))
    assert not any("native" in f for f in build._FLAGS)


def test_native_target_is_opt_in_and_a_wrong_value_names_the_choices(monkeypatch):
    monkeypatch.setenv("NEUROMOD_RL_KERNEL_TARGET", "native")
    assert build.target_flags(AVX2_CPU, "x86_64") == ["-march=native"]
    native_key = build.source_key()
    monkeypatch.setenv("NEUROMOD_RL_KERNEL_TARGET", "portable")
    assert build.source_key() != native_key  # the two builds never share a cached library
    monkeypatch.setenv("NEUROMOD_RL_KERNEL_TARGET", "fastest")
    with pytest.raises(ValueError, match=r"'fastest'.*'portable'.*'native'"):
        build.target_flags(AVX2_CPU, "x86_64")


# ------------------------------------------------------------------------------------ the output bits
#: sha256 of the kernel's outputs and gradients below, recorded with the portable x86-64-v3 build (gcc 12), one thread
DIGESTS = {
    ("lstm", torch.float32): "2dd38163455c00e386791e0ae5b4472ed8fed56a57d30a28a164e0504b745eb4",
    ("lstm", torch.float64): "6027e8f6f4dd6e655b12b5162b5bc56bf091354ea2109ed1dda211c8d97351cc",
    ("rnn", torch.float32): "9826dba06e11365909b9a4ee5db64dafc5573eed3e9f574cc2444a8d84de2de4",
    ("rnn", torch.float64): "c48b1232084b12aa3372f7a60380085ccd14af0812318b449616f6dff15a6bad",
}
RECORDED_WITH = "(Debian 12.2.0-14+deb12u1) 12.2.0"  # `cc --version`, less its name
T, B, I, N = 24, 3, 5, 16


def _compiler() -> str:
    cc = build.compiler()
    if cc is None:
        return ""
    out = subprocess.run([cc, "--version"], capture_output=True, text=True)
    first = out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""
    return first.split(" ", 1)[-1]


@pytest.fixture
def one_thread():
    """The kernel splits the sequences over ``torch.get_num_threads()`` threads and adds their parameter
    gradients in that grouping, so the bits are those of a thread count (runs pin it: ``torch_threads``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _kernel_bits(core: str, dtype: torch.dtype) -> str:
    """Forward and backward of the C kernel alone (its input given pre-projected, so no torch matmul is
    hashed), on inputs drawn by numpy's PCG64 (the same numbers on every machine)."""
    rng = np.random.default_rng(7)
    cls = PlasticLSTMCell if core == "lstm" else PlasticRNNCell
    cell = cls(input_size=I, hidden_size=N, rule="neuromod").to(dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.6, 0.6, p.shape)))
    width = 4 * N if core == "lstm" else N
    xp = torch.from_numpy(rng.normal(0, 1.5, (T, B, width))).to(dtype).requires_grad_()
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[T // 2, 1] = True  # a reset inside a sequence
    res = fused_scan_projected(cell, xp, cell.initial_state(B, dtype=dtype), starts, None)
    H, FT, M = res.y, res.state.F, res.modulation
    weights = torch.from_numpy(rng.normal(0, 1, H.shape)).to(dtype)
    ((H * weights).sum() + FT.square().sum()).backward()
    parts = [H, FT, M, xp.grad, cell.rule.alpha.grad]
    assert FT.abs().max() == 1.0, "the inputs must drive some traces to the clip bound"
    return hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in parts)).hexdigest()


@pytest.mark.parametrize("core", ["lstm", "rnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_kernel_output_bits_are_the_recorded_ones(core, dtype, one_thread):
    if not fused_cpu.available():
        pytest.skip("the C kernel is not available here")
    if build.target_flags() != ["-march=x86-64-v3", "-mtune=generic"] or _compiler() != RECORDED_WITH:
        pytest.skip(f"the digests were recorded with x86-64-v3 code from {RECORDED_WITH}")
    assert _kernel_bits(core, dtype) == DIGESTS[(core, dtype)]
