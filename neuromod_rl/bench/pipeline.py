"""Benchmark ``neuromod-rl bench pipeline``: end-to-end PlasticPPO training throughput, SB3's VecEnv path
against the batched, device-resident one.

What a user's ``learn`` costs, rollouts *and* updates, in env-steps/s, for PlasticPPO on the Backpropamine
tasks ``CueReward-v0`` and ``Maze-v0``, two policy sizes each:

* ``default``: ``MlpPlasticPolicy`` with no ``policy_kwargs`` (the default core and heads);
* ``paper``: the paper's plastic RNN with linear heads, hidden 200 on the cue task (rule ``neuromod``)
  and 100 on the maze (rule ``retroactive``), as the shipped configs;

and two paths, measured in the same run:

* ``sb3``: the Gymnasium envs in SB3's ``DummyVecEnv`` (numpy per step, the policy on ``device``);
* ``batched``: ``BatchedVecEnv(make_batched(task, n_envs, device))``, which PlasticPPO trains through
  its device-resident path (env, rollout, buffer and update on ``device``, no per-step host copy).

Hyperparameters are the shipped configs' (:data:`TASKS`): ``n_steps`` is the episode length, minibatches
of 8 whole episodes, 4 epochs. Each row runs one untimed rollout and update first (CUDA context,
kernel compilation, allocator), then times ``learn`` over ``--steps`` env steps (rounded up to whole
rollouts), each row in a fresh process unless ``--in-process``. Rows run on the CPU, and on CUDA when
a GPU is visible; a row that cannot run says why. Ratios: ``batched`` over ``sb3`` on the same device
and envs, and the GPU's ``batched`` over the CPU's ``sb3``. Writes JSON.

    neuromod-rl bench pipeline                         # every row, 16 envs, CPU (and CUDA when present)
    neuromod-rl bench pipeline --envs 16 256 --devices cuda
    neuromod-rl bench pipeline --smoke --json ''       # seconds: 2 envs, one 8-step rollout per row
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from typing import Any

from neuromod_rl.bench.harness import Column, in_fresh_process, limit_threads, peak_rss_mb, print_table, write_report

DEFAULT_JSON = os.path.join("benchmarks", "results", "pipeline.json")
#: task -> Gymnasium id, PPO hyperparameters (the shipped configs'), the paper's policy
TASKS: dict[str, dict[str, Any]] = {
    "cue": dict(
        env_id="neuromod_rl/CueReward-v0",
        hyperparameters=dict(n_steps=120, batch_size=960, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.03,
                             vf_coef=0.1, max_grad_norm=4.0),
        paper=dict(rule="neuromod", core="rnn", hidden_size=200, modulation="scalar", net_arch=[]),
    ),
    "maze": dict(
        env_id="neuromod_rl/Maze-v0",
        hyperparameters=dict(n_steps=200, batch_size=1600, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.03,
                             vf_coef=0.1, max_grad_norm=4.0),
        paper=dict(rule="retroactive", core="rnn", hidden_size=100, modulation="scalar", net_arch=[]),
    ),
}
SIZES = ("default", "paper")
PATHS = ("sb3", "batched")
DEVICES = ("cpu", "cuda")
DEFAULT_STEPS = 32_000
#: ``--smoke``: rollouts of this many steps per env (episodes are cut there; the measurement is not meaningful)
SMOKE_N_STEPS = 8
NO_CUDA = "not run: no CUDA device visible to torch"

_COLUMNS = (
    Column("task", 4, "task", align="<"),
    Column("size", 7, "size", align="<"),
    Column("policy", 24, "policy", align="<"),
    Column("path", 7, "path", align="<"),
    Column("device", 6, "device", align="<"),
    Column("envs", 5, "n_envs"),
    Column("env-steps/s", 11, "steps_per_s", "{:.0f}"),
    Column("rollout s", 9, "rollout_seconds", "{:.2f}"),
    Column("update s", 9, "update_seconds", "{:.2f}"),
    Column("", 0, lambda r: r.get("error", ""), align="<"),
)


def _row_spec(task: str, size: str, path: str, device: str, n_envs: int, steps: int, smoke: bool) -> dict[str, Any]:
    spec = TASKS[task]
    hyper = dict(spec["hyperparameters"])
    if smoke:
        hyper.update(n_steps=SMOKE_N_STEPS, batch_size=2 * SMOKE_N_STEPS, n_epochs=1)
    policy_kwargs = dict(spec["paper"]) if size == "paper" else {}
    return dict(task=task, env_id=spec["env_id"], size=size, path=path, device=device, n_envs=n_envs, steps=steps,
                hyperparameters=hyper, policy_kwargs=policy_kwargs)


def _run_row(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train one row's model (in this process); returns its throughput."""
    limit_threads(threads)
    # torch loads with these: after the thread limit, which must come first in a fresh process
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from neuromod_rl.agents import PlasticPPO
    from neuromod_rl.envs.batched import BatchedVecEnv, make_batched
    from neuromod_rl.plasticity import default_backend

    device = spec["device"]
    row = {k: spec[k] for k in ("task", "size", "path", "device", "n_envs")}
    if device == "cuda" and not torch.cuda.is_available():
        return {**row, "error": NO_CUDA}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    class RolloutClock(BaseCallback):
        """Seconds spent collecting rollouts (the rest of ``learn`` is the update)."""

        def __init__(self):
            super().__init__()
            self.seconds, self._start = 0.0, 0.0

        def _on_rollout_start(self) -> None:
            sync()
            self._start = time.perf_counter()

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            sync()
            self.seconds += time.perf_counter() - self._start

    n_envs = spec["n_envs"]
    if spec["path"] == "batched":
        env = BatchedVecEnv(make_batched(spec["env_id"], n_envs, device=device))
    else:
        env = make_vec_env(spec["env_id"], n_envs=n_envs, seed=0)
    model = PlasticPPO("MlpPlasticPolicy", env, policy_kwargs=spec["policy_kwargs"], seed=0, device=device,
                       **spec["hyperparameters"])
    core = model.policy.core_config
    rollout = spec["hyperparameters"]["n_steps"] * n_envs
    model.learn(rollout)  # warm-up, untimed
    clock = RolloutClock()
    warm = model.num_timesteps
    sync()
    start = time.perf_counter()
    model.learn(spec["steps"], callback=clock, reset_num_timesteps=False)
    sync()
    seconds = time.perf_counter() - start
    steps = model.num_timesteps - warm
    return {
        **row,
        "policy": f"{core.core} {core.rule} {core.hidden_size}",
        "device_resident": type(model.rollout_buffer).__name__ == "DeviceSequenceRolloutBuffer",
        "scan_backend": default_backend(model.policy.core, device),
        "env_steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "rollout_seconds": clock.seconds,
        "update_seconds": seconds - clock.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }


def _measure(spec: dict[str, Any], threads: int, in_process: bool) -> dict[str, Any]:
    label = f"{spec['task']} {spec['size']} {spec['path']} {spec['device']} x{spec['n_envs']}"
    print(f"bench pipeline: {label} ...", file=sys.stderr, flush=True)
    keys = ("task", "size", "path", "device", "n_envs")
    if spec["device"] == "cuda" and not _cuda_available():
        return {**{k: spec[k] for k in keys}, "error": NO_CUDA}  # without starting a process
    try:
        return _run_row(spec, threads) if in_process else in_fresh_process(_run_row, spec, threads)
    except Exception as err:  # a row that fails (out of memory, a missing backend) is reported, the rest run
        return {**{k: spec[k] for k in keys}, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}


def _cuda_available() -> bool:
    import torch  # here: a fresh row process sets its thread limit before torch loads

    return torch.cuda.is_available()


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``batched`` over ``sb3`` env-steps/s on the same device (and the GPU's ``batched`` over the CPU's
    ``sb3``), per task, size and number of envs; rows that did not run are left out."""
    ok = {(r["task"], r["size"], r["n_envs"], r["path"], r["device"]): r["steps_per_s"] for r in rows
          if "error" not in r}
    out = []
    for (task, size, n_envs, path, device), value in ok.items():
        if path != "batched":
            continue
        bases = [(f"batched_{device}_over_sb3_{device}", device)]
        if device == "cuda":
            bases.append(("batched_cuda_over_sb3_cpu", "cpu"))
        for name, base_device in bases:
            base = ok.get((task, size, n_envs, "sb3", base_device))
            if base:
                out.append(dict(task=task, size=size, n_envs=n_envs, ratio=name, value=value / base))
    return out


def bench_pipeline(
    tasks: tuple[str, ...] = tuple(TASKS),
    sizes: tuple[str, ...] = SIZES,
    paths: tuple[str, ...] = PATHS,
    devices: tuple[str, ...] | None = None,
    envs: tuple[int, ...] = (16,),
    steps: int = DEFAULT_STEPS,
    threads: int = 1,
    smoke: bool = False,
    in_process: bool = False,
    json_path: str | None = DEFAULT_JSON,
) -> dict[str, Any]:
    """Measure every row; print the table and the ratios; write JSON; return the report.

    Args:
        tasks: keys of :data:`TASKS`.
        sizes: ``"default"`` and/or ``"paper"`` (see the module docstring).
        paths: ``"sb3"`` (DummyVecEnv of Gymnasium envs) and/or ``"batched"`` (BatchedVecEnv, device path).
        devices: ``"cpu"`` and/or ``"cuda"``; ``None``: the CPU, and CUDA when torch sees a GPU. A CUDA row
            without a GPU is reported as not run.
        envs: numbers of parallel envs (one set of rows each).
        steps: timed env steps per row, after one untimed rollout and update (rounded up to whole rollouts).
        threads: torch threads per row.
        smoke: 2 envs, 8-step rollouts, one timed rollout, one epoch (``envs`` and ``steps`` are ignored): a
            check that every row runs, in seconds, not a measurement.
        in_process: measure in this process instead of a fresh one per row (faster to start; the peak
            memory is then shared).
        json_path: where to write the report (``None``: nowhere).
    """
    for name, chosen, valid in (("tasks", tasks, TASKS), ("sizes", sizes, SIZES), ("paths", paths, PATHS),
                                ("devices", devices or (), DEVICES)):
        unknown = sorted(set(chosen) - set(valid))
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; valid choices: {list(valid)}")
    if steps < 1 or not envs or min(envs) < 1 or threads < 1:
        raise ValueError(f"steps, envs and threads must be positive, got {steps}, {list(envs)}, {threads}")
    if smoke:
        envs, steps = (2,), 2 * SMOKE_N_STEPS
    if devices is None:
        devices = ("cpu", "cuda") if _cuda_available() else ("cpu",)
    rows = [
        _measure(_row_spec(t, s, p, d, n, steps, smoke), threads, in_process)
        for t in tasks for s in sizes for d in devices for n in envs for p in paths
    ]
    gpu = None
    if "cuda" in devices:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    report = {
        "benchmark": "pipeline",
        "what": "PlasticPPO learn() env-steps/s (rollouts + updates): SB3 DummyVecEnv vs BatchedVecEnv (device path)",
        "date": datetime.date.today().isoformat(),
        "steps_per_row": steps,
        "smoke": smoke,
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "tasks": {t: {k: v for k, v in TASKS[t].items()} for t in tasks},
        "rows": rows,
        "ratios": ratios(rows),
    }
    title = f"\n{report['what']}; {steps} timed steps per row, {threads} torch thread(s), GPU: {gpu}"
    print_table(
        title, _COLUMNS, rows,
        {f"{q['task']} {q['size']} x{q['n_envs']} {q['ratio']}": q["value"] for q in report["ratios"]},
        ratio_fmt="{:.2f}x",
    )
    write_report(report, json_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl bench pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed env steps per row")
    parser.add_argument("--envs", type=int, nargs="+", default=[16], help="numbers of parallel envs")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--devices", nargs="+", choices=DEVICES, default=None,
                        help="default: cpu, and cuda when a GPU is visible")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row")
    parser.add_argument("--smoke", action="store_true",
                        help="2 envs, 8-step rollouts, one timed rollout, one epoch (ignores --envs and --steps): "
                        "every row runs, in seconds; not a measurement")
    parser.add_argument("--in-process", action="store_true", help="measure in this process, not a fresh one per row")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"output path ('' to skip; default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    bench_pipeline(tuple(args.tasks), tuple(args.sizes), tuple(args.paths),
                   None if args.devices is None else tuple(args.devices), tuple(args.envs), args.steps,
                   args.threads, args.smoke, args.in_process, args.json or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
