"""Plastic actors and critics for SAC and TD3 (SB3's ``SACPolicy`` / ``TD3Policy`` with a plastic core).

SB3's off-policy networks read ``features = features_extractor(obs)`` and put an MLP on top (the
actor's ``latent_pi`` / ``mu``, each critic's ``q_net([features, action])``). Here each network's
features extractor is a :class:`PlasticEncoder`: SB3's own extractor (flatten, NatureCNN, combined)
followed by a plastic core, so the MLPs read the core's ``h_t``. The rest is SB3's, unchanged:
``SAC.train`` / ``TD3.train``, the target networks (the plastic critic cores have Polyak-averaged
targets, and TD3's actor core too), entropy tuning, the optimizers.

An encoder reads two kinds of input:

* a :class:`~neuromod_rl.agents.off_policy.sequence_replay.SequenceView` from the sequence replay buffer: it
  runs the sampled sequences through :func:`neuromod_rl.plasticity.scan` (burn-in steps without
  gradient first) and returns ``h_t`` at the trained steps or at their next observations;
* a :class:`CoreOutput`, the ``h_t`` the policy's :meth:`~PlasticOffPolicyPolicyMixin.step` just
  computed while acting (one ``cell.step`` per env step).

The critic's core reads the observation history only; the action enters its Q heads with ``h_t``
(as in pomdp-baselines, Ni et al. 2022), so one pass of the core serves ``Q(s_t, a_t)`` and
``Q(s_t, pi(s_t))``. By default actor and critics own separate cores (``shared_core=False``, which
Ni et al. found more stable); ``shared_core=True`` is SB3's ``share_features_extractor=True``: one
core, trained by the actor loss only (SB3's rule for a shared extractor).

The recurrent state is one :class:`~neuromod_rl.plasticity.PlasticState` with the actor core's fields
prefixed ``pi.`` and, during training rollouts, the critic core's ``vf.``; it travels flat
(``[n_envs, D]``). ``predict`` carries the actor's part only.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, NamedTuple

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.sac.policies import Actor as SACActor
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import Actor as TD3Actor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from neuromod_rl.agents.common.core_factory import CoreConfig, build_core, split_policy_kwargs
from neuromod_rl.agents.common.finite import check_step, find_non_finite_source
from neuromod_rl.agents.off_policy.sequence_replay import SequenceSample, SequenceView
from neuromod_rl.agents.on_policy.policies import (
    PlasticActorCriticPolicy,
    StatefulPredictMixin,
    _part,
    _prefixed,
    previous_reward,
)
from neuromod_rl.plasticity import PlasticState, freeze_plasticity, scan

_NEEDS_STATE = (
    "the plastic actor and critics read whole sequences (from PlasticSAC / PlasticTD3's sequence replay "
    "buffer) or the core output of policy.step; act with model.predict(obs, state, episode_start) and "
    "train with neuromod_rl.agents.PlasticSAC / PlasticTD3, not SB3's SAC / TD3"
)


class CoreOutput(NamedTuple):
    """``h_t`` of a core, computed by the policy's step: an actor reads it instead of an observation."""

    latent: th.Tensor


class PlasticStep(NamedTuple):
    """One policy step for every env (what :meth:`PlasticOffPolicyPolicyMixin.step` returns)."""

    actions: th.Tensor  # the actor's output, squashed to [-1, 1] (``unscale_action`` gives env units)
    state: PlasticState  # after this step
    modulation: th.Tensor | None  # M(t) of the actor core ([B] or [B, N]), for diagnostics


