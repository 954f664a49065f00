"""Benchmark ``neuromod-rl bench offpolicy``: PlasticSAC against SB3's SAC ``MlpPolicy``.

HalfCheetah-v5, one env, identical SAC hyperparameters (:data:`SAC_HPARAMS`: SB3's defaults, one
gradient step per env step) and the same MLPs after the core. Each algorithm runs in a fresh child
process with ``--threads`` torch threads: a warm-up of ``learning_starts`` random steps (not timed),
then ``--timesteps`` steps, each with its gradient update, timed over ``learn`` (acting *and*
training). Replay memory is reported per stored step from the buffers' own arrays (capacity
``buffer_size``): SB3's transition arrays, and for PlasticSAC also its episode-start flags and its
plastic states, stored once per ``sequence_length`` steps; next to it, what storing the state at
every step would cost.

Targets: PlasticSAC >= 0.5x SB3 SAC's env-steps/s; stored-state memory <= 1/L of a
per-step state store. Prints a table with the ratios and writes JSON.
Run: ``neuromod-rl bench offpolicy --timesteps 2000``.
"""

from __future__ import annotations

import argparse
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
#: identical for both algorithms (SB3's SAC defaults; a smaller buffer, which only sets the capacity)
SAC_HPARAMS: dict[str, Any] = dict(
    learning_rate=3e-4, buffer_size=100_000, batch_size=256, learning_starts=1_000, train_freq=1, gradient_steps=1,
    gamma=0.99, tau=0.005, policy_kwargs=dict(net_arch=[256, 256]), seed=0,
)
PLASTIC_KWARGS: dict[str, Any] = dict(rule="neuromod", hidden_size=64)  # the default core
SEQUENCE_LENGTH = 32
ALGORITHMS: dict[str, str] = {
    "sac_mlp": "SB3 SAC MlpPolicy",
    "plastic_sac": f"PlasticSAC MlpPlasticPolicy (neuromod, default core, 64, L={SEQUENCE_LENGTH})",
}
_COLUMNS = (
    Column("algorithm", 62, "label", align="<"),
    Column("env-steps/s", 12, "steps_per_s", "{:.1f}"),
    Column("replay B/step", 14, lambda r: r["replay"]["total_bytes_per_step"], "{:.1f}"),
    Column("of which state", 15, lambda r: r["replay"]["state_bytes_per_step"], "{:.1f}"),
)


def _buffer_memory(buffer) -> dict[str, float]:
    """Bytes per stored step (``buffer_size * n_envs`` capacity) of a replay buffer's arrays."""
    steps = buffer.buffer_size * buffer.n_envs
    transition = 0
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        value = getattr(buffer, name, None)
        if value is not None:
            transition += value.nbytes
    out = {"transition_bytes_per_step": transition / steps, "state_bytes_per_step": 0.0}
    if hasattr(buffer, "state_nbytes"):
        out["episode_start_bytes_per_step"] = buffer.episode_starts.nbytes / steps
        out["state_bytes_per_step"] = buffer.state_nbytes() / steps
        # the same states kept at every step, as a per-step recurrent buffer would
        out["per_step_state_store_bytes_per_step"] = float(buffer.start_states.shape[-1] * 4)
        out["stored_states"] = int(buffer.states_stored)
    held = [v for k, v in out.items() if k.endswith("_per_step") and not k.startswith("per_step_state")]
    out["total_bytes_per_step"] = sum(held)
    return out


def _run_one(name: str, timesteps: int, threads: int) -> dict[str, Any]:
    """Train one algorithm in this (child) process; returns its throughput and replay memory."""
    limit_threads(threads)
    # torch loads with these: only after the thread limit, which must come first in this fresh process
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from neuromod_rl.agents import PlasticSAC

    env = make_vec_env(ENV_ID, n_envs=1, seed=0)
    hp = {**SAC_HPARAMS, "policy_kwargs": dict(SAC_HPARAMS["policy_kwargs"])}
    if name == "sac_mlp":
        model = SAC("MlpPolicy", env, **hp)
    else:
        hp["policy_kwargs"].update(PLASTIC_KWARGS)
        model = PlasticSAC("MlpPlasticPolicy", env, sequence_length=SEQUENCE_LENGTH, **hp)
    model.learn(model.learning_starts)  # random warm-up, no updates: not timed
    start_steps, updates = model.num_timesteps, model._n_updates
    start = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    steps = model.num_timesteps - start_steps
    env.close()
    return dict(
        label=ALGORITHMS[name],
        timed_env_steps=steps,
        gradient_steps=model._n_updates - updates,
        seconds=seconds,
        steps_per_s=steps / seconds,
        peak_rss_mb=peak_rss_mb(),
        replay=_buffer_memory(model.replay_buffer),
    )


def bench_offpolicy(
    timesteps: int = 2_000,
    json_path: str | None = "benchmarks/results/offpolicy.json",
    threads: int = 1,
    algorithms: tuple[str, ...] = tuple(ALGORITHMS),
) -> dict[str, Any]:
    """Measure the algorithms in one run (each in a fresh process); print the table, write JSON.

    Args:
        timesteps: timed env steps per algorithm (each with one gradient step), after the warm-up.
        json_path: where to write the results (``None``: do not write).
        threads: torch threads per child.
        algorithms: a subset of :data:`ALGORITHMS` keys.
    """
    check_choices(algorithms, ALGORITHMS)
    if timesteps < 1 or threads < 1:
        raise ValueError(f"timesteps and threads must be positive, got {timesteps}, {threads}")
    results = {name: in_fresh_process(_run_one, name, timesteps, threads) for name in algorithms}
    ratios: dict[str, float] = {}
    if "plastic_sac" in results:
        replay = results["plastic_sac"]["replay"]
        ratios["stored_state_over_per_step_store"] = (
            replay["state_bytes_per_step"] / replay["per_step_state_store_bytes_per_step"]
        )
        if "sac_mlp" in results:
            ratios["plastic_over_sac_steps_per_s"] = (
                results["plastic_sac"]["steps_per_s"] / results["sac_mlp"]["steps_per_s"]
            )
            ratios["plastic_over_sac_replay_bytes"] = (
                replay["total_bytes_per_step"] / results["sac_mlp"]["replay"]["total_bytes_per_step"]
            )
    report = dict(
        env=ENV_ID,
        timesteps=timesteps,
        hyperparameters={**SAC_HPARAMS, "plastic_policy_kwargs": PLASTIC_KWARGS, "sequence_length": SEQUENCE_LENGTH},
        targets={
            "plastic_over_sac_steps_per_s": ">= 0.5",
            "stored_state_over_per_step_store": f"<= 1/{SEQUENCE_LENGTH}",
        },
        torch_threads=threads,
        cpu_count=os.cpu_count(),
        results=results,
        ratios=ratios,
    )
    print_table(
        f"{ENV_ID}, 1 env, {timesteps} timed steps each (one gradient step per env step)",
        _COLUMNS, results.values(), ratios, report["targets"],
    )
    write_report(report, json_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench offpolicy", description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=2_000, help="timed env steps per algorithm")
    add_process_arguments(parser, "benchmarks/results/offpolicy.json", ALGORITHMS)
    args = parser.parse_args(argv)
    bench_offpolicy(args.timesteps, args.json or None, args.threads, tuple(args.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
