"""PlasticTD3: SB3's TD3 (Fujimoto et al. 2018) with plastic actor and critic cores trained on sequences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from neuromod_rl.agents.off_policy.policies import (
    CnnPlasticTD3Policy,
    MultiInputPlasticTD3Policy,
    PlasticTD3Policy,
)
from neuromod_rl.agents.off_policy.rollouts import PlasticOffPolicyMixin

SelfPlasticTD3 = TypeVar("SelfPlasticTD3", bound="PlasticTD3")


class PlasticTD3(PlasticOffPolicyMixin, TD3):
    """TD3 whose actor and critics adapt within an episode through plastic, neuromodulated synapses.

    A drop-in for :class:`stable_baselines3.TD3`: the same arguments in the same order with the same
    defaults, plus the sequence settings ``sequence_length``, ``burn_in`` and ``start_state`` (see
    :class:`~neuromod_rl.agents.off_policy.rollouts.PlasticOffPolicyMixin`). TD3's losses, target policy
    smoothing, delayed actor updates and target networks (the target actor and critics have their own
    plastic cores) are SB3's ``TD3.train``, untouched. As with SB3's TD3, exploration comes from
    ``action_noise`` (e.g. ``NormalActionNoise``, or a number).

    Args:
        policy: ``"MlpPlasticPolicy"``, ``"CnnPlasticPolicy"``, ``"MultiInputPlasticPolicy"`` or a plastic
            TD3 policy class (SB3's feed-forward policies are refused: use ``stable_baselines3.TD3``).
        env: the environment to learn from: a Gymnasium env, a VecEnv or a registered id.
        learning_rate: Adam's learning rate for the actor and the critics, or a function of the remaining
            progress (1 to 0).
        buffer_size: transitions the replay buffer holds over all envs (rounded down to whole
            ``sequence_length`` chunks per env).
        learning_starts: steps of uniformly random actions before training starts; raised to at least
            ``(burn_in + sequence_length) * n_envs``, one whole sequence per env. The plastic state is
            carried through these steps too, so the stored states match the stored history.
        batch_size: transitions per gradient step, made of whole sequences: ``batch_size // sequence_length``
            sequences of ``sequence_length`` trained steps (at least one).
        tau: soft (Polyak) update coefficient of the target networks, in [0, 1].
        gamma: discount factor.
        train_freq: update every ``train_freq`` steps, or a ``(frequency, "step" | "episode")`` tuple.
        gradient_steps: gradient steps after each rollout (-1: as many as env steps in the rollout).
        action_noise: exploration noise (an SB3 ``ActionNoise``), or a number: Gaussian noise of that
            standard deviation in the scaled action space (what a YAML config can express). ``None``: the
            deterministic actor's action, no exploration after the warm-up.
        replay_buffer_class: ``None`` (the sequence replay buffer, which stores episode starts and plastic
            states, is chosen) or a subclass of it; SB3's other buffers are refused.
        replay_buffer_kwargs: extra arguments of the replay buffer (the sequence settings are added).
        optimize_memory_usage: must stay False: sequences need every next observation.
        n_steps: must stay 1: the sequence replay buffer has no n-step returns.
        policy_delay: critic updates per actor (and target) update.
        target_policy_noise: standard deviation of the smoothing noise added to the target policy's action.
        target_noise_clip: bound on the absolute value of that smoothing noise.
        stats_window_size: episodes averaged in the logged rollout statistics.
        tensorboard_log: folder of the TensorBoard logs (``None``: none); runs are named after ``learn``'s
            ``tb_log_name``, ``PlasticTD3_1``, ``PlasticTD3_2``, ... by default.
        policy_kwargs: the policy's arguments: the plastic keys (``rule``, ``core``, ``hidden_size``,
            ``shared_core``, ``freeze_plasticity``, ...; see
            :class:`~neuromod_rl.agents.off_policy.policies.PlasticOffPolicyPolicyMixin`) and SB3's
            (``net_arch``, ``activation_fn``, ...). A loaded model must keep the plastic keys it was saved with.
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
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPlasticPolicy": PlasticTD3Policy,
        "CnnPlasticPolicy": CnnPlasticTD3Policy,
        "MultiInputPlasticPolicy": MultiInputPlasticTD3Policy,
    }

    def __init__(
        self,
        policy: str | type[PlasticTD3Policy],
        env: GymEnv | str,
        learning_rate: float | Callable[[float], float] = 1e-3,
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
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
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
            policy_delay=policy_delay,
            target_policy_noise=target_policy_noise,
            target_noise_clip=target_noise_clip,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def learn(
        self: SelfPlasticTD3,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "PlasticTD3",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPlasticTD3:
        """SB3's ``TD3.learn``; only the TensorBoard run name differs, so plastic runs and TD3 baselines
        logged to one folder do not share ``TD3_<n>`` names.

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
