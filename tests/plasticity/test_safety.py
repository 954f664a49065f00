"""Memory safety and trust at the boundary between Python and compiled code.

* ``scan`` refuses a state whose dtype differs from the input's before any pointer reaches the C
  kernel (before: float16/bfloat16 crashed the process, float64 silently gave wrong outputs);
* half precision runs on ``reference``; forcing ``fused`` says which dtype it cannot take;
* the fused engine runs only the exact cell and rule classes it implements: a user's subclass
  that overrides ``update`` runs its own equation on ``reference``;
* the compiled-kernel cache is trusted only when it is private to the user: a planted library in a
  folder others can write to is never loaded.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

from neuromod_rl.plasticity import PlasticRNNCell, scan
from neuromod_rl.plasticity.fused import build
from neuromod_rl.plasticity.fused import cpu as fused_cpu
from neuromod_rl.plasticity.rules import Neuromodulated

T, B, I, N = 12, 3, 4, 8


def _cell(rule="neuromod", dtype=torch.float32):
    torch.manual_seed(0)
    return PlasticRNNCell(I, N, rule=rule).to(dtype)


# ------------------------------------------------------------------------------ state dtype
@pytest.mark.parametrize(
    "rule, field, dtype",
    [
        ("neuromod", "F", torch.float16),
        ("neuromod", "F", torch.bfloat16),
        ("neuromod", "F", torch.float64),
        ("neuromod", "h", torch.float64),
        ("retroactive", "E", torch.float16),
        ("retroactive", "E", torch.float64),
    ],
)
@pytest.mark.parametrize("backend", [None, "fused", "reference"])
def test_state_of_another_dtype_is_refused_naming_the_field(rule, field, dtype, backend):
    cell = _cell(rule)
    state = cell.initial_state(B)
    state = state.replace(**{field: (0.1 * torch.randn_like(state[field])).to(dtype)})
    with pytest.raises(ValueError, match=rf"state\.{field} is {dtype}.*x is torch\.float32"):
        scan(cell, torch.randn(T, B, I), state, backend=backend)


def test_kernel_pointers_are_checked_before_they_reach_c():
    good = torch.zeros(B, N, N)
    assert fused_cpu._pointer("state.F", good, torch.float32, (B, N, N)) == good.data_ptr()
    with pytest.raises(ValueError, match=r"state\.F is torch\.float16, expected torch\.float32"):
        fused_cpu._pointer("state.F", good.half(), torch.float32, (B, N, N))
    with pytest.raises(ValueError, match=r"state\.E has shape \(3, 8, 9\)"):
        fused_cpu._pointer("state.E", torch.zeros(B, N, N + 1), torch.float32, (B, N, N))
    with pytest.raises(ValueError, match=r"state\.F is not contiguous"):
        fused_cpu._pointer("state.F", good.transpose(1, 2), torch.float32, (B, N, N))


@pytest.mark.parametrize("rule", ["neuromod", "retroactive"])
def test_non_contiguous_state_gives_the_reference_result(rule):
    cell = _cell(rule)
    x = torch.randn(T, B, I)
    state = cell.initial_state(B)
    fields = {k: 0.2 * torch.randn(B, N, N).transpose(1, 2) for k in state if k != "h"}  # views, not contiguous
    state = state.replace(h=0.3 * torch.randn(N, B).t(), **fields)
    assert not state.F.is_contiguous() and not state.h.is_contiguous()
    fused, ref = scan(cell, x, state, backend="fused"), scan(cell, x, state, backend="reference")
    torch.testing.assert_close(fused.y, ref.y, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.state.F, ref.state.F, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_on_reference_and_fused_names_the_dtype(dtype):
    cell32 = _cell()
    cell = _cell().to(dtype)
    x = torch.randn(T, B, I)
    result = scan(cell, x.to(dtype))
    assert result.backend == "reference"
    assert result.y.dtype == dtype
    torch.testing.assert_close(result.y.float(), scan(cell32, x).y, atol=0.05, rtol=0)
    with pytest.raises(ValueError, match=rf"backend 'fused' does not support .* in {dtype}"):
        scan(cell, x.to(dtype), backend="fused")


def test_float64_runs_on_fused_and_matches_reference():
    cell = _cell("retroactive", torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    fused = scan(cell, x)
    assert fused.backend == "fused"
    torch.testing.assert_close(fused.y, scan(cell, x, backend="reference").y, atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------ exact-class dispatch
class FrozenNeuromodulated(Neuromodulated):
    """A user's variant of a built-in rule: no plasticity at all (the fast weights never move)."""

    def update(self, state, pre, post, modulation):
        return state


class ScaledNeuromodulated(Neuromodulated):
    """A user's variant that halves every update (a different equation with the same parameters)."""

    def update(self, state, pre, post, modulation):
        half = self._modulation(modulation, pre.shape[0]) * 0.5
        return super().update(state, pre, post, half.reshape(pre.shape[0]))


