"""Plastic actor-critic policies for Stable-Baselines3 (Backpropamine, Miconi et al., ICLR 2019).

Data flow of one step (``docs/architecture.md``): observation -> SB3 features extractor -> plastic core
(``h``, fast weights ``F``, eligibility ``E``) -> SB3 ``MlpExtractor`` heads -> action distribution
and value; the core's modulator ``M(t)`` gates this same step's trace update, e.g. for the default
``rule="neuromod"``: ``F <- clip(F + M(t) outer(h_{t-1}, h_t), -1, 1)`` (Miconi et al. 2019, eq. 4).

Two ways of running the same parameters:

* :meth:`PlasticActorCriticPolicy.step` -- one step for every env, under ``no_grad`` in rollouts
  and :meth:`predict` (``cell.step``: no sequence machinery on the hot path);
* :meth:`PlasticActorCriticPolicy.evaluate_actions` on a :class:`~neuromod_rl.agents.on_policy.buffers.SequenceBatch`
  -- whole training sequences ``[T, n_seq]`` through :func:`neuromod_rl.plasticity.scan` (the fused
  engine for every core), no per-step Python loop here.

``modulation_source`` (where ``M(t)`` comes from):

* ``"hidden"`` -- the core's learned head, ``M(t) = tanh(Linear(h_t))`` (Backpropamine);
* ``"reward"`` -- ``M(t) = r_{t-1}``, the previous reward, read from the observation at
  ``reward_index`` (wrap the env with ``neuromod_rl.envs.PrevActionReward``; default index ``-2`` is
  its layout). A pure function of the observation, so rollout, training and ``predict`` agree;
* ``"td_error"`` -- ``M(t) = r_{t-1} + td_gamma V(s_t) - V(s_{t-1})`` (0 at an episode start), with
  ``V`` the policy's own value head and ``r_{t-1}`` read as for ``"reward"``. ``V(s_t)`` is known
  before the trace update because the core's output never depends on this step's ``M(t)``: a step
  runs the cores once with ``M = 0`` to read ``V(s_t)``, then again with the TD error. The signal is a
  stop-gradient input; the rollout stores it per step (one float) and training replays it, so the
  sequences are trained on the exact modulation the actions were taken with.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, MlpExtractor, NatureCNN

from neuromod_rl.agents.common.core_factory import CoreConfig, build_core, split_policy_kwargs
from neuromod_rl.agents.common.finite import find_non_finite_source
from neuromod_rl.agents.on_policy.buffers import SequenceBatch
from neuromod_rl.agents.on_policy.recurrent_adapter import RecurrentPPOAdapterMixin
from neuromod_rl.plasticity import PlasticState, cell_step, scan

#: the heads after the core when ``net_arch`` is not given: two 64-unit layers for the actor and for the critic,
#: as RecurrentPPO's. On recall tasks they took the plastic agent from 0.11 to 0.41 at 600k steps against linear heads
#: (``neuromod-rl reproduce recall-ablation``); ``net_arch=[]`` gives Backpropamine's linear heads on ``h_t``.
DEFAULT_NET_ARCH: tuple[int, ...] = (64, 64)

_SB3_KEYS = set(inspect.signature(ActorCriticPolicy.__init__).parameters) - {
    "self",
    "observation_space",
    "action_space",
    "lr_schedule",
}
_NEEDS_STATE = (
    "{name} is recurrent: {method}(obs) needs its plastic state at every step. Train it with "
    "neuromod_rl.agents.PlasticPPO / PlasticA2C (or sb3_contrib.RecurrentPPO), not a feed-forward algorithm; "
    "to act, call predict(obs, state=..., episode_start=...) (state=None: the initial state), or for tensors "
    "policy.step(obs, state, episode_starts) with state=policy.initial_state(n_envs)"
)
_NOT_OFF_POLICY = (
    "{name} is an on-policy actor-critic policy: SB3's off-policy algorithms (SAC, TD3, DDPG) expect "
    "`{attr}` and cannot carry its plastic state through a replay buffer. For off-policy training "
    "of a plastic policy use neuromod_rl.agents.PlasticSAC / PlasticTD3; for on-policy training "
    "neuromod_rl.agents.PlasticPPO / PlasticA2C"
)


class StepOutput(NamedTuple):
    """One policy step for every env."""

    actions: th.Tensor
    values: th.Tensor  # [B, 1]
    log_prob: th.Tensor  # [B]
    state: PlasticState  # after this step
    modulation: th.Tensor | None  # M(t) as used by the core ([B] or [B, N]), for diagnostics
    stored_signal: th.Tensor | None  # the TD error to store in the buffer (td_error source), [B]


def _part(state: PlasticState, prefix: str) -> PlasticState:
    n = len(prefix) + 1
    return PlasticState(**{k[n:]: v for k, v in state.items() if k.startswith(prefix + ".")})


def _prefixed(state: PlasticState, prefix: str) -> dict[str, th.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def previous_reward(obs, reward_index: int | str) -> th.Tensor:
    """``r_{t-1}`` read from a batch of observations: entry ``reward_index`` of a flat Box observation,
    or the last entry of the Dict key ``reward_index`` (``modulation_source="reward"``)."""
    if isinstance(obs, dict):
        return obs[reward_index].reshape(obs[reward_index].shape[0], -1)[:, -1].float()
    return obs.reshape(obs.shape[0], -1)[:, reward_index].float()


def check_extractor(space: spaces.Space, extractor: type | None) -> None:
    """Refuse a features extractor that cannot read ``space``, naming the policy to use instead (as SB3
    does for ``MlpPolicy`` with a Dict space): a flattening or CNN extractor given a Dict observation
    would otherwise fail at the first step with ``'dict' object has no attribute 'flatten'``."""
    if not isinstance(extractor, type):
        return
    single = {FlattenExtractor: "MlpPlasticPolicy", NatureCNN: "CnnPlasticPolicy"}
    name = next((alias for cls, alias in single.items() if issubclass(extractor, cls)), None)
    if isinstance(space, spaces.Dict) and name is not None:
        raise ValueError(
            f"You must use `MultiInputPlasticPolicy` with a Dict observation space (keys {list(space.spaces)}), "
            f"not `{name}`, whose {extractor.__name__} reads a single array"
        )
    if issubclass(extractor, CombinedExtractor) and not isinstance(space, spaces.Dict):
        raise ValueError(
            f"MultiInputPlasticPolicy reads a Dict observation, but the observation space is {space}; use "
            "`MlpPlasticPolicy` (or `CnnPlasticPolicy` for images)"
        )


def _episode_starts(episode_start: Any, n_envs: int, name: str = "episode_start") -> th.Tensor:
    """``predict``'s ``episode_start`` (or ``reset_state``'s ``mask``) as ``[n_envs]`` booleans: one flag per env."""
    if isinstance(episode_start, th.Tensor):
        episode_start = episode_start.detach().cpu().numpy()
    starts = np.asarray(episode_start, dtype=bool)
    if starts.size != n_envs:
        predict = name == "episode_start"
        where, none = ("the observation batch", " (or None: no episode starts)") if predict else ("the state", "")
        raise ValueError(
            f"{name} has {starts.size} entries (shape {starts.shape}) but {where} has "
            f"{n_envs} envs: pass one flag per env, shape [{n_envs}]{none}"
        )
    return th.as_tensor(starts.reshape(n_envs))


_State = np.ndarray | th.Tensor | PlasticState


class StatefulPredictMixin:
    """``predict`` of every plastic policy, on- and off-policy: one ``step`` from the state passed in,
    with SB3's action post-processing. The policy provides ``initial_state(n)``, ``unpack_state(flat)``
    and ``step(obs, state, episode_starts, deterministic)`` returning actions (squashed ones in
    [-1, 1]) and the next state. It also checks, before SB3 builds anything, that the features
    extractor can read the observation space."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule, *args: Any,
                 **kwargs: Any):  # fmt: skip
        check_extractor(observation_space, kwargs.get("features_extractor_class"))
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)  # type: ignore[call-arg]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like RecurrentPPO's ``predict``: returns ``(actions, state)``; ``state`` is the flat plastic
        state ``[n_envs, D]`` (numpy; RecurrentPPO's is an ``(h, c)`` tuple) to pass back next step
        (``None`` or :meth:`initial_state`: the initial state); ``episode_start[n_envs]`` resets rows."""
        self.set_training_mode(False)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        first = obs_tensor[next(iter(obs_tensor))] if isinstance(obs_tensor, dict) else obs_tensor
        n_envs = first.shape[0]
        with th.no_grad():
            if state is None:
                current = self.initial_state(n_envs)
            elif isinstance(state, PlasticState):
                current = state.to(self.device)
            else:
                current = self.unpack_state(th.as_tensor(np.asarray(state), dtype=th.float32, device=self.device))
                if current.batch_size != n_envs:
                    raise ValueError(f"state has {current.batch_size} rows but the observation has {n_envs} envs")
            no_starts = episode_start is None
            starts = th.zeros(n_envs, dtype=th.bool) if no_starts else _episode_starts(episode_start, n_envs)
            out = self.step(obs_tensor, current, starts.to(self.device), deterministic)
        actions = out.actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            # Same as SB3's BasePolicy.predict: squashed actions are rescaled, Gaussian ones clipped.
            if self.squash_output:
                actions = self.unscale_action(actions)
            else:
                actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, out.state.flat().cpu().numpy()

    def reset_state(self, state: _State, mask: Any) -> _State:
        """``state`` with the rows where ``mask`` is True back at the episode-start state (per-env resets
        between ``predict`` calls; the same as passing ``episode_start=mask`` to the next call). ``state``
        is ``predict``'s flat ``[n_envs, D]`` array, a tensor of that shape, or a
        :class:`~neuromod_rl.plasticity.PlasticState` (:meth:`initial_state`); the result has its type."""
        if isinstance(state, PlasticState):
            current = state
        else:
            flat = th.as_tensor(np.asarray(state.detach().cpu() if isinstance(state, th.Tensor) else state))
            current = self.unpack_state(flat.to(dtype=th.float32, device=self.device))
        with th.no_grad():
            # initial_state(1), not a zeroed row: some rules (ABCD) draw their episode-start weights
            new = current.reset(_episode_starts(mask, current.batch_size, "mask"), self.initial_state(1))
        if isinstance(state, PlasticState):
            return new
        flat = new.flat()
        return flat.to(state.device) if isinstance(state, th.Tensor) else flat.cpu().numpy()


class PlasticActorCriticPolicy(StatefulPredictMixin, RecurrentPPOAdapterMixin, ActorCriticPolicy):
    """SB3 actor-critic policy with a plastic, neuromodulated recurrent core.

    ``policy_kwargs``: the plastic keys of :class:`~neuromod_rl.agents.common.core_factory.CoreConfig`
    (``rule="neuromod"``, ``core="rnn"|"lstm"|"mlp"``, ``hidden_size=64``, ``alpha_shape``,
    ``modulation="scalar"|"fanout"``, ``modulation_source="hidden"|"reward"|"td_error"``,
    ``shared_core=True``, ``rule_kwargs``, ``core_layers``, ``reward_index``, ``td_gamma``), plus
    SB3's usual ``ActorCriticPolicy`` keys. ``net_arch`` shapes the heads *after* the core (default
    :data:`DEFAULT_NET_ARCH`, ``[64, 64]`` for actor and critic each, as RecurrentPPO's; ``[]``: linear
    action and value heads on ``h_t``, as in Backpropamine).

    With ``shared_core=True`` actor and critic read one core and both losses train it (as in
    Backpropamine's shared actor-critic); with ``False`` the critic has its own core.

    The recurrent state is one :class:`~neuromod_rl.plasticity.PlasticState` whose fields are the
    cores' fields prefixed ``pi.`` / ``vf.`` (plus ``td.v`` for the TD-error source); outside the
    policy it travels flat, ``[n_envs, D]`` (:meth:`pack_state` / :meth:`unpack_state`).
    """

    _default_extractor: type = FlattenExtractor

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule, **kwargs: Any):
        if "n_critics" in kwargs:  # only SB3's off-policy algorithms pass it (DDPG always does)
            raise TypeError(_NOT_OFF_POLICY.format(name=type(self).__name__, attr="n_critics"))
        config, sb3_kwargs = split_policy_kwargs(kwargs, _SB3_KEYS)
        sb3_kwargs.setdefault("features_extractor_class", self._default_extractor)
        if sb3_kwargs.get("net_arch") is None:
            sb3_kwargs["net_arch"] = list(DEFAULT_NET_ARCH)
        if config.shared_core and not sb3_kwargs.get("share_features_extractor", True):
            raise ValueError("shared_core=True needs share_features_extractor=True; set shared_core=False instead")
        self.core_config: CoreConfig = config
        self._check_reward_source(observation_space, config)
        super().__init__(observation_space, action_space, lr_schedule, **sb3_kwargs)

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def _check_reward_source(space: spaces.Space, config: CoreConfig) -> None:
        if not config.external:
            return
        idx = config.reward_index
        if isinstance(space, spaces.Dict):
            if idx not in space.spaces:
                raise ValueError(
                    f"modulation_source={config.modulation_source!r} reads the previous reward from the Dict "
                    f"observation key reward_index={idx!r}, which is not one of {list(space.spaces)}"
                )
        elif isinstance(space, spaces.Box):
            size = int(np.prod(space.shape))
            if not isinstance(idx, int) or not -size <= idx < size:
                raise ValueError(
                    f"modulation_source={config.modulation_source!r} reads the previous reward at "
                    f"reward_index={idx!r} of a Box observation of size {size}; wrap the env with "
                    "neuromod_rl.envs.PrevActionReward (reward at index -2) or set reward_index"
                )
        else:
            raise ValueError(
                f"modulation_source={config.modulation_source!r} needs a Box or Dict observation holding the "
                f"previous reward, got {space}; use modulation_source='hidden'"
            )

    def _build_mlp_extractor(self) -> None:
        # Called by ActorCriticPolicy._build before the optimizer is made, so the cores get trained.
        cfg = self.core_config
        self.core = build_core(cfg, self.features_dim)
        self.critic_core = None if cfg.shared_core else build_core(cfg, self.features_dim)
        self.mlp_extractor = MlpExtractor(
            cfg.hidden_size, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device
        )
        self._template = self.initial_state(1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.core_config.as_dict())
        data.update(share_features_extractor=self.share_features_extractor)
        return data

    # -- state ---------------------------------------------------------------------------------------
    def initial_state(self, n_envs: int) -> PlasticState:
        """The state at an episode start for ``n_envs`` envs: a :class:`~neuromod_rl.plasticity.PlasticState`
        (fields ``pi.*``, plus ``vf.*`` with ``shared_core=False``, ``td.v`` for the TD-error source), each
        ``[n_envs, ...]``. ``.flat()`` gives :meth:`predict`'s layout, one ``[n_envs, D]`` array (RecurrentPPO's
        is an ``(h, c)`` tuple of ``[layers, n_envs, H]``); ``predict`` and :meth:`reset_state` take either."""
        device = next(self.core.parameters()).device
        fields = _prefixed(self.core.initial_state(n_envs, device=device), "pi")
        if self.critic_core is not None:
            fields.update(_prefixed(self.critic_core.initial_state(n_envs, device=device), "vf"))
        if self.core_config.modulation_source == "td_error":
            fields["td.v"] = th.zeros(n_envs, 1, device=device)
        return PlasticState(**fields)

    @property
    def state_dim(self) -> int:
        """Floats per env in the flat state (``pack_state``)."""
        return self._template.flat().shape[1]

    def pack_state(self, state: PlasticState) -> th.Tensor:
        return state.flat()

    def unpack_state(self, flat: th.Tensor) -> PlasticState:
        if flat.dim() != 2 or flat.shape[1] != self.state_dim:
            raise ValueError(
                f"the plastic state must have shape [n_envs, {self.state_dim}] (as returned by predict), got "
                f"{tuple(flat.shape)}; pass state=None to start from the initial state"
            )
        return self._template.to(flat.device).unflat(flat.to(self._template.dtype))

    # -- one step (rollouts, predict) ----------------------------------------------------------------
    def _features(self, obs) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs)
        return (features, features) if self.share_features_extractor else features

    def _previous_reward(self, obs) -> th.Tensor:
        return previous_reward(obs, self.core_config.reward_index)

    def _cores_step(self, pi_f, vf_f, state: PlasticState, signal):
        # cell_step: the cell's own step, or under no_grad (rollouts, predict) the fused engine's lean one
        y, m, pi_new = cell_step(self.core, self.core.project_input(pi_f), _part(state, "pi"), signal)
        fields = _prefixed(pi_new, "pi")
        y_vf = y
        if self.critic_core is not None:
            y_vf, _, vf_new = cell_step(
                self.critic_core, self.critic_core.project_input(vf_f), _part(state, "vf"), signal
            )
            fields.update(_prefixed(vf_new, "vf"))
        if "td.v" in state:
            fields["td.v"] = state["td.v"]
        return y, y_vf, m, PlasticState(**fields)

    def step(self, obs, state: PlasticState, episode_starts: th.Tensor, deterministic: bool = False) -> StepOutput:
        """One step for every env; ``episode_starts[B]`` resets those rows first (SB3 semantics)."""
        episode_starts = episode_starts.to(dtype=th.bool, device=state.device)
        if bool(episode_starts.any()):
            # a fresh initial state: some rules (ABCD) draw their episode-start weights
            state = state.reset(episode_starts, self.initial_state(1))
        latent_pi, values, new_state, m, stored = self.advance(obs, state, episode_starts)
        try:
            distribution = self._get_action_dist_from_latent(latent_pi)
        except (ValueError, RuntimeError):  # torch's "invalid values" says nothing about where they came from
            source = find_non_finite_source(self, obs, state, new_state)  # a head's weight counts too
            if source is None:
                raise
            raise FloatingPointError(f"{type(self).__name__}: {source}") from None
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))
        return StepOutput(actions, values, log_prob, new_state, m, stored)

    def advance(self, obs, state: PlasticState, episode_starts: th.Tensor):
        """The part of :meth:`step` after the episode-start reset, without Python branches on tensor values
        (the ONNX export traces it): ``(actor latent, values [B, 1], next state, M(t), stored signal)``."""
        pi_f, vf_f = self._features(obs)
        source, signal, stored = self.core_config.modulation_source, None, None
        if source != "hidden":
            signal = self._previous_reward(obs).to(pi_f.dtype)
        if source == "td_error":
            # The cores' outputs do not depend on this step's M(t): a first pass with M = 0 gives V(s_t).
            _, y_vf, _, _ = self._cores_step(pi_f, vf_f, state, th.zeros_like(signal))
            v_now = self.value_net(self.mlp_extractor.forward_critic(y_vf)).detach()
            td = signal + self.core_config.td_gamma * v_now[:, 0] - state["td.v"][:, 0]
            signal = stored = th.where(episode_starts, th.zeros_like(td), td)
        y, y_vf, m, state = self._cores_step(pi_f, vf_f, state, signal)
        if source == "td_error":
            state = state.replace(**{"td.v": v_now})
        values = self.value_net(self.mlp_extractor.forward_critic(y_vf))
        return self.mlp_extractor.forward_actor(y), values, state, m, stored

    # -- whole sequences (training) ----------------------------------------------------------------
    def _sequence_latents(self, batch: SequenceBatch) -> tuple[th.Tensor, th.Tensor]:
        T, n = batch.seq_len, batch.n_seq
        pi_f, vf_f = self._features(batch.observations)
        state = self.unpack_state(batch.start_state)
        source, signal = self.core_config.modulation_source, None
        if source == "reward":
            signal = self._previous_reward(batch.observations).reshape(T, n)
        elif source == "td_error":
            signal = batch.modulation
        res = scan(self.core, pi_f.reshape(T, n, -1), _part(state, "pi"), batch.episode_starts, signal)
        latent_pi = res.y.reshape(T * n, -1)
        if self.critic_core is None:
            return latent_pi, latent_pi
        res_vf = scan(self.critic_core, vf_f.reshape(T, n, -1), _part(state, "vf"), batch.episode_starts, signal)
        return latent_pi, res_vf.y.reshape(T * n, -1)

    def _evaluate_sequences(self, batch: SequenceBatch, actions: th.Tensor):
        latent_pi, latent_vf = self._sequence_latents(batch)
        distribution = self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent_pi))
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        return values, distribution.log_prob(actions), distribution.entropy()

    # -- SB3 entry points ----------------------------------------------------------------------------
    # SB3's off-policy algorithms alias ``policy.actor`` / ``critic`` / ``critic_target`` / ``actor_target``
    # right after building the policy; without these a plastic policy died there with a bare AttributeError.
    @property
    def actor(self):
        raise TypeError(_NOT_OFF_POLICY.format(name=type(self).__name__, attr="actor"))

    @property
    def critic(self):
        raise TypeError(_NOT_OFF_POLICY.format(name=type(self).__name__, attr="critic"))

    def evaluate_actions(self, obs, actions: th.Tensor, lstm_states=None, episode_starts=None):  # type: ignore[override]
        """Values, log-probs and entropy of ``actions``: whole sequences (a :class:`SequenceBatch`
        from the sequence rollout buffer), or RecurrentPPO's call with ``lstm_states``."""
        if isinstance(obs, SequenceBatch):
            return self._evaluate_sequences(obs, actions)
        if lstm_states is not None:
            return self._recurrent_evaluate(obs, actions, lstm_states, episode_starts)
        raise TypeError(_NEEDS_STATE.format(name=type(self).__name__, method="evaluate_actions"))

    def forward(self, obs, lstm_states=None, episode_starts=None, deterministic: bool = False):  # type: ignore[override]
        if lstm_states is None:
            raise TypeError(_NEEDS_STATE.format(name=type(self).__name__, method="forward"))
        return self._recurrent_forward(obs, lstm_states, episode_starts, deterministic)

    def predict_values(self, obs, lstm_states=None, episode_starts=None) -> th.Tensor:  # type: ignore[override]
        if lstm_states is None:
            raise TypeError(_NEEDS_STATE.format(name=type(self).__name__, method="predict_values"))
        return self._recurrent_values(obs, lstm_states, episode_starts)

    def get_distribution(self, obs, *args: Any, **kwargs: Any) -> Any:
        """Refused, with or without RecurrentPPO's ``lstm_states``: SB3's call would run the heads on the raw
        features (a shape error), and a distribution needs the state the next step starts from."""
        raise TypeError(_NEEDS_STATE.format(name=type(self).__name__, method="get_distribution"))

    def _predict(self, observation, deterministic: bool = False) -> th.Tensor:
        raise TypeError(_NEEDS_STATE.format(name=type(self).__name__, method="_predict"))


class MlpPlasticPolicy(PlasticActorCriticPolicy):
    """Plastic policy for vector observations (``FlattenExtractor``)."""

    _default_extractor = FlattenExtractor


class CnnPlasticPolicy(PlasticActorCriticPolicy):
    """Plastic policy for image observations (SB3's ``NatureCNN`` features)."""

    _default_extractor = NatureCNN


class MultiInputPlasticPolicy(PlasticActorCriticPolicy):
    """Plastic policy for Dict observations (SB3's ``CombinedExtractor``)."""

    _default_extractor = CombinedExtractor