class PlasticEncoder(BaseFeaturesExtractor):
    """SB3 features extractor + plastic core: the "features extractor" of a plastic actor or critic.

    Args:
        observation_space: the policy's observation space.
        extractor: SB3's extractor applied to each step's observation.
        config: the core's configuration.
        state_offset: where this core's fields start in the policy's flat state (0 for the actor's).
        normalize_images: as SB3's ``normalize_images``.
        frozen: build the core with ``alpha = 0`` (:func:`freeze_plasticity`).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        extractor: BaseFeaturesExtractor,
        config: CoreConfig,
        state_offset: int,
        normalize_images: bool = True,
        frozen: bool = False,
    ):
        super().__init__(observation_space, config.hidden_size)
        self.obs_space = observation_space
        self.extractor = extractor
        self.core = build_core(config, extractor.features_dim)
        if frozen:
            freeze_plasticity(self.core)
        self.reward_index = config.reward_index if config.external else None
        self.normalize_images = normalize_images
        self.state_offset = state_offset
        self.state_width = self.core.initial_state(1).flat().shape[1]

    def initial_state(self, n: int) -> PlasticState:
        return self.core.initial_state(n, device=next(self.core.parameters()).device)

    def features(self, obs) -> th.Tensor:
        """SB3's preprocessing and extractor for a batch of observations ``[B, ...]``."""
        return self.extractor(preprocess_obs(obs, self.obs_space, normalize_images=self.normalize_images))

    def _signal(self, obs) -> th.Tensor | None:
        return None if self.reward_index is None else previous_reward(obs, self.reward_index)

    def step(self, obs, state: PlasticState) -> tuple[th.Tensor, th.Tensor | None, PlasticState]:
        """One step of the core for every env: ``(h_t, M(t), next state)``."""
        x = self.core.project_input(self.features(obs))
        signal = self._signal(obs)
        return self.core.step(x, state, None if signal is None else signal.to(x.dtype))

    def sequence(self, sample: SequenceSample) -> th.Tensor:
        """``h`` at every position of the sampled sequences, ``[T, n, N]``; the burn-in positions run
        without gradient from the stored state (or the episode-start state)."""
        T, n, K = sample.total_len, sample.n_seq, sample.burn_in
        obs = sample.observations
        flat = {k: v.reshape(T * n, *v.shape[2:]) for k, v in obs.items()} if isinstance(obs, dict) else obs.reshape(
            T * n, *obs.shape[2:]
        )
        x = self.features(flat).reshape(T, n, -1)
        signal = self._signal(flat)
        signal = None if signal is None else signal.reshape(T, n).to(x.dtype)
        if sample.start_state is None:
            state = self.core.initial_state(n, device=x.device, dtype=x.dtype)
        else:
            part = sample.start_state[:, self.state_offset : self.state_offset + self.state_width]
            state = self.core.initial_state(1, device=x.device, dtype=x.dtype).unflat(part.to(x.dtype))
        starts = sample.episode_starts
        if K == 0:
            return scan(self.core, x, state, starts, signal).y
        with th.no_grad():
            burn = scan(self.core, x[:K], state, starts[:K], None if signal is None else signal[:K])
        rest = scan(self.core, x[K:], burn.state.detach(), starts[K:], None if signal is None else signal[K:])
        return th.cat([burn.y, rest.y])

    def _sequence_cached(self, sample: SequenceSample) -> th.Tensor:
        """:meth:`sequence`, computed once per sample and parameter values: SAC reads the actor's outputs
        at the trained steps (with gradient) and then at their next observations (without), from
        one pass. A request without gradient reuses a pass made with unchanged parameters (an
        optimizer step bumps their version counters); a request with gradient always runs anew."""
        versions = tuple(p._version for p in self.parameters())
        hit = sample.cache.get(id(self))
        if hit is not None and hit[0] == versions and not th.is_grad_enabled():
            return hit[1].detach()
        y = self.sequence(sample)
        sample.cache[id(self)] = (versions, y)
        return y

    def forward(self, obs) -> th.Tensor:  # type: ignore[override]
        if isinstance(obs, CoreOutput):
            return obs.latent
        if isinstance(obs, SequenceView):
            y = self._sequence_cached(obs.sample)
            n = y.shape[1]
            return y[obs.positions, th.arange(n, device=y.device)].reshape(-1, y.shape[-1])
        raise TypeError(_NEEDS_STATE)


class _EncoderFeatures:
    """The encoder preprocesses by itself (its input is a sequence view or a core output, which
    SB3's ``preprocess_obs`` does not know)."""

    def extract_features(self, obs, features_extractor: nn.Module) -> th.Tensor:
        return features_extractor(obs)


class PlasticSACActor(_EncoderFeatures, SACActor):
    """SB3's SAC actor on a :class:`PlasticEncoder`."""


class PlasticTD3Actor(_EncoderFeatures, TD3Actor):
    """SB3's TD3 actor on a :class:`PlasticEncoder`."""


class PlasticContinuousCritic(_EncoderFeatures, ContinuousCritic):
    """SB3's twin Q critic on a :class:`PlasticEncoder`: ``Q_i(h_t, a_t)``.

    When the actions carry a gradient (the actor loss ``Q(s, pi(s))``), the core's sequence pass runs
    without autograd: only the actor learns from that loss (SB3 zeroes the critic's gradients before
    every critic step), so the actor's update is unchanged and a backward pass through the core is
    saved. The critic loss uses the buffer's actions, which carry none.
    """

    def forward(self, obs, actions: th.Tensor) -> tuple[th.Tensor, ...]:  # type: ignore[override]
        if actions.requires_grad and isinstance(obs, SequenceView):
            with th.no_grad():
                obs = CoreOutput(self.features_extractor(obs))
        return super().forward(obs, actions)


