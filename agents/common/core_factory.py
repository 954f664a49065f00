"""Build the plastic core of a policy from its ``policy_kwargs``, with errors that list the choices.

The policy's plastic keys are gathered in one frozen :class:`CoreConfig`, so the policy, the
algorithms (save/load checks) and the RecurrentPPO adapter read one validated description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from neuromod_rl.plasticity import (
    PlasticCell,
    PlasticLSTMCell,
    PlasticMLPCell,
    PlasticRNNCell,
    available_rules,
)
from neuromod_rl.plasticity.rules import get_rule_class

CORES: dict[str, type[PlasticCell]] = {"rnn": PlasticRNNCell, "lstm": PlasticLSTMCell, "mlp": PlasticMLPCell}
MODULATIONS = ("auto", "scalar", "fanout", None)
#: ``hidden``: Backpropamine's learned head ``M(t) = tanh(w·h_t)``; ``reward``: the previous reward,
#: read from the observation; ``td_error``: ``r_{t-1} + gamma V(s_t) - V(s_{t-1})`` from the policy's
#: own value head (see :class:`~neuromod_rl.agents.on_policy.policies.PlasticActorCriticPolicy`).
MODULATION_SOURCES = ("hidden", "reward", "td_error")
ALPHA_SHAPES = ("full", "neuron", "scalar", "none")
#: the plastic ``policy_kwargs`` (SB3's own keys are validated by SB3).
PLASTIC_KEYS = (
    "rule",
    "core",
    "hidden_size",
    "alpha_shape",
    "modulation",
    "modulation_source",
    "shared_core",
    "rule_kwargs",
    "core_layers",
    "reward_index",
    "td_gamma",
)


@dataclass(frozen=True)
class CoreConfig:
    """The plastic part of a policy's configuration (validated on construction).

    Args:
        rule: a registered plasticity rule (``neuromod_rl.plasticity.available_rules()``).
        core: ``"rnn"`` (:class:`PlasticRNNCell`), ``"lstm"`` (:class:`PlasticLSTMCell`) or ``"mlp"``
            (:class:`PlasticMLPCell`, ``core_layers`` plastic feed-forward layers).
        hidden_size: neurons of the core (N; the fast weights are N x N per sequence).
        alpha_shape: ``"full"`` | ``"neuron"`` | ``"scalar"`` | ``"none"`` (the plastic gain's sharing).
        modulation: ``"scalar"`` | ``"fanout"`` | ``None`` | ``"auto"`` (scalar for rules that need it,
            none otherwise).
        modulation_source: ``"hidden"`` | ``"reward"`` | ``"td_error"``.
        shared_core: actor and critic share one core (Backpropamine); else each has its own.
        rule_kwargs: extra rule arguments (``clip``, ``eta``, ``soft_clip``, ...).
        core_layers: layers of the ``"mlp"`` core.
        reward_index: where the previous reward sits in a Box observation (``-2`` is the layout of
            ``neuromod_rl.envs.PrevActionReward``: ``[obs, prev action, prev reward, prev done]``), or
            the key of a Dict observation holding it (its last entry is read).
        td_gamma: discount of the ``td_error`` modulation.
    """

    rule: str = "neuromod"
    core: str = "lstm"
    hidden_size: int = 64
    alpha_shape: str = "full"
    modulation: str | None = "auto"
    modulation_source: str = "hidden"
    shared_core: bool = True
    rule_kwargs: dict[str, Any] = field(default_factory=dict)
    core_layers: int = 2
    reward_index: int | str = -2
    td_gamma: float = 0.99

    def __post_init__(self) -> None:
        rules = available_rules()
        if self.rule not in rules:
            raise ValueError(f"policy_kwargs rule={self.rule!r} is not a registered rule; valid choices: {rules}")
        if self.core not in CORES:
            raise ValueError(f"policy_kwargs core={self.core!r} is not valid; valid choices: {sorted(CORES)}")
        # numpy integers are integers (hidden_size=np.int64(8) from a sweep); bools and floats are not
        for key in ("hidden_size", "core_layers"):
            value = getattr(self, key)
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"policy_kwargs {key} must be a positive int, got {value!r}")
            object.__setattr__(self, key, int(value))
        if not isinstance(self.shared_core, bool | np.bool_):
            raise ValueError(f"policy_kwargs shared_core must be True or False, got {self.shared_core!r}")
        object.__setattr__(self, "shared_core", bool(self.shared_core))
        if isinstance(self.reward_index, np.integer):
            object.__setattr__(self, "reward_index", int(self.reward_index))
        if self.alpha_shape not in ALPHA_SHAPES:
            raise ValueError(
                f"policy_kwargs alpha_shape={self.alpha_shape!r} is not valid; valid choices: {ALPHA_SHAPES}"
            )
        if self.modulation not in MODULATIONS:
            raise ValueError(f"policy_kwargs modulation={self.modulation!r} is not valid; valid choices: {MODULATIONS}")
        if self.modulation_source not in MODULATION_SOURCES:
            raise ValueError(
                f"policy_kwargs modulation_source={self.modulation_source!r} is not valid; "
                f"valid choices: {MODULATION_SOURCES}"
            )
        if not isinstance(self.rule_kwargs, dict):
            raise ValueError(f"policy_kwargs rule_kwargs must be a dict, got {type(self.rule_kwargs).__name__}")
        if self.modulation_source != "hidden" and self.cell_modulation is None:
            raise ValueError(
                f"modulation_source={self.modulation_source!r} needs a modulated rule: rule={self.rule!r} is "
                "unmodulated. Use rule='neuromod' or 'retroactive', or modulation_source='hidden'"
            )
        if isinstance(self.td_gamma, bool) or not isinstance(self.td_gamma, int | float | np.number):
            raise ValueError(f"policy_kwargs td_gamma must be a number in [0, 1], got {self.td_gamma!r}")
        if not 0.0 <= float(self.td_gamma) <= 1.0:
            raise ValueError(f"policy_kwargs td_gamma must be in [0, 1], got {self.td_gamma}")

    @property
    def cell_modulation(self) -> str | None:
        """The cell's ``modulation`` argument once ``"auto"`` is resolved against the rule."""
        if self.modulation != "auto":
            return self.modulation
        return "scalar" if get_rule_class(self.rule).modulation == "required" else None

    @property
    def external(self) -> bool:
        """True when the modulation comes from outside the core (reward or TD error)."""
        return self.modulation_source != "hidden"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_policy_kwargs(kwargs: dict[str, Any], sb3_keys: set[str]) -> tuple[CoreConfig, dict[str, Any]]:
    """Separate the plastic keys from SB3's; any other key is an error listing both sets."""
    unknown = set(kwargs) - set(PLASTIC_KEYS) - sb3_keys
    if unknown:
        raise ValueError(
            f"unknown policy_kwargs {sorted(unknown)}; plastic keys: {list(PLASTIC_KEYS)}; "
            f"Stable-Baselines3 keys: {sorted(sb3_keys)}"
        )
    plastic = {k: kwargs[k] for k in PLASTIC_KEYS if k in kwargs}
    return CoreConfig(**plastic), {k: v for k, v in kwargs.items() if k not in PLASTIC_KEYS}


def build_core(config: CoreConfig, input_size: int) -> PlasticCell:
    """The plastic cell described by ``config`` reading ``input_size`` features per step."""
    source = "external" if config.external else "hidden"
    kwargs: dict[str, Any] = dict(
        rule=config.rule, modulation=config.cell_modulation, modulation_source=source, **config.rule_kwargs
    )
    if config.core == "mlp":
        # PlasticLinear takes alpha_shape as a rule argument; ABCD-style layers keep it "none" by default.
        return PlasticMLPCell(
            input_size,
            config.hidden_size,
            n_layers=config.core_layers,
            alpha_shape=config.alpha_shape,
            **kwargs,
        )
    return CORES[config.core](input_size, config.hidden_size, alpha_shape=config.alpha_shape, **kwargs)
