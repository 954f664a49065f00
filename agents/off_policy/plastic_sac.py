"""PlasticSAC: SB3's SAC (Haarnoja et al. 2018) with plastic actor and critic cores trained on sequences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from neuromod_rl.agents.off_policy.policies import (
    CnnPlasticSACPolicy,
    MultiInputPlasticSACPolicy,
    PlasticSACPolicy,
)
from neuromod_rl.agents.off_policy.rollouts import PlasticOffPolicyMixin

SelfPlasticSAC = TypeVar("SelfPlasticSAC", bound="PlasticSAC")


class PlasticSAC(PlasticOffPolicyMixin, SAC):
    """SAC whose actor and critics adapt within an episode through plastic, neuromodulated synapses.

    A drop-in for :class:`stable_baselines3.SAC`: the same arguments in the same order with the same
    defaults, plus the sequence settings ``sequence_length``, ``burn_in`` and ``start_state`` (see
    :class:`~neuromod_rl.agents.off_policy.rollouts.PlasticOffPolicyMixin`). A gradient step samples
    ``batch_size // sequence_length`` whole sequences from the
    :class:`~neuromod_rl.agents.off_policy.sequence_replay.SequenceReplayBuffer`; SAC's losses, entropy tuning
    and target updates are SB3's ``SAC.train``, untouched.

    Args:
        policy: ``"MlpPlasticPolicy"``, ``"CnnPlasticPolicy"``, ``"MultiInputPlasticPolicy"`` or a plastic
            SAC policy class (SB3's feed-forward policies are refused: use ``stable_baselines3.SAC``).
        env: the environment to learn from: a Gymnasium env, a VecEnv or a registered id.
        learning_rate: Adam's learning rate for every network (actor, critics, entropy coefficient), or a
            function of the remaining progress (1 to 0).
        buffer_size: transitions the replay buffer holds over all envs (rounded down to whole
            ``sequence_length`` chunks per env).
        learning_starts: steps of uniformly random actions before training starts; raised to at least
            ``(burn_in + sequence_length) * n_envs``, one whole sequence per env. The plastic state is
            carried through these steps too, so the stored states match the stored history.
        batch_size: transitions per gradient step, made of whole sequences: ``batch_size // sequence_length``
            sequences of ``sequence_length`` trained steps (at least one).
        tau: soft (Polyak) update coefficient of the target critics, in [0, 1].
        gamma: discount factor.
        train_freq: update every ``train_freq`` steps, or a ``(frequency, "step" | "episode")`` tuple.
        gradient_steps: gradient steps after each rollout (-1: as many as env steps in the rollout).
        action_noise: extra exploration noise (an SB3 ``ActionNoise``), or a number: Gaussian noise of that
            standard deviation in the scaled action space (what a YAML config can express).
        replay_buffer_class: ``None`` (the sequence replay buffer, which stores episode starts and plastic
            states, is chosen) or a subclass of it; SB3's other buffers are refused.
        replay_buffer_kwargs: extra arguments of the replay buffer (the sequence settings are added).
        optimize_memory_usage: must stay False: sequences need every next observation.
        n_steps: must stay 1: the sequence replay buffer has no n-step returns.
        ent_coef: entropy coefficient, or ``"auto"`` (learned; ``"auto_0.1"`` starts it at 0.1).
        target_update_interval: gradient steps between two target-critic updates.
        target_entropy: the entropy target when ``ent_coef`` is learned (``"auto"``: minus the action dimension).
        use_sde: must stay False: plastic policies have no gSDE (they explore with SAC's Gaussian and
            ``action_noise``).
        sde_sample_freq: unused (gSDE is not supported); kept for SB3's signature.
        use_sde_at_warmup: unused (gSDE is not supported); kept for SB3's signature.
        stats_window_size: episodes averaged in the logged rollout statistics.
        tensorboard_log: folder of the TensorBoard logs (``None``: none); runs are named after ``learn``'s
            ``tb_log_name``, ``PlasticSAC_1``, ``PlasticSAC_2``, ... by default.
        policy_kwargs: the policy's arguments: the plastic keys (``rule``, ``core``, ``hidden_size``,
            ``shared_core``, ``freeze_plasticity``, ...; see
            :class:`~neuromod_rl.agents.off_policy.policies.PlasticOffPolicyPolicyMixin`) and SB3's
            (``net_arch``, ``activation_fn``, ``log_std_init``, ...). A loaded model must keep the plastic keys
            it was saved with.
        verbose: 0 (quiet), 1 (info) or 2 (debug).
        seed: seed of the random generators (weights, exploration, envs made from an id).
        device: torch device (``"auto"``: CUDA when available).
        sequence_length: trained steps per sampled sequence (L, default 32); a plastic state is stored every
            L steps per env.
        burn_in: steps before the trained ones that only refresh the stored state, without gradient (R2D2;
            default 0). Sequences then span ``burn_in + sequence_length`` buffer steps.
        start_state: ``"stored"`` (default: a sequence starts from the state the agent had when it collected
            it) or ``"zero"`` (from the episode-start state; nothing stored; pair it with a burn-in).
        _init_setup_model: build the networks now (SB3's ``load`` passes False).

    Example:
        >>> model = PlasticSAC("MlpPlasticPolicy", "neuromod_rl/PendulumNoVel-v1", sequence_length=16,
        ...                    policy_kwargs=dict(hidden_size=32))
        >>> model.learn(10_000)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPlasticPolicy": PlasticSACPolicy,
        "CnnPlasticPolicy": CnnPlasticSACPolicy,
        "MultiInputPlasticPolicy": MultiInputPlasticSACPolicy,
    }

    def __init__(
        self,
        policy: str | type[PlasticSACPolicy],
        env: GymEnv | str,
        learning_rate: float | Callable[[float], float] = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | float | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        *,
        sequence_length: int = 32,
        burn_in: int = 0,
        start_state: str = "stored",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            sequence_length=sequence_length,
            burn_in=burn_in,
            start_state=start_state,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def learn(
        self: SelfPlasticSAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "PlasticSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPlasticSAC:
        """SB3's ``SAC.learn``; only the TensorBoard run name differs, so plastic runs and SAC baselines
        logged to one folder do not share ``SAC_<n>`` names.

        Args:
            total_timesteps: env steps to train for (summed over the envs).
            callback: SB3 callback(s) called at every step.
            log_interval: episodes between two log dumps.
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
