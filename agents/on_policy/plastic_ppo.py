"""PlasticPPO: SB3's PPO (Schulman et al. 2017) for plastic, neuromodulated policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from neuromod_rl.agents.on_policy.policies import (
    CnnPlasticPolicy,
    MlpPlasticPolicy,
    MultiInputPlasticPolicy,
    PlasticActorCriticPolicy,
)
from neuromod_rl.agents.on_policy.rollouts import PlasticOnPolicyMixin

PLASTIC_POLICY_ALIASES: dict[str, type[BasePolicy]] = {
    "MlpPlasticPolicy": MlpPlasticPolicy,
    "CnnPlasticPolicy": CnnPlasticPolicy,
    "MultiInputPlasticPolicy": MultiInputPlasticPolicy,
}

SelfPlasticPPO = TypeVar("SelfPlasticPPO", bound="PlasticPPO")


class PlasticPPO(PlasticOnPolicyMixin, PPO):
    """PPO whose policy adapts within an episode through plastic, neuromodulated synapses.

    A drop-in for :class:`stable_baselines3.PPO`: the same arguments in the same order with the same
    defaults, plus ``bptt_length``. Rollouts carry the plastic state from step to step
    (:class:`~neuromod_rl.agents.on_policy.rollouts.PlasticOnPolicyMixin`); PPO's loss, clipping and
    optimisation are SB3's ``PPO.train``, untouched, run on minibatches of whole sequences. ``predict``
    takes and returns the plastic state (``state``, ``episode_start``), as sb3-contrib's RecurrentPPO.

    Args:
        policy: ``"MlpPlasticPolicy"``, ``"CnnPlasticPolicy"``, ``"MultiInputPlasticPolicy"`` or a
            plastic policy class (SB3's feed-forward policies are refused: use ``stable_baselines3.PPO``).
        env: the environment to learn from: a Gymnasium env, a VecEnv or a registered id.
        learning_rate: Adam's learning rate, or a function of the remaining progress (1 to 0).
        n_steps: steps per env per rollout (the rollout holds ``n_steps * n_envs`` steps). With
            ``bptt_length="episode"`` each env's rollout is one training sequence: use at least the episode
            length, or episodes running when the rollout starts are cut there.
        batch_size: steps per minibatch, made of whole training sequences: ``batch_size // sequence length``
            sequences (at least one; a warning says when ``batch_size`` is shorter than a sequence).
        n_epochs: passes over the rollout per update.
        gamma: discount factor.
        gae_lambda: the bias/variance trade-off of Generalized Advantage Estimation.
        clip_range: PPO's clipping of the probability ratio, or a function of the remaining progress.
        clip_range_vf: clipping of the value function around its previous prediction (``None``: none); it
            depends on the reward scale.
        normalize_advantage: normalise the advantages within each minibatch.
        ent_coef: entropy coefficient of the loss.
        vf_coef: value-function coefficient of the loss.
        max_grad_norm: gradient norm clipping (of every parameter, the plastic core's meta-parameters included).
        use_sde: generalised State-Dependent Exploration (Box actions) instead of independent Gaussian noise.
        sde_sample_freq: with gSDE, draw a new noise matrix every this many steps (-1: once per rollout).
        rollout_buffer_class: ``None`` (the sequence rollout buffer, which stores the plastic state where a
            training sequence starts, is chosen) or a subclass of it; SB3's other buffers are refused.
        rollout_buffer_kwargs: extra arguments of the rollout buffer (``seq_len`` comes from ``bptt_length``).
        target_kl: stop an update's epochs early once the approximate KL divergence exceeds this (``None``:
            no limit).
        stats_window_size: episodes averaged in the logged rollout statistics.
        tensorboard_log: folder of the TensorBoard logs (``None``: none); runs are named after ``learn``'s
            ``tb_log_name``, ``PlasticPPO_1``, ``PlasticPPO_2``, ... by default.
        policy_kwargs: the policy's arguments: the plastic keys (``rule``, ``core``, ``hidden_size``,
            ``alpha_shape``, ``modulation``, ``modulation_source``, ``shared_core``, ``rule_kwargs``, ...;
            see :class:`~neuromod_rl.agents.common.core_factory.CoreConfig`) and SB3's (``net_arch``,
            ``activation_fn``, ``log_std_init``, ``ortho_init``, ...). A loaded model must keep the plastic
            keys it was saved with.
        verbose: 0 (quiet), 1 (info) or 2 (debug).
        seed: seed of the random generators (weights, exploration, envs made from an id).
        device: torch device (``"auto"``: CUDA when available).
        bptt_length: how far gradients flow back through the plastic state: ``"episode"`` (default: each
            env's whole rollout is one sequence, episodes backpropagated through from their first step, the
            Backpropamine setting) or an int ``L`` (truncated BPTT over ``L``-step chunks; ``L`` must divide
            ``n_steps``). See :class:`~neuromod_rl.agents.on_policy.rollouts.PlasticOnPolicyMixin`.
        _init_setup_model: build the networks now (SB3's ``load`` passes False).

    Example:
        >>> model = PlasticPPO("MlpPlasticPolicy", "neuromod_rl/DelayedCue-v0",
        ...                    policy_kwargs=dict(rule="neuromod", hidden_size=32), n_steps=70)
        >>> model.learn(10_000)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = PLASTIC_POLICY_ALIASES

    def __init__(
        self,
        policy: str | type[PlasticActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Callable[[float], float] = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Callable[[float], float] = 0.2,
        clip_range_vf: float | Callable[[float], float] | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        *,
        bptt_length: int | str = "episode",
        _init_setup_model: bool = True,
    ):
        self._init_plastic(bptt_length)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def learn(
        self: SelfPlasticPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PlasticPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPlasticPPO:
        """SB3's ``PPO.learn``; only the TensorBoard run name differs, so plastic runs and PPO baselines
        logged to one folder do not share ``PPO_<n>`` names.

        Args:
            total_timesteps: env steps to train for (summed over the envs; rounded up to whole rollouts).
            callback: SB3 callback(s) called at every step.
            log_interval: rollouts between two log dumps.
            tb_log_name: TensorBoard run name; the run folder is ``<tensorboard_log>/<tb_log_name>_<n>``.
            reset_num_timesteps: start the step count (and a new TensorBoard run) at 0; False continues.
            progress_bar: show a progress bar (tqdm and rich).
        """
        return super().learn(
            total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