class PlasticOffPolicyPolicyMixin(StatefulPredictMixin):
    """What the plastic SAC and TD3 policies add to SB3's (see the module docstring).

    ``policy_kwargs``: the plastic keys of :class:`~neuromod_rl.agents.common.core_factory.CoreConfig`
    (``rule``, ``core``, ``hidden_size``, ``alpha_shape``, ``modulation``, ``modulation_source``
    (``"hidden"`` or ``"reward"``), ``shared_core`` (default False here), ``rule_kwargs``,
    ``core_layers``, ``reward_index``), ``freeze_plasticity`` (``alpha = 0``: the non-plastic
    ablation), plus the SB3 policy's own keys (``net_arch`` shapes the MLPs after the core; SB3's
    defaults apply).
    """

    _sb3_policy: ClassVar[type]
    _actor_class: ClassVar[type]
    _default_extractor: ClassVar[type] = FlattenExtractor
    core_config: CoreConfig
    actor: Any
    critic: Any

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule, **kwargs: Any):
        kwargs = dict(kwargs)
        frozen = bool(kwargs.pop("freeze_plasticity", False))
        kwargs.setdefault("shared_core", False)
        sb3_keys = set(inspect.signature(self._sb3_policy.__init__).parameters) - {
            "self", "observation_space", "action_space", "lr_schedule"
        }
        if kwargs.pop("use_sde", False):
            raise ValueError("use_sde=True is not supported by plastic policies; drop use_sde")
        config, sb3_kwargs = split_policy_kwargs(kwargs, sb3_keys)
        if config.modulation_source == "td_error":
            raise ValueError(
                "modulation_source='td_error' reads a state-value head, which SAC / TD3 policies do not have; "
                "use modulation_source='hidden' or 'reward'"
            )
        shared = sb3_kwargs.get("share_features_extractor")
        if shared is not None and bool(shared) != config.shared_core:
            raise ValueError(
                f"share_features_extractor={shared} contradicts shared_core={config.shared_core}: the plastic core "
                "is the shared part, set shared_core only"
            )
        sb3_kwargs["share_features_extractor"] = config.shared_core
        sb3_kwargs.setdefault("features_extractor_class", self._default_extractor)
        PlasticActorCriticPolicy._check_reward_source(observation_space, config)
        self.core_config, self.freeze_plasticity = config, frozen
        self._actor_width: int | None = None
        super().__init__(observation_space, action_space, lr_schedule, **sb3_kwargs)  # type: ignore[call-arg]

    # -- construction (called by SB3's _build) ------------------------------------------------------
    def _make_encoder(self, critic: bool) -> PlasticEncoder:
        offset = self._actor_width if critic and not self.core_config.shared_core else 0
        encoder = PlasticEncoder(
            self.observation_space,  # type: ignore[attr-defined]
            self.make_features_extractor(),  # type: ignore[attr-defined]
            self.core_config,
            state_offset=offset or 0,
            normalize_images=self.normalize_images,  # type: ignore[attr-defined]
            frozen=self.freeze_plasticity,
        )
        if self._actor_width is None:
            self._actor_width = encoder.state_width
        return encoder

    def make_actor(self, features_extractor: PlasticEncoder | None = None):
        encoder = features_extractor if features_extractor is not None else self._make_encoder(critic=False)
        kwargs = self._update_features_extractor(self.actor_kwargs, encoder)  # type: ignore[attr-defined]
        return self._actor_class(**kwargs).to(self.device)  # type: ignore[attr-defined]

    def make_critic(self, features_extractor: PlasticEncoder | None = None) -> PlasticContinuousCritic:
        encoder = features_extractor if features_extractor is not None else self._make_encoder(critic=True)
        kwargs = self._update_features_extractor(self.critic_kwargs, encoder)  # type: ignore[attr-defined]
        return PlasticContinuousCritic(**kwargs).to(self.device)  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(self.core_config.as_dict())
        data.update(freeze_plasticity=self.freeze_plasticity)
        return data

    # -- state ---------------------------------------------------------------------------------------
    @property
    def has_critic_state(self) -> bool:
        """True when the critic has its own core (``shared_core=False``), whose state rollouts carry."""
        return not self.core_config.shared_core

    def initial_state(self, n_envs: int, critic: bool = False) -> PlasticState:
        """The episode-start state of the actor core (``pi.*``), plus the critic core's (``vf.*``) when
        ``critic`` and the critic has its own core."""
        fields = _prefixed(self.actor.features_extractor.initial_state(n_envs), "pi")
        if critic and self.has_critic_state:
            fields.update(_prefixed(self.critic.features_extractor.initial_state(n_envs), "vf"))
        return PlasticState(**fields)

    @property
    def state_dim(self) -> int:
        """Floats per env in the flat state ``predict`` carries (the actor core's)."""
        return self.actor.features_extractor.state_width

    def unpack_state(self, flat: th.Tensor) -> PlasticState:
        """The flat state ``[n_envs, D]`` back as fields: the actor's alone, or actor's and critic's."""
        widths = {self.state_dim: False}
        if self.has_critic_state:
            widths[self.state_dim + self.critic.features_extractor.state_width] = True
        if flat.dim() != 2 or flat.shape[1] not in widths:
            raise ValueError(
                f"the plastic state must have shape [n_envs, {self.state_dim}] (as returned by predict), got "
                f"{tuple(flat.shape)}; pass state=None to start from the initial state"
            )
        template = self.initial_state(1, critic=widths[flat.shape[1]])
        return template.unflat(flat.to(template.device, template.dtype))

    # -- acting ----------------------------------------------------------------------------------------
    def _actor_actions(self, latent: CoreOutput, deterministic: bool) -> th.Tensor:
        raise NotImplementedError

    def step(self, obs, state: PlasticState, episode_starts: th.Tensor, deterministic: bool = False) -> PlasticStep:
        """One step for every env; ``episode_starts[B]`` resets those rows first (SB3 semantics). The
        critic core advances too when ``state`` holds its fields. NaN/inf in the actions or the next
        state raises ``FloatingPointError`` naming its source (observation, weights, state, traces)."""
        with_critic = any(k.startswith("vf.") for k in state)
        episode_starts = episode_starts.to(dtype=th.bool, device=state.device)
        if bool(episode_starts.any()):
            # a fresh initial state: some rules (ABCD) draw their episode-start weights
            state = state.reset(episode_starts, self.initial_state(1, critic=with_critic))
        y, m, pi_state = self.actor.features_extractor.step(obs, _part(state, "pi"))
        fields = _prefixed(pi_state, "pi")
        if with_critic:
            _, _, vf_state = self.critic.features_extractor.step(obs, _part(state, "vf"))
            fields.update(_prefixed(vf_state, "vf"))
        new_state = PlasticState(**fields)
        try:
            actions = self._actor_actions(CoreOutput(y), deterministic)
        except (ValueError, RuntimeError):  # torch's "invalid values" says nothing about where they came from
            source = find_non_finite_source(self, obs, state, new_state)
            if source is None:
                raise
            raise FloatingPointError(f"{type(self).__name__}: {source}") from None
        # TD3's deterministic actor would hand a NaN on to the env without a word
        check_step(self, obs, state, new_state, actions)
        return PlasticStep(actions, new_state, m)

    def _predict(self, observation, deterministic: bool = False) -> th.Tensor:
        raise TypeError(_NEEDS_STATE)


