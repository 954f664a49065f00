"""The rule interface and the registry that finds rules by name.

A rule is an ``nn.Module`` that owns the meta-parameters of one plasticity equation (``alpha``,
``eta``, ABCD coefficients, ...) and answers two questions:

* ``init_traces(batch)`` -- the trace tensors it keeps per sequence (``F``, maybe ``E``);
* ``update(state, pre, post, modulation)`` -- one pure step of its equation.

Fast weights are laid out ``F[b, i, j]`` with ``i`` presynaptic and ``j`` postsynaptic, so a
plastic layer computes ``y = x @ (w + alpha ⊙ F)``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from neuromod_rl.plasticity.state import PlasticState

AlphaShape = Literal["full", "neuron", "scalar", "none"]
ALPHA_SHAPES: tuple[str, ...] = ("full", "neuron", "scalar", "none")


class PlasticityRule(nn.Module):
    """Base class of every plasticity rule.

    Args:
        n_pre: presynaptic size (rows of ``F``).
        n_post: postsynaptic size (columns of ``F``).
        alpha_shape: how the plastic gain ``alpha`` is shared: ``"full"`` (one per connection,
            ``[n_pre, n_post]``, Miconi 2018), ``"neuron"`` (one per postsynaptic neuron, the stable
            choice for large N, Miconi 2019), ``"scalar"``, or ``"none"`` (``alpha = 1``, no parameter:
            the trace *is* the weight, as in Najarro & Risi 2020).
        alpha_init: scale of the uniform ``alpha`` initialisation ``alpha_init * U[0, 1)``.
    """

    #: registry name, set by :func:`register_rule`.
    name: ClassVar[str] = ""
    #: ``"required"``: the rule needs ``modulation``; ``"optional"``: it uses one when given;
    #: ``"never"``: it ignores none and must not receive one.
    modulation: ClassVar[Literal["required", "optional", "never"]] = "never"
    #: names of the trace tensors this rule keeps in the state.
    trace_names: ClassVar[tuple[str, ...]] = ("F",)
    #: ``|F|`` bound enforced by the rule (``None``: unbounded); used for clip diagnostics.
    clip: float | None = None

    def __init__(self, n_pre: int, n_post: int, alpha_shape: AlphaShape = "full", alpha_init: float = 0.01):
        super().__init__()
        if n_pre <= 0 or n_post <= 0:
            raise ValueError(f"{type(self).__name__}: n_pre and n_post must be positive, got {n_pre}, {n_post}")
        if alpha_shape not in ALPHA_SHAPES:
            raise ValueError(f"alpha_shape={alpha_shape!r} is not one of {ALPHA_SHAPES}")
        self.n_pre, self.n_post, self.alpha_shape = n_pre, n_post, alpha_shape
        shape = {"full": (n_pre, n_post), "neuron": (1, n_post), "scalar": (1, 1)}.get(alpha_shape)
        self.alpha = None if shape is None else nn.Parameter(alpha_init * torch.rand(shape))

    # -- what the cells call ---------------------------------------------------------------------
    def init_traces(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        """Trace tensors at an episode start (zeros unless the rule says otherwise)."""
        dtype = dtype or torch.get_default_dtype()
        return {k: torch.zeros(batch, self.n_pre, self.n_post, device=device, dtype=dtype) for k in self.trace_names}

    def weight_term(self, state: PlasticState) -> Tensor:
        """The plastic part of the effective weight, ``alpha ⊙ F``, shape ``[B, n_pre, n_post]``."""
        return state.F if self.alpha is None else self.alpha * state.F

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        """One step of the rule: a new state with the traces updated. Pure (never in place)."""
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------------
    def _modulation(self, modulation: Tensor | None, batch: int) -> Tensor | None:
        """Check ``modulation`` and shape it to broadcast over ``[B, n_pre, n_post]``."""
        if modulation is None:
            if self.modulation == "required":
                raise ValueError(
                    f"rule {self.name!r} is neuromodulated and needs a modulation signal of shape [B] "
                    f"or [B, {self.n_post}]; give the cell modulation='scalar'|'fanout' or pass one to scan"
                )
            return None
        if self.modulation == "never":
            raise ValueError(
                f"rule {self.name!r} is not neuromodulated and takes no modulation; use rule='neuromod' "
                "or 'retroactive' for a modulated trace, or drop the modulation"
            )
        if modulation.shape == (batch,) or modulation.shape == (batch, 1):
            return modulation.reshape(batch, 1, 1)
        if modulation.shape == (batch, self.n_post):
            return modulation.unsqueeze(1)
        raise ValueError(
            f"rule {self.name!r}: modulation must have shape [B]=[{batch}] (scalar) or "
            f"[B, n_post]=[{batch}, {self.n_post}] (fan-out), got {tuple(modulation.shape)}"
        )

    def extra_repr(self) -> str:
        return f"n_pre={self.n_pre}, n_post={self.n_post}, alpha_shape={self.alpha_shape!r}"


def outer(pre: Tensor, post: Tensor) -> Tensor:
    """Batched outer product ``outer(pre, post)[b, i, j] = pre[b, i] * post[b, j]``."""
    return pre.unsqueeze(2) * post.unsqueeze(1)


def clip_trace(F: Tensor, bound: float, soft_delta: Tensor | None = None) -> Tensor:
    """Hard clip to ``[-bound, bound]``, or, given ``soft_delta = D``, Backpropamine's soft clip

    ``F + relu(D) (bound - F) + min(D, 0) (F + bound)`` (Miconi et al. 2019, appendix), which
    saturates smoothly instead of cutting the gradient.
    """
    if soft_delta is None:
        return F.clamp(-bound, bound)
    return F + torch.relu(soft_delta) * (bound - F) + torch.clamp(soft_delta, max=0.0) * (F + bound)


def check_clip(clip: float) -> float:
    """Validate a trace bound: a clipped rule needs a positive ``clip`` (pass ``None`` around it to
    allow an unclipped rule)."""
    if not clip > 0:
        raise ValueError(f"clip must be > 0 (the |F| bound), got {clip}")
    return float(clip)


def scalar_param(value: float) -> nn.Parameter:
    """A learned scalar rate (the papers learn eta directly, unconstrained)."""
    if not math.isfinite(value):
        raise ValueError(f"initial rate must be finite, got {value}")
    return nn.Parameter(torch.tensor(float(value)))


# -- registry ------------------------------------------------------------------------------------
RULES: dict[str, type[PlasticityRule]] = {}


def register_rule(name: str):
    """Class decorator: make a rule available by ``name`` to cells, policies and configs."""

    def deco(cls: type[PlasticityRule]) -> type[PlasticityRule]:
        if name in RULES and RULES[name] is not cls:
            raise ValueError(f"a plasticity rule named {name!r} is already registered ({RULES[name].__name__})")
        cls.name = name
        RULES[name] = cls
        return cls

    return deco


def available_rules() -> list[str]:
    """Names of every registered rule."""
    _load_builtin_rules()
    return sorted(RULES)


def get_rule_class(name: str) -> type[PlasticityRule]:
    _load_builtin_rules()
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown plasticity rule {name!r}; valid choices: {sorted(RULES)}") from None


def make_rule(name: str | PlasticityRule, n_pre: int, n_post: int, **kwargs) -> PlasticityRule:
    """Build a rule by registry name (or pass through an already built rule)."""
    if isinstance(name, PlasticityRule):
        if (name.n_pre, name.n_post) != (n_pre, n_post):
            raise ValueError(
                f"rule {name.name!r} was built for {name.n_pre}x{name.n_post} but this layer is {n_pre}x{n_post}"
            )
        return name
    cls = get_rule_class(name)
    try:
        return cls(n_pre, n_post, **kwargs)
    except TypeError as err:
        raise TypeError(f"rule {name!r} got an unexpected argument ({err}); see help({cls.__name__})") from None


def _load_builtin_rules() -> None:
    # Importing the package registers every built-in rule (one file each).
    import neuromod_rl.plasticity.rules  # noqa: F401
