"""One policy step as a pure tensor function, the form an ONNX graph can hold.

``PolicyStep(policy)(obs, state, episode_start) -> (action, value, next_state)``:

* ``obs`` -- ``[B, *obs_shape]`` (a ``Box`` observation, as the policy receives it);
* ``state`` -- ``[B, D]`` float32: the flat plastic state, exactly what ``predict`` returns and takes
  (``policy.state_dim`` floats per env; the layout is :func:`state_layout`);
* ``episode_start`` -- ``[B]`` bool: rows where it is True are reset to the initial state first;
* ``action`` -- the deterministic action, what ``predict(..., deterministic=True)`` returns: the
  most likely action for ``Discrete`` (int64 ``[B]``), the Gaussian mean clipped to the bounds for
  ``Box`` (float32 ``[B, *action_shape]``);
* ``value`` -- ``[B, 1]``, the critic's value of ``obs``;
* ``next_state`` -- ``[B, D]``, to pass back at the next step.

The step itself is :meth:`PlasticActorCriticPolicy.advance`, the code ``predict`` and the rollouts
run; only the reset (a blend instead of a branch) and the mode of the distribution are written here.
"""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from torch import nn

from neuromod_rl.agents.on_policy.policies import PlasticActorCriticPolicy


def state_layout(policy: PlasticActorCriticPolicy) -> list[dict]:
    """The fields of the flat state in order: name, shape per env, first column, width."""
    out, offset = [], 0
    for name, value in policy.initial_state(1).items():
        width = value[0].numel()
        out.append({"field": name, "shape": list(value.shape[1:]), "offset": offset, "size": width})
        offset += width
    return out


def check_exportable(policy: PlasticActorCriticPolicy) -> None:
    """``ValueError`` naming what an ONNX step cannot hold: Dict observations, actions other than
    ``Discrete``/``Box``, a rule that draws a random state at every episode start."""
    if not isinstance(policy, PlasticActorCriticPolicy):
        raise ValueError(f"ONNX export takes a plastic policy (PlasticPPO, PlasticA2C), got {type(policy).__name__}")
    if not isinstance(policy.observation_space, spaces.Box):
        raise ValueError(f"ONNX export supports Box observations; this policy observes {policy.observation_space}")
    if not isinstance(policy.action_space, spaces.Discrete | spaces.Box):
        raise ValueError(f"ONNX export supports Discrete and Box actions; this policy acts in {policy.action_space}")
    if policy.squash_output:
        raise ValueError("ONNX export supports Gaussian actions without tanh squashing; build the policy with "
                         "squash_output=False (the default)")
    if not all(th.equal(a, b) for a, b in zip(policy.initial_state(1).values(), policy.initial_state(1).values())):
        raise ValueError(
            f"rule {policy.core_config.rule!r} draws a random state at every episode start, which a fixed graph "
            "cannot reproduce; export a rule with a fixed initial state (neuromod, retroactive, hebbian, ...)"
        )


class PolicyStep(nn.Module):
    """``(obs, state, episode_start) -> (action, value, next_state)`` for ``policy`` (see the module doc)."""

    def __init__(self, policy: PlasticActorCriticPolicy):
        super().__init__()
        check_exportable(policy)
        self.policy = policy
        self.template = policy.initial_state(1)
        self.register_buffer("initial", self.template.flat().detach().clone())
        space = policy.action_space
        if isinstance(space, spaces.Box):
            self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    def forward(self, obs: th.Tensor, state: th.Tensor, episode_start: th.Tensor):
        start = episode_start.reshape(-1, 1).to(state.dtype)
        state = state * (1 - start) + self.initial * start
        latent, values, next_state, _, _ = self.policy.advance(
            obs, self.template.unflat(state), episode_start.reshape(-1).bool()
        )
        mode = self.policy.action_net(latent)
        if isinstance(self.policy.action_space, spaces.Discrete):
            action = th.argmax(mode, dim=-1)
        else:  # as predict: the Gaussian mean, clipped to the bounds
            action = th.minimum(th.maximum(mode.reshape(-1, *self.low.shape), self.low), self.high)
        return action, values, next_state.flat()
