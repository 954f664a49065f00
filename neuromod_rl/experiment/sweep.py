"""``neuromod-rl sweep``: one config over seeds and a hyperparameter space, on Ray Tune.

Any config (PPO, A2C, RecurrentPPO, ES, ...) is trained through the normal workflow, so every run is
an ordinary run directory (config, checkpoints, monitor, TensorBoard, W&B) that ``eval``,
``report`` and ``compare`` read. A Tune *trial* is one point of the space trained with every seed:
the seeds advance together in ``rungs`` segments (``train``, then ``train --resume`` to the next
budget: the exact-resume machinery), and after each segment the trial reports the mean over seeds of
``metric`` (read from each run's ``metrics.json``). Optuna's TPE proposes the points; ASHA stops
the trials whose score trails at a rung. Without ``--search`` there is a single trial: the config
itself over the seeds.

The search space is a YAML file of config keys (dotted, as for ``--set``) and distributions::

    samples: 8                         # points to try (--samples overrides)
    metric: train/mean_return_last_100 # <section>/<key> of metrics.json (--metric overrides)
    mode: max
    space:
      hyperparameters.learning_rate: {loguniform: [1.0e-4, 3.0e-3]}
      hyperparameters.n_steps: {choice: [50, 100, 200]}
      policy_kwargs.hidden_size: {randint: [16, 65]}      # upper bound excluded
      hyperparameters.gamma: {uniform: [0.9, 0.99]}

Everything lands in ``<runs-dir>/sweep-<name>-<stamp>/``: the runs (``<name>-t<trial>-...``), Tune's
own files (``tune/``), ``sweep.json`` (every trial: point, score per rung, run directories, whether
ASHA stopped it) and ``compare/compare.md`` (``neuromod-rl compare`` over all runs, one group per
trial). On a multi-node cluster ``--runs-dir`` must be a filesystem every node mounts at the same
path. ES configs run with ``num_actors: 0`` inside a trial unless they set it: the trial already
holds its CPUs (``--cpus-per-trial``).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import statistics
import sys
from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import read_json, write_json

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform")
DEFAULT_METRIC = "train/mean_return_last_100"


# ------------------------------------------------------------------------------ the search space
def load_space(path: str | Path) -> dict[str, Any]:
    """Read and check a search-space file (see the module docstring)."""
    # config imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import load_yaml

    data = load_yaml(path)
    allowed = {"space", "samples", "metric", "mode"}
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or not data["space"]:
        raise UserError(f"search space {path}: expected a mapping with a non-empty `space:` of config keys, e.g. "
                        "space: {hyperparameters.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}")  # fmt: skip
    if set(data) - allowed:
        raise UserError(f"search space {path}: unknown keys {sorted(set(data) - allowed)}; allowed: {sorted(allowed)}")
    for key, dist in data["space"].items():
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise UserError(f"search space {path}: `{key}` must be one of {{name: args}} with name in "
                            f"{list(DISTRIBUTIONS)}, e.g. {{uniform: [0.9, 0.99]}}; got {dist!r}")  # fmt: skip
        name, args = next(iter(dist.items()))
        n_args = {"choice": len(args) if isinstance(args, list) else 0, "quniform": 3}.get(name, 2)
        if not isinstance(args, list) or not args or len(args) != n_args:
            raise UserError(f"search space {path}: `{key}: {{{name}: ...}}` needs a list of "
                            f"{'values' if name == 'choice' else 'bounds'}, got {args!r}")  # fmt: skip
    return data


def _example_point(space: dict[str, Any]) -> dict[str, Any]:
    """One value per key (the first choice, or the lower bound), to validate the keys early."""
    out = {}
    for key, dist in space.items():
        name, args = next(iter(dist.items()))
        out[key] = args[0]
    return out


def tune_space(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune  # Ray Tune: heavy optional dependency (the sweep extra), only when a sweep runs

    make = {"choice": lambda a: tune.choice(a), "uniform": lambda a: tune.uniform(*a),
            "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a),
            "quniform": lambda a: tune.quniform(*a)}  # fmt: skip
    return {key: make[name](args) for key, dist in space.items() for name, args in dist.items()}


def apply_point(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each dotted key of ``point`` set (as ``--set`` would)."""
    data = copy.deepcopy(base)
    for key, value in point.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value.item() if hasattr(value, "item") else value  # numpy scalars -> YAML-friendly
    return data


