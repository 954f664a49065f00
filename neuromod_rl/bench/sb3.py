"""Benchmark ``neuromod-rl bench sb3``: PlasticPPO against SB3 PPO and sb3-contrib RecurrentPPO.

HalfCheetah-v5, 8 envs (``DummyVecEnv``), identical PPO hyperparameters (:data:`PPO_HPARAMS`), in
one run. Each algorithm trains in a fresh child process (so its peak RSS is its own) for the same
number of env steps; throughput is env-steps/s over ``learn`` (rollouts *and* updates). Prints a
table with the ratios against PPO and RecurrentPPO, and writes JSON. The plastic rows: PlasticPPO with
the default core (whatever ``MlpPlasticPolicy`` builds without ``policy_kwargs``: the plastic LSTM at
RecurrentPPO's hidden size, 64), and with ``core="rnn"``. The ratios are against sb3-contrib's own
RecurrentPPO, as users run it; a further row times the studies' RecurrentPPO (the same algorithm with
its LSTM trained over whole sequences, ``neuromod_rl.agents.on_policy.recurrent_ppo``) for comparison. The
default budget, 65,536 steps per algorithm, is long enough for the ratios to settle (at 8,192 steps two
runs of the same code read 0.75x and 0.52x against PPO).

Targets: PlasticPPO (default core) >= 0.85x PPO ``MlpPolicy``; PlasticPPO ``core="lstm"`` (the default)
>= 3x RecurrentPPO ``MlpLstmPolicy`` at equal hidden size.
Run: ``neuromod-rl bench sb3`` (or ``python -m neuromod_rl.bench.sb3 --timesteps 65536``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from typing import Any

from neuromod_rl.bench.harness import (
    Column,
    add_process_arguments,
    check_choices,
    in_fresh_process,
    limit_threads,
    peak_rss_mb,
    print_table,
    write_report,
)

ENV_ID = "HalfCheetah-v5"
#: identical for the three algorithms
PPO_HPARAMS: dict[str, Any] = dict(
    n_steps=256, batch_size=256, n_epochs=4, learning_rate=3e-4, gamma=0.99, seed=0
)
ALGORITHMS: dict[str, dict[str, Any]] = {
    "ppo_mlp": dict(label="SB3 PPO MlpPolicy", policy_kwargs={}),
    # ``module``: where the RecurrentPPO class comes from (sb3-contrib's, or the studies' whole-sequence one)
    "recurrent_ppo_lstm": dict(
        label="RecurrentPPO MlpLstmPolicy (64)", policy_kwargs=dict(lstm_hidden_size=64), module="sb3_contrib"
    ),
    "recurrent_ppo_lstm_whole_sequence": dict(
        label="RecurrentPPO MlpLstmPolicy (64), whole-sequence", policy_kwargs=dict(lstm_hidden_size=64),
        module="neuromod_rl.agents.on_policy.recurrent_ppo",
    ),
    "plastic_ppo": dict(label="PlasticPPO MlpPlasticPolicy (default core)", policy_kwargs={}),
    "plastic_ppo_rnn": dict(
        label="PlasticPPO MlpPlasticPolicy (rnn, 64)", policy_kwargs=dict(core="rnn", hidden_size=64)
    ),
}
#: ratio name -> (numerator, denominator) among :data:`ALGORITHMS`
RATIOS = {
    "plastic_over_ppo": ("plastic_ppo", "ppo_mlp"),
    "plastic_over_recurrent_ppo": ("plastic_ppo", "recurrent_ppo_lstm"),
    "plastic_over_recurrent_ppo_whole_sequence": ("plastic_ppo", "recurrent_ppo_lstm_whole_sequence"),
    "plastic_rnn_over_ppo": ("plastic_ppo_rnn", "ppo_mlp"),
    "plastic_rnn_over_recurrent_ppo": ("plastic_ppo_rnn", "recurrent_ppo_lstm"),
}
DEFAULT_TIMESTEPS = 65_536
_COLUMNS = (
    Column("algorithm", 62, "label", align="<"),
    Column("env-steps/s", 12, "steps_per_s", "{:.0f}"),
    Column("peak RSS MB", 12, "peak_rss_mb", "{:.0f}"),
    Column("state in buffer", 16, lambda r: r["buffer_state_bytes"] / 1024, "{:.0f} kB"),
    Column("scan backend", 12, "scan_backend", align="<"),
)


def _run_one(name: str, total_timesteps: int, n_envs: int, threads: int) -> dict[str, Any]:
    """Train one algorithm in this (child) process; returns its throughput and memory."""
    limit_threads(threads)
    # torch loads with these: only after the thread limit, which must come first in this fresh process
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(ENV_ID, n_envs=n_envs, seed=0)
    spec = ALGORITHMS[name]
    if name == "ppo_mlp":
        model = PPO("MlpPolicy", env, **PPO_HPARAMS)
    elif "module" in spec:
        RecurrentPPO = importlib.import_module(spec["module"]).RecurrentPPO  # noqa: N806 (a class)
        model = RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=spec["policy_kwargs"], **PPO_HPARAMS)
    else:
        # here, not above: the peers' peak RSS must not include the plastic agents' imports
        from neuromod_rl.agents import PlasticPPO

        model = PlasticPPO("MlpPlasticPolicy", env, policy_kwargs=spec["policy_kwargs"], **PPO_HPARAMS)
        core = model.policy.core_config
        spec = dict(spec, label=f"{spec['label']}: {core.core} {core.rule} {core.hidden_size}")
    start = time.perf_counter()
    model.learn(total_timesteps)
    seconds = time.perf_counter() - start
    buffer = model.rollout_buffer
    if hasattr(buffer, "state_nbytes"):
        state_bytes = buffer.state_nbytes()
    elif hasattr(buffer, "hidden_states_pi"):
        state_bytes = sum(
            getattr(buffer, k).nbytes
            for k in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
        )
    else:
        state_bytes = 0
    env.close()
    return dict(
        label=spec["label"],
        scan_backend=_scan_backend(model),
        env_steps=model.num_timesteps,
        seconds=seconds,
        steps_per_s=model.num_timesteps / seconds,
        peak_rss_mb=peak_rss_mb(),
        buffer_state_bytes=int(state_bytes),
    )


def _scan_backend(model) -> str | None:
    """The backend ``scan`` runs the plastic core on in training (``None`` for the SB3 peers)."""
    core = getattr(model.policy, "core", None)
    if core is None:
        return None
    # kept here with the other torch imports of the child, which must follow its thread limit
    from neuromod_rl.plasticity import default_backend

    return default_backend(core)


def bench_sb3(
    total_timesteps: int = DEFAULT_TIMESTEPS,
    n_envs: int = 8,
    json_path: str | None = "benchmarks/results/sb3.json",
    threads: int = 1,
    algorithms: tuple[str, ...] = tuple(ALGORITHMS),
) -> dict[str, Any]:
    """Measure the algorithms in one run (each in a fresh process); print the table, write JSON.

    Args:
        total_timesteps: env steps per algorithm (a multiple of ``n_steps * n_envs`` is exact).
        n_envs: parallel envs (``DummyVecEnv``).
        json_path: where to write the results (``None``: do not write).
        threads: torch threads per child (1: the SB3 CPU default setting on a shared machine).
        algorithms: a subset of :data:`ALGORITHMS` keys.
    """
    check_choices(algorithms, ALGORITHMS)
    if total_timesteps < 1 or n_envs < 1:
        raise ValueError(f"total_timesteps and n_envs must be positive, got {total_timesteps}, {n_envs}")
    results = {name: in_fresh_process(_run_one, name, total_timesteps, n_envs, threads) for name in algorithms}
    ratios = {
        name: results[a]["steps_per_s"] / results[b]["steps_per_s"]
        for name, (a, b) in RATIOS.items()
        if a in results and b in results
    }
    report = dict(
        env=ENV_ID,
        n_envs=n_envs,
        total_timesteps=total_timesteps,
        hyperparameters=PPO_HPARAMS,
        torch_threads=threads,
        cpu_count=os.cpu_count(),
        results=results,
        ratios=ratios,
    )
    print_table(
        f"{ENV_ID}, {n_envs} envs, {total_timesteps} steps each, hyperparameters {PPO_HPARAMS}",
        _COLUMNS, results.values(), ratios, ratio_fmt="{:.2f}x",
    )
    write_report(report, json_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench sb3", description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=DEFAULT_TIMESTEPS, help="env steps per algorithm")
    parser.add_argument("--n-envs", type=int, default=8)
    add_process_arguments(parser, "benchmarks/results/sb3.json", ALGORITHMS)
    args = parser.parse_args(argv)
    bench_sb3(args.timesteps, args.n_envs, args.json or None, args.threads, tuple(args.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
