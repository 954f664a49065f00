"""Tensor helpers shared by the batched tasks: task checking and exact batched sampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def check_task_keys(tasks: Any, keys: Sequence[str], env_name: str) -> Mapping[str, Any]:
    """``tasks`` if it is a mapping with exactly ``keys``, else ``ValueError`` naming the valid keys."""
    if not isinstance(tasks, Mapping) or sorted(tasks) != sorted(keys):
        got = sorted(tasks) if isinstance(tasks, Mapping) else type(tasks).__name__
        raise ValueError(f"tasks for batched {env_name} must be a dict with keys {list(keys)}; got {got}")
    return tasks


def as_lane_tensor(
    tasks: Mapping[str, Any],
    key: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    env_name: str,
    low: float | None = None,
    high: float | None = None,
    signs: bool = False,
) -> Tensor:
    """``tasks[key]`` as a tensor of ``shape`` and ``dtype`` on ``device``, checked.

    Args:
        tasks: the task dict given to ``set_tasks``.
        key: the entry to read.
        shape: the expected shape, lanes first.
        dtype: the dtype to cast to (an integer dtype refuses non-integral values).
        device: where the tensor goes.
        env_name: the task's name, for the error messages.
        low, high: inclusive bounds of every entry (``None``: unbounded).
        signs: every entry must be -1 or +1.
    """
    try:
        value = torch.as_tensor(tasks[key], device=device).to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"tasks[{key!r}] for batched {env_name} is not numeric") from None
    if tuple(value.shape) != shape:
        raise ValueError(f"tasks[{key!r}] for batched {env_name} has shape {tuple(value.shape)}; expected {shape}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"tasks[{key!r}] for batched {env_name} holds NaN/inf")
    if not dtype.is_floating_point and not bool((value == value.round()).all()):
        raise ValueError(f"tasks[{key!r}] for batched {env_name} must hold integers")
    if (low is not None and bool((value < low).any())) or (high is not None and bool((value > high).any())):
        raise ValueError(f"tasks[{key!r}] for batched {env_name} is out of range; valid range is [{low}, {high}]")
    if signs and not bool((value.abs() == 1.0).all()):
        raise ValueError(f"tasks[{key!r}] for batched {env_name} must hold only -1/+1 entries")
    return value.to(dtype)


def distinct_sign_vectors(n: int, k: int, bits: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``n`` draws of ``k`` distinct ±1 vectors of ``bits`` entries, shape (n, k, bits) float32.

    Same law as drawing iid uniform ±1 vectors until all ``k`` differ (what the Gymnasium tasks do), with
    no rejection loop (so no host synchronisation): Floyd's algorithm picks a uniform ``k``-subset of the
    ``2**bits`` codes in ``k`` vectorised rounds, a random permutation orders it. For ``bits > 62`` the
    codes do not fit an int64: the first 62 bits are drawn that way and the rest iid, which differs from
    the rejection law by a total variation below ``k**2 / 2**63``.
    """
    code_bits = min(bits, 62)
    space = 1 << code_bits
    if space < k:
        raise ValueError(f"bits={bits} is too few for {k} distinct vectors; need 2**bits >= {k}")
    chosen = torch.empty(n, k, dtype=torch.int64, device=device)
    for i, j in enumerate(range(space - k, space)):
        t = torch.randint(0, j + 1, (n,), generator=generator, device=device)
        taken = (chosen[:, :i] == t.unsqueeze(1)).any(dim=1)
        chosen[:, i] = torch.where(taken, j, t)
    order = torch.argsort(torch.rand(n, k, generator=generator, device=device), dim=1)
    chosen = chosen.gather(1, order)
    shifts = torch.arange(code_bits, device=device)
    low = ((chosen.unsqueeze(2) >> shifts) & 1).float() * 2.0 - 1.0
    if bits == code_bits:
        return low
    rest = torch.randint(0, 2, (n, k, bits - code_bits), generator=generator, device=device).float() * 2.0 - 1.0
    return torch.cat([low, rest], dim=2)