@pytest.mark.parametrize("rule_class", [FrozenNeuromodulated, ScaledNeuromodulated])
def test_subclass_of_a_builtin_rule_runs_its_own_equation(rule_class):
    torch.manual_seed(0)
    cell = PlasticRNNCell(I, N, rule=rule_class(N, N))
    with torch.no_grad():  # large weights: a real difference between the parent's equation and this one
        cell.w.mul_(3.0)
        cell.input.weight.mul_(3.0)
    x = torch.randn(40, B, I)
    result = scan(cell, x)
    assert result.backend == "reference"  # the fused engine knows only the exact built-in classes
    reference = scan(cell, x, backend="reference")
    torch.testing.assert_close(result.state.F, reference.state.F)
    result.y.sum().backward()
    grads = {n: p.grad for n, p in cell.named_parameters()}
    cell.zero_grad(set_to_none=True)
    reference.y.sum().backward()
    for name, p in cell.named_parameters():  # the frozen rule never uses the modulator: no gradient there
        assert (grads[name] is None) == (p.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, msg=name)
    if rule_class is FrozenNeuromodulated:
        assert float(result.state.F.abs().max()) == 0.0
    with pytest.raises(ValueError, match=rf"does not support PlasticRNNCell with rule {rule_class.__name__}"):
        scan(cell, x, backend="fused")


def test_subclass_of_the_cell_runs_on_reference():
    class MyCell(PlasticRNNCell):
        def step(self, xp, state, modulation=None):
            return super().step(2 * xp, state, modulation)

    torch.manual_seed(0)
    cell = MyCell(I, N, rule="neuromod")
    x = torch.randn(T, B, I)
    result = scan(cell, x)
    assert result.backend == "reference"
    torch.testing.assert_close(result.y, scan(cell, x, backend="reference").y)


# ------------------------------------------------------------------------------ kernel cache
CC = build.compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler")


def _compile_probe(out: Path, ident: int, marker: Path | None = None) -> None:
    """A real shared library exporting ``probe_id() == ident``; with ``marker``, loading it creates that
    file (a planted library runs code the moment it is loaded)."""
    src = out.with_suffix(".c")
    ctor = ""
    if marker is not None:
        ctor = (
            "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) "
            f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n'
        )
    src.write_text(f"{ctor}int probe_id(void) {{ return {ident}; }}\n")
    subprocess.run([CC, "-shared", "-fPIC", str(src), "-o", str(out)], check=True, capture_output=True)
    src.unlink()


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """``build`` as in a new process whose cache is ``tmp_path/cache``. Compiling the real kernel takes
    seconds, so "build" here compiles a small library that says it was built (id 1): what is under test
    is which folder and which file are trusted, not the kernel."""
    monkeypatch.setenv("NEUROMOD_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NEUROMOD_RL_FUSED_KERNEL", raising=False)
    monkeypatch.setattr(build, "_libs", None)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setattr(build, "_private_dir", None)
    monkeypatch.setattr(build, "_compile", lambda flags, out: _compile_probe(out, 1))
    return tmp_path / "cache"


def _plant(cache: Path, marker: Path) -> list[Path]:
    key = build.source_key()
    planted = [cache / f"fused_kernel_{real}_{key}.so" for real, _ in build.PRECISIONS.values()]
    for path in planted:
        _compile_probe(path, 666, marker)
    return planted


def _load_recording_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        libs = build.load()
    return libs, [str(w.message) for w in caught]


def _loaded(libs) -> dict[torch.dtype, tuple[int, str]]:
    out = {}
    for dtype, lib in libs.items():
        lib.probe_id.restype = ctypes.c_int
        out[dtype] = (lib.probe_id(), lib._name)
    return out


@needs_cc
def test_private_cache_is_created_0700_and_used(fresh_build):
    libs, caught = _load_recording_warnings()
    assert not caught
    assert fresh_build.stat().st_mode & 0o777 == 0o700
    for ident, name in _loaded(libs).values():
        assert ident == 1 and Path(name).parent == fresh_build
    # a second process finds the libraries in the cache and does not rebuild them
    assert build.unsafe_reason(Path(name)) is None


@needs_cc
def test_world_writable_cache_folder_is_refused_and_planted_code_never_runs(fresh_build, tmp_path):
    fresh_build.mkdir()
    os.chmod(fresh_build, 0o777)  # e.g. a cache under a shared temp folder
    marker = tmp_path / "PLANTED_CODE_RAN"
    planted = _plant(fresh_build, marker)
    libs, caught = _load_recording_warnings()
    assert not marker.exists(), "a library planted in a world-writable cache was loaded"
    assert any("writable by other users" in m and "private folder" in m for m in caught), caught
    for ident, name in _loaded(libs).values():
        assert ident == 1
        assert Path(name).parent != fresh_build
        assert Path(name).parent.stat().st_mode & 0o777 == 0o700  # mkdtemp: private
    assert all(p.exists() for p in planted)  # refused, left alone (not ours to delete)


@needs_cc
@pytest.mark.parametrize("tamper", ["group-writable", "symlink"])
def test_tampered_library_in_a_private_cache_is_refused(fresh_build, tmp_path, tamper):
    fresh_build.mkdir(mode=0o700)
    marker = tmp_path / "PLANTED_CODE_RAN"
    planted = _plant(fresh_build, marker)
    for path in planted:
        if tamper == "group-writable":
            os.chmod(path, 0o775)
        else:
            elsewhere = tmp_path / path.name
            path.rename(elsewhere)
            path.symlink_to(elsewhere)
    libs, caught = _load_recording_warnings()
    assert not marker.exists()
    expected = "writable by other users" if tamper == "group-writable" else "is a symbolic link"
    assert any(expected in m for m in caught), caught
    for ident, name in _loaded(libs).values():
        assert ident == 1 and Path(name).parent != fresh_build
