"""Optuna samplers for rl-zoo3's ``-optimize`` with the plastic algorithms.

Each sampler draws the usual PPO / A2C / SAC / TD3 hyperparameters (ranges as rl-zoo3's own samplers)
together with the plastic core (``core``, ``rule``, ``hidden_size``, ``alpha_shape``, ``modulation``),
and shapes every minibatch as whole training sequences, which is what the plastic algorithms train on:

* PlasticPPO / PlasticA2C: a rollout of ``n_steps`` per env is cut into ``2**bptt_chunks_pow`` sequences
  (``bptt_length="episode"`` for one, else ``n_steps // chunks``), and PPO's ``batch_size`` is a whole
  number of them, at most ``n_envs`` (:mod:`neuromod_rl.agents.on_policy.buffers`);
* PlasticSAC / PlasticTD3: ``batch_size`` is ``2**sequences_per_batch_pow`` windows of
  ``sequence_length`` steps, after an optional ``burn_in``
  (:mod:`neuromod_rl.agents.off_policy.sequence_replay`).

A sampler records Optuna parameters and returns what its converter makes of them, so a trial stored in
``--storage`` converts back the same way (``--trial-id``). As with every rl-zoo3 sampler, the sampled
``policy_kwargs`` replace those of the zoo file during the search: keys it does not sample (``rule_kwargs``,
``modulation_source``, ``log_std_init``, ...) take their defaults there.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_offpolicy_params, convert_onpolicy_params

from neuromod_rl.plasticity.rules import get_rule_class

#: rules with a compiled (fused) step on every core: the search stays on the fast path
RULES = ("neuromod", "retroactive", "hebbian", "clipped", "oja", "abcd")
HIDDEN_SIZES = (16, 32, 64, 128)
ALPHA_SHAPES = ("full", "neuron", "scalar")
#: a rule that takes no modulation gets ``modulation=None`` whatever was drawn
MODULATIONS = ("scalar", "fanout")
PLASTIC_PARAMS = ("core", "rule", "hidden_size", "alpha_shape", "modulation")


def sample_plastic_core(trial: optuna.Trial) -> dict[str, Any]:
    """Draw the plastic core's keys (Optuna parameters named as the ``policy_kwargs`` keys).

    Args:
        trial: the Optuna trial.
    """
    return {
        "core": trial.suggest_categorical("core", ["rnn", "lstm"]),
        "rule": trial.suggest_categorical("rule", list(RULES)),
        "hidden_size": trial.suggest_categorical("hidden_size", list(HIDDEN_SIZES)),
        "alpha_shape": trial.suggest_categorical("alpha_shape", list(ALPHA_SHAPES)),
        "modulation": trial.suggest_categorical("modulation", list(MODULATIONS)),
    }


def plastic_policy_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The plastic ``policy_kwargs`` of sampled parameters (a rule that takes no modulation gets ``None``).

    Args:
        params: sampled parameters holding :data:`PLASTIC_PARAMS`.
    """
    kwargs = {key: params[key] for key in PLASTIC_PARAMS}
    if get_rule_class(kwargs["rule"]).modulation == "never":
        kwargs["modulation"] = None
    return kwargs


def _split(params: dict[str, Any], keys: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    rest = dict(params)
    return {k: rest.pop(k) for k in keys if k in rest}, rest


def _max_pow(n: int) -> int:
    """The largest ``p`` with ``2**p <= n``."""
    return int(math.floor(math.log2(max(int(n), 1))))


# -- on-policy: PlasticPPO, PlasticA2C -----------------------------------------------------------------
_ONPOLICY_SEQUENCES = ("bptt_chunks_pow", "sequences_per_batch_pow")


def convert_plastic_onpolicy_params(params: dict[str, Any]) -> dict[str, Any]:
    """PlasticPPO / PlasticA2C hyperparameters from sampled parameters: rl-zoo3's on-policy conversion
    (``gamma``, ``gae_lambda``, ``n_steps``, heads), then ``bptt_length``, ``batch_size`` in whole
    sequences and the plastic core.

    Args:
        params: the Optuna parameters of :func:`sample_plastic_ppo_params` or :func:`sample_plastic_a2c_params`.
    """
    sequences, rest = _split(params, _ONPOLICY_SEQUENCES)
    plastic, rest = _split(rest, PLASTIC_PARAMS)
    hyperparams = convert_onpolicy_params(rest)
    chunks = 2 ** sequences["bptt_chunks_pow"]
    seq_len = hyperparams["n_steps"] // chunks
    hyperparams["bptt_length"] = "episode" if chunks == 1 else seq_len
    if "sequences_per_batch_pow" in sequences:
        hyperparams["batch_size"] = 2 ** sequences["sequences_per_batch_pow"] * seq_len
    hyperparams["policy_kwargs"].update(plastic_policy_kwargs(plastic))
    return hyperparams


def _sample_onpolicy(trial: optuna.Trial, n_envs: int, ppo: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 10),  # 32 to 1024 steps per env and rollout
        "bptt_chunks_pow": trial.suggest_int("bptt_chunks_pow", 0, 2),  # 1, 2 or 4 sequences per rollout
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2),
        "net_arch": trial.suggest_categorical("net_arch", ["tiny", "small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    if ppo:
        # a minibatch holds 1 to n_envs whole sequences (more would be the whole rollout anyway)
        params["sequences_per_batch_pow"] = trial.suggest_int("sequences_per_batch_pow", 0, _max_pow(n_envs))
        params["clip_range"] = trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4])
        params["n_epochs"] = trial.suggest_categorical("n_epochs", [1, 5, 10, 20])
    params.update(sample_plastic_core(trial))
    hyperparams = convert_plastic_onpolicy_params(params)
    for key in ("gamma", "n_steps", "bptt_length", "batch_size"):
        if key in hyperparams:
            trial.set_user_attr(key, hyperparams[key])
    return hyperparams


