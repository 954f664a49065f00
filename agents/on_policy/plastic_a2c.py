"""PlasticA2C: SB3's A2C (Mnih et al. 2016) for plastic, neuromodulated policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from neuromod_rl.agents.on_policy.plastic_ppo import PLASTIC_POLICY_ALIASES
from neuromod_rl.agents.on_policy.policies import PlasticActorCriticPolicy
from neuromod_rl.agents.on_policy.rollouts import PlasticOnPolicyMixin

SelfPlasticA2C = TypeVar("SelfPlasticA2C", bound="PlasticA2C")


class PlasticA2C(PlasticOnPolicyMixin, A2C):
    """A2C whose policy adapts within an episode through plastic, neuromodulated synapses.

    A drop-in for :class:`stable_baselines3.A2C`: the same arguments in the same order with the same
    defaults, plus ``bptt_length``. A2C trains on the whole rollout at once, so with ``"episode"`` the
    gradient spans ``n_steps`` steps: raise ``n_steps`` from A2C's default 5 to the episode length (the
    Backpropamine setting backpropagates through whole episodes). A2C's loss and optimiser are SB3's
    ``A2C.train``, untouched.

    Args:
        policy: ``"MlpPlasticPolicy"``, ``"CnnPlasticPolicy"``, ``"MultiInputPlasticPolicy"`` or a
            plastic policy class (SB3's feed-forward policies are refused: use ``stable_baselines3.A2C``).
        env: the environment to learn from: a Gymnasium env, a VecEnv or a registered id.
        learning_rate: the optimiser's learning rate, or a function of the remaining progress (1 to 0).
        n_steps: steps per env per update (one update per rollout of ``n_steps * n_envs`` steps). With
            ``bptt_length="episode"`` each env's rollout is one training sequence: use at least the episode
            length, or episodes running when the rollout starts are cut there.
        gamma: discount factor.
        gae_lambda: the bias/variance trade-off of Generalized Advantage Estimation (1: the classic advantage).
        ent_coef: entropy coefficient of the loss.
        vf_coef: value-function coefficient of the loss.
        max_grad_norm: gradient norm clipping (of every parameter, the plastic core's meta-parameters included).
        rms_prop_eps: RMSprop's epsilon (stabilises the square root in the denominator).
        use_rms_prop: RMSprop (default) rather than Adam.
        use_sde: generalised State-Dependent Exploration (Box actions) instead of independent Gaussian noise.
        sde_sample_freq: with gSDE, draw a new noise matrix every this many steps (-1: once per rollout).
        rollout_buffer_class: ``None`` (the sequence rollout buffer, which stores the plastic state where a
            training sequence starts, is chosen) or a subclass of it; SB3's other buffers are refused.
        rollout_buffer_kwargs: extra arguments of the rollout buffer (``seq_len`` comes from ``bptt_length``).
        normalize_advantage: normalise the advantages of each update.
        stats_window_size: episodes averaged in the logged rollout statistics.
        tensorboard_log: folder of the TensorBoard logs (``None``: none); runs are named after ``learn``'s
            ``tb_log_name``, ``PlasticA2C_1``, ``PlasticA2C_2``, ... by default.
        policy_kwargs: the policy's arguments: the plastic keys (``rule``, ``core``, ``hidden_size``,
            ``alpha_shape``, ``modulation``, ``modulation_source``, ``shared_core``, ``rule_kwargs``, ...;
            see :class:`~neuromod_rl.agents.common.core_factory.CoreConfig`) and SB3's (``net_arch``,
            ``activation_fn``, ``log_std_init``, ``ortho_init``, ...). A loaded model must keep the plastic
            keys it was saved with.
        verbose: 0 (quiet), 1 (info) or 2 (debug).
        seed: seed of the random generators (weights, exploration, envs made from an id).
        device: torch device (``"auto"``: CUDA when available).
        bptt_length: how far gradients flow back through the plastic state: ``"episode"`` (default: each
            env's whole rollout is one sequence) or an int ``L`` (truncated BPTT over ``L``-step chunks;
            ``L`` must divide ``n_steps``). See :class:`~neuromod_rl.agents.on_policy.rollouts.PlasticOnPolicyMixin`.
        _init_setup_model: build the networks now (SB3's ``load`` passes False).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = PLASTIC_POLICY_ALIASES

    def __init__(
        self,
        policy: str | type[PlasticActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Callable[[float], float] = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
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
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            rms_prop_eps=rms_prop_eps,
            use_rms_prop=use_rms_prop,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def learn(
        self: SelfPlasticA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "PlasticA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPlasticA2C:
        """SB3's ``A2C.learn``; only the TensorBoard run name differs, so plastic runs and A2C baselines
        logged to one folder do not share ``A2C_<n>`` names.

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