# ------------------------------------------------------------------------------ one trial
def _metric_value(run_dir: Path, metric: str) -> float:
    section, _, key = metric.partition("/")
    value = (read_json(Path(run_dir) / "metrics.json", {}) or {}).get(section, {}).get(key)
    if value is None:
        raise UserError(f"run {run_dir} has no metric {metric!r} in metrics.json; use --metric section/key, e.g. "
                        f"{DEFAULT_METRIC}")  # fmt: skip
    return float(value)


def _trained_steps(run_dir: Path) -> int:
    return int((read_json(Path(run_dir) / "metrics.json", {}) or {}).get("train", {}).get("num_timesteps", 0))


def run_trial(point: dict[str, Any], *, base: dict[str, Any], seeds: list[int], rungs: int, runs_dir: str,
              metric: str, wandb: Any, label: str | None = None) -> list[float]:
    """Train ``base`` + ``point`` with every seed, in ``rungs`` segments; after each, report the mean
    score to Tune (inside a trial) and return the scores of every rung."""
    # config and train import torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import validate
    from neuromod_rl.experiment.train import TrainOptions, resume, train

    in_tune = label is None
    if in_tune:
        from ray import tune  # Ray Tune: heavy optional dependency, only inside a trial

        label = "t" + tune.get_context().get_trial_id().rsplit("_", 1)[-1]  # "<experiment>_00003" -> t00003
    data = apply_point(base, point)
    data["name"] = f"{base['name']}-{label}"[:80]
    if data.get("algo") == "es":
        data.setdefault("hyperparameters", {}).setdefault("num_actors", 0)
    opts = TrainOptions(runs_dir=Path(runs_dir), wandb=wandb, progress=False)
    total, run_dirs, scores = int(data["n_timesteps"]), [None] * len(seeds), []
    for rung in range(1, rungs + 1):
        target = max(1, total * rung // rungs)
        for i, seed in enumerate(seeds):
            if run_dirs[i] is None:
                result = train(validate({**data, "seed": seed, "n_timesteps": target}, "sweep trial"), opts)
            elif _trained_steps(run_dirs[i]) < target:
                result = resume(run_dirs[i], [f"n_timesteps={target}"], opts)
            else:
                continue
            result.wandb.finish()
            run_dirs[i] = result.run.path
        values = [_metric_value(d, metric) for d in run_dirs]
        scores.append(statistics.fmean(values))
        if in_tune:
            tune.report({"score": scores[-1], "rung": rung, "run_dirs": "\n".join(str(d) for d in run_dirs)})
    return scores


# ------------------------------------------------------------------------------ the sweep
def sweep(config: str | None, seeds: int, space_path: str | None, samples: int | None, rungs: int, metric: str | None,
          mode: str | None, runs_dir: str, overrides: list[str], ray_address: str | None, cpus_per_trial: float,
          max_concurrent: int | None, wandb: Any, seed: int = 0) -> Path:
    """Run the sweep; return the sweep directory (see the module docstring)."""
    # config imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import check_semantics, load_config, validate

    cfg = load_config(config, overrides)  # validates the base config fully
    base = cfg.model_dump()
    space = load_space(space_path) if space_path else {"space": {}}
    samples = samples or space.get("samples") or (8 if space["space"] else 1)
    metric, mode = metric or space.get("metric") or DEFAULT_METRIC, mode or space.get("mode") or "max"
    if mode not in ("max", "min"):
        raise UserError(f"--mode {mode!r} is not valid; allowed values: ['max', 'min']")
    if "/" not in metric:
        raise UserError(f"--metric {metric!r} must be <section>/<key> of metrics.json, e.g. {DEFAULT_METRIC}")
    if seeds < 1 or rungs < 1 or samples < 1:
        raise UserError("--seeds, --rungs and --samples must be positive integers")
    if space["space"]:  # every key must make a valid config (caught here, not inside a trial)
        example = apply_point(base, _example_point(space["space"]))
        check_semantics(validate(example, f"{space_path} applied to {config}"), str(space_path))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (Path(runs_dir) / f"sweep-{cfg.name}-{stamp}").resolve()
    out.mkdir(parents=True)
    if wandb.enabled and not wandb.group:
        wandb.group = out.name
    results = _run_tune(base, space["space"], list(range(cfg.seed, cfg.seed + seeds)), samples, rungs, metric, mode,
                        out, ray_address, cpus_per_trial, max_concurrent, wandb, seed)  # fmt: skip
    return _summarize(out, results, metric, mode, base["name"])


def _run_tune(base, space, seeds, samples, rungs, metric, mode, out: Path, ray_address, cpus_per_trial,
              max_concurrent, wandb, seed) -> list[dict[str, Any]]:
    # the agents package imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.agents.es.ray_cluster import connect

    connect(ray_address)
    # Ray Tune: heavy optional dependency (the sweep extra), only when a sweep runs
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, seeds=seeds, rungs=rungs, runs_dir=str(out), metric=metric,
                             wandb=wandb),
        {"cpu": cpus_per_trial},
    )  # fmt: skip
    search_alg = None
    if space:
        from ray.tune.search.optuna import OptunaSearch  # Optuna: heavy optional dependency (the sweep extra)

        search_alg = OptunaSearch(seed=seed)
    scheduler = ASHAScheduler(time_attr="rung", max_t=rungs, grace_period=1, reduction_factor=2) if rungs > 1 else None
    tuner = tune.Tuner(
        trainable,
        param_space=tune_space(space),
        tune_config=tune.TuneConfig(metric="score", mode=mode, search_alg=search_alg, scheduler=scheduler,
                                    num_samples=samples, max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0),
    )  # fmt: skip
    grid = tuner.fit()
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        trials.append({
            "point": {k: v for k, v in (result.config or {}).items()},
            "score": metrics.get("score"),
            "rungs_done": metrics.get("rung", 0),
            "stopped_early": bool(metrics.get("rung", 0) < rungs and result.error is None),
            "score_per_rung": [] if history is None or "score" not in history else history["score"].tolist(),
            "run_dirs": [d for d in metrics.get("run_dirs", "").split("\n") if d],
            "error": None if result.error is None else str(result.error).splitlines()[0],
        })  # fmt: skip
    return trials