def sample_plastic_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict:
    """PlasticPPO hyperparameters for one trial (rl-zoo3's sampler signature).

    Args:
        trial: the Optuna trial.
        n_actions: action dimensions (unused: PPO takes no action noise).
        n_envs: envs of the run; a minibatch holds at most this many sequences.
        additional_args: rl-zoo3's extra arguments (unused).
    """
    return _sample_onpolicy(trial, n_envs, ppo=True)


def sample_plastic_a2c_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict:
    """PlasticA2C hyperparameters for one trial (A2C trains on the whole rollout: no ``batch_size``).

    Args:
        trial: the Optuna trial.
        n_actions: action dimensions (unused).
        n_envs: envs of the run (unused).
        additional_args: rl-zoo3's extra arguments (unused).
    """
    return _sample_onpolicy(trial, n_envs, ppo=False)


# -- off-policy: PlasticSAC, PlasticTD3 ----------------------------------------------------------------
_OFFPOLICY_SEQUENCES = ("sequence_length_pow", "sequences_per_batch_pow", "burn_in", "noise_std")


def convert_plastic_offpolicy_params(params: dict[str, Any]) -> dict[str, Any]:
    """PlasticSAC / PlasticTD3 hyperparameters from sampled parameters: rl-zoo3's off-policy conversion
    (``gamma``, ``gradient_steps``, ``net_arch``), then ``sequence_length``, ``burn_in``, ``batch_size`` in
    whole sequences, TD3's Gaussian ``action_noise`` (a number: see PlasticTD3) and the plastic core.

    Args:
        params: the Optuna parameters of :func:`sample_plastic_sac_params` or :func:`sample_plastic_td3_params`.
    """
    sequences, rest = _split(params, _OFFPOLICY_SEQUENCES)
    plastic, rest = _split(rest, PLASTIC_PARAMS)
    hyperparams = convert_offpolicy_params(rest)
    seq_len = 2 ** sequences["sequence_length_pow"]
    hyperparams.update(sequence_length=seq_len, burn_in=sequences["burn_in"],
                       batch_size=2 ** sequences["sequences_per_batch_pow"] * seq_len)  # fmt: skip
    if "noise_std" in sequences:
        hyperparams["action_noise"] = sequences["noise_std"]
    hyperparams["policy_kwargs"].update(plastic_policy_kwargs(plastic))
    return hyperparams


def _sample_offpolicy(trial: optuna.Trial, td3: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.002, log=True),
        "train_freq": trial.suggest_int("train_freq", 1, 10),
        "tau": trial.suggest_float("tau", 0.001, 0.08, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium", "big"]),
        "sequence_length_pow": trial.suggest_int("sequence_length_pow", 3, 6),  # 8 to 64 trained steps
        "sequences_per_batch_pow": trial.suggest_int("sequences_per_batch_pow", 0, 4),  # 1 to 16 sequences
        "burn_in": trial.suggest_categorical("burn_in", [0, 4, 8, 16]),
    }
    if td3:
        params["noise_std"] = trial.suggest_float("noise_std", 0, 0.5)
    params.update(sample_plastic_core(trial))
    hyperparams = convert_plastic_offpolicy_params(params)
    for key in ("gamma", "batch_size", "sequence_length"):
        trial.set_user_attr(key, hyperparams[key])
    return hyperparams


def sample_plastic_sac_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict:
    """PlasticSAC hyperparameters for one trial (rl-zoo3's sampler signature).

    Args:
        trial: the Optuna trial.
        n_actions: action dimensions (unused).
        n_envs: envs of the run (unused).
        additional_args: rl-zoo3's extra arguments (unused: the sequence replay buffer is the only one).
    """
    return _sample_offpolicy(trial, td3=False)


def sample_plastic_td3_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict:
    """PlasticTD3 hyperparameters for one trial, with Gaussian exploration noise of a sampled scale.

    Args:
        trial: the Optuna trial.
        n_actions: action dimensions (unused: PlasticTD3 sizes the noise from its action space).
        n_envs: envs of the run (unused).
        additional_args: rl-zoo3's extra arguments (unused).
    """
    return _sample_offpolicy(trial, td3=True)


#: rl-zoo3's ``HYPERPARAMS_SAMPLER`` entries
SAMPLERS = {
    "plastic_ppo": sample_plastic_ppo_params,
    "plastic_a2c": sample_plastic_a2c_params,
    "plastic_sac": sample_plastic_sac_params,
    "plastic_td3": sample_plastic_td3_params,
}
#: rl-zoo3's ``HYPERPARAMS_CONVERTER`` entries (a stored trial back to hyperparameters)
CONVERTERS = {
    "plastic_ppo": convert_plastic_onpolicy_params,
    "plastic_a2c": convert_plastic_onpolicy_params,
    "plastic_sac": convert_plastic_offpolicy_params,
    "plastic_td3": convert_plastic_offpolicy_params,
}
