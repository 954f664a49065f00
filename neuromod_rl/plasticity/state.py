"""One batched, batch-first container for the recurrent state of every plastic cell.

A cell's state is a handful of named tensors (hidden ``h``, fast weights ``F``, eligibility ``E``,
an LSTM cell ``c``, rule extras), all with the batch on dim 0. Keeping them in one immutable
container lets the sequence engine, the SB3 rollout buffer and the checkpoint code treat every
rule and cell alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor


class PlasticState(Mapping[str, Tensor]):
    """Immutable mapping ``name -> Tensor[B, ...]`` with attribute access (``state.h``, ``state.F``).

    Every method returns a new state; the tensors themselves are shared, never copied, unless
    the method says so.

    Example:
        >>> s = PlasticState(h=torch.zeros(4, 8), F=torch.zeros(4, 8, 8))
        >>> s = s.reset(torch.tensor([True, False, False, True]), s)
        >>> s.F.shape
        torch.Size([4, 8, 8])
    """

    __slots__ = ("_tensors",)

    def __init__(self, **tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("PlasticState needs at least one tensor, e.g. PlasticState(h=..., F=...)")
        batch = None
        for name, value in tensors.items():
            if not isinstance(value, Tensor):
                raise TypeError(f"PlasticState field {name!r} must be a torch.Tensor, got {type(value).__name__}")
            if value.dim() == 0:
                raise ValueError(f"PlasticState field {name!r} must be batch-first with dim >= 1, got a scalar")
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise ValueError(
                    f"PlasticState field {name!r} has batch size {value.shape[0]}, the others have {batch}; "
                    "every field is batch-first with the same batch size"
                )
        object.__setattr__(self, "_tensors", dict(tensors))

    # Mapping protocol ------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Tensor:
        return self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __getattr__(self, name: str) -> Tensor:
        if name.startswith("__") or name == "_tensors":  # during unpickling/copy, before __init__ ran
            raise AttributeError(name)
        try:
            return self._tensors[name]
        except KeyError:
            raise AttributeError(f"PlasticState has no field {name!r}; fields: {list(self._tensors)}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PlasticState is immutable: use state.replace(name=tensor)")

    def __reduce__(self):
        return (_rebuild, (dict(self._tensors),))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._tensors.items())
        return f"PlasticState({fields})"

    # Properties --------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return next(iter(self._tensors.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self._tensors.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self._tensors.values())).dtype

    # Transformations -----------------------------------------------------------------------------
    def replace(self, **tensors: Tensor) -> PlasticState:
        """A new state with some fields replaced (or added)."""
        return PlasticState(**{**self._tensors, **tensors})

    def reset(self, mask: Tensor, initial: Mapping[str, Tensor]) -> PlasticState:
        """Rows where ``mask`` is True take their value from ``initial`` (an episode start).

        Args:
            mask: bool or 0/1 tensor of shape ``[B]``.
            initial: a state (or mapping) with the same fields; rows of batch size 1 broadcast.
        """
        if mask.dim() != 1 or mask.shape[0] != self.batch_size:
            raise ValueError(
                f"reset mask must have shape [B]=[{self.batch_size}], got {tuple(mask.shape)}"
            )
        keep = ~mask.to(device=self.device, dtype=torch.bool)
        out = {}
        for name, value in self._tensors.items():
            if name not in initial:
                raise KeyError(f"reset: the initial state has no field {name!r}")
            k = keep.view(-1, *([1] * (value.dim() - 1)))
            out[name] = torch.where(k, value, initial[name].to(value.dtype))
        return PlasticState(**out)

    def detach(self) -> PlasticState:
        """Cut the autograd graph (truncated BPTT boundary)."""
        return PlasticState(**{k: v.detach() for k, v in self._tensors.items()})

    def clone(self) -> PlasticState:
        return PlasticState(**{k: v.clone() for k, v in self._tensors.items()})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PlasticState:
        return PlasticState(**{k: v.to(device=device, dtype=dtype) for k, v in self._tensors.items()})

    def index(self, idx: Tensor | slice | list[int]) -> PlasticState:
        """Select batch rows (minibatches of sequences)."""
        return PlasticState(**{k: v[idx] for k, v in self._tensors.items()})

    @staticmethod
    def cat(states: list[PlasticState]) -> PlasticState:
        """Concatenate states along the batch dimension."""
        if not states:
            raise ValueError("PlasticState.cat needs at least one state")
        keys = list(states[0])
        return PlasticState(**{k: torch.cat([s[k] for s in states], dim=0) for k in keys})

    def flat(self) -> Tensor:
        """All fields flattened into one ``[B, D]`` tensor (compact storage, e.g. a rollout buffer)."""
        return torch.cat([v.reshape(self.batch_size, -1) for v in self._tensors.values()], dim=1)

    def unflat(self, flat: Tensor) -> PlasticState:
        """Inverse of :meth:`flat`, using this state's field shapes as the template."""
        out, i = {}, 0
        for k, v in self._tensors.items():
            n = v[0].numel()
            out[k] = flat[:, i : i + n].reshape(flat.shape[0], *v.shape[1:])
            i += n
        if i != flat.shape[1]:
            raise ValueError(f"unflat: expected {i} features per row, got {flat.shape[1]}")
        return PlasticState(**out)

    def check_finite(self, where: str) -> None:
        """Raise a ``FloatingPointError`` naming the field and ``where`` if any entry is NaN/inf."""
        for name, value in self._tensors.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"non-finite values (NaN/inf) in plastic state field {name!r} at {where}. "
                    "Lower the learning rate or the plasticity rate eta, enable clipping "
                    "(rule='clipped'/'neuromod' clip the trace), or check the observations for NaN/inf."
                )


def _rebuild(tensors: dict[str, Tensor]) -> PlasticState:
    return PlasticState(**tensors)