def _summarize(out: Path, trials: list[dict[str, Any]], metric: str, mode: str, name: str) -> Path:
    # compare imports torch, SB3 and matplotlib: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.compare import compare

    ranked = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["score"], reverse=mode == "max")
    write_json(out / "sweep.json", {"metric": metric, "mode": mode, "trials": ranked + [t for t in trials
                                                                                           if t["score"] is None]})
    failed = [t for t in trials if t["error"]]
    if failed:
        print(f"{len(failed)} trial(s) failed, first error: {failed[0]['error']}", file=sys.stderr)
    run_dirs = [d for t in ranked for d in t["run_dirs"]]
    if run_dirs:
        report = compare(run_dirs, out / "compare", progress=False)
        print(f"Comparison: {report}", file=sys.stderr)
    if ranked:
        best = ranked[0]
        print(f"Best of {len(trials)} trial(s) of {name}: {metric} {best['score']:.4g} with {best['point']}",
              file=sys.stderr)  # fmt: skip
    return out


# ------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (default: the embedded default config)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per point: config seed, seed+1, ... (default 1)")
    p.add_argument("--search", metavar="SPACE.yaml", help="search space (config keys and distributions)")
    p.add_argument("--samples", type=int, default=None, help="points to try (default: the space file's, else 8)")
    p.add_argument("--rungs", type=int, default=4, help="segments of training per trial; ASHA may stop a trial "
                   "after each (default 4)")
    p.add_argument("--metric", default=None,
                   help=f"<section>/<key> of metrics.json to optimise (default {DEFAULT_METRIC})")
    p.add_argument("--mode", choices=["max", "min"], default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs-dir", default="runs", help="where the sweep directory goes (default: runs/)")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster: auto | HOST:PORT (default: local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Tune reserves per trial (default 1)")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the Optuna sampler")


def cmd_sweep(args, wandb) -> int:
    # the agents package imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.agents.es.ray_cluster import check_address

    try:
        check_address(args.ray_address)
    except ValueError as err:
        raise UserError(str(err).replace("ray_address=", "--ray-address ")) from None
    out = sweep(args.config, args.seeds, args.search, args.samples, args.rungs, args.metric, args.mode, args.runs_dir,
                args.overrides, args.ray_address, args.cpus_per_trial, args.max_concurrent, wandb, args.search_seed)
    print(f"Sweep: {out}")
    return 0