class PlasticSACPolicy(PlasticOffPolicyPolicyMixin, SACPolicy):
    """SB3's ``SACPolicy`` with plastic actor and critic cores (see :class:`PlasticOffPolicyPolicyMixin`)."""

    _sb3_policy = SACPolicy
    _actor_class = PlasticSACActor

    def _actor_actions(self, latent: CoreOutput, deterministic: bool) -> th.Tensor:
        return self.actor(latent, deterministic=deterministic)


class CnnPlasticSACPolicy(PlasticSACPolicy):
    """:class:`PlasticSACPolicy` for image observations (SB3's ``NatureCNN`` features)."""

    _default_extractor = NatureCNN


class MultiInputPlasticSACPolicy(PlasticSACPolicy):
    """:class:`PlasticSACPolicy` for Dict observations (SB3's ``CombinedExtractor``)."""

    _default_extractor = CombinedExtractor


class PlasticTD3Policy(PlasticOffPolicyPolicyMixin, TD3Policy):
    """SB3's ``TD3Policy`` with plastic actor and critic cores (the target actor's core too)."""

    _sb3_policy = TD3Policy
    _actor_class = PlasticTD3Actor

    def _actor_actions(self, latent: CoreOutput, deterministic: bool) -> th.Tensor:
        return self.actor(latent)  # TD3's actor is deterministic; exploration noise is the algorithm's


class CnnPlasticTD3Policy(PlasticTD3Policy):
    """:class:`PlasticTD3Policy` for image observations (SB3's ``NatureCNN`` features)."""

    _default_extractor = NatureCNN


class MultiInputPlasticTD3Policy(PlasticTD3Policy):
    """:class:`PlasticTD3Policy` for Dict observations (SB3's ``CombinedExtractor``)."""

    _default_extractor = CombinedExtractor
