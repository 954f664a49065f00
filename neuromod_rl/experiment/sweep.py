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

The space is checked before Ray starts: its settings and bounds, and every key at each extreme of
its distribution (each choice, both bounds) is applied to the config, which is validated and built
(env and model). A failed trial is listed with its own exception; a sweep none of whose trials
succeeded is a :class:`UserError` (exit code 2).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import math
import re
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import read_json, write_json
from neuromod_rl.extras import require

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform")
DEFAULT_METRIC = "train/mean_return_last_100"
# every trial trains the seeds of --seeds and names its runs after the config and the trial: a space
# setting these would be overwritten without a word
NOT_SEARCHABLE = {"seed": "every point is trained with the seeds of --seeds (the config's seed, seed+1, ...)",
                  "name": "each run is named after the config and its trial"}  # fmt: skip
_KEY = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ------------------------------------------------------------------------------ the search space
def load_space(path: str | Path) -> dict[str, Any]:
    """Read and check a search-space file (see the module docstring)."""
    # config imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import load_yaml

    data = load_yaml(path, "search space")
    allowed = {"space", "samples", "metric", "mode"}
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or not data["space"]:
        raise UserError(f"search space {path}: expected a mapping with a non-empty `space:` of config keys, e.g. "
                        "space: {hyperparameters.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}")  # fmt: skip
    if set(data) - allowed:
        raise UserError(f"search space {path}: unknown keys {sorted(set(data) - allowed)}; allowed: {sorted(allowed)}")
    for key, dist in data["space"].items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise UserError(f"search space {path}: `{key}` is not a config key; write dotted keys as for --set, "
                            "e.g. hyperparameters.gamma")  # fmt: skip
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise UserError(f"search space {path}: `{key}` cannot be searched: {NOT_SEARCHABLE[key.split('.')[0]]}. "
                            f"Remove it from `space:`{' and use --seeds' if key == 'seed' else ''}.")  # fmt: skip
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise UserError(f"search space {path}: `{key}` must be one of {{name: args}} with name in "
                            f"{list(DISTRIBUTIONS)}, e.g. {{uniform: [0.9, 0.99]}}; got {dist!r}")  # fmt: skip
        name, args = next(iter(dist.items()))
        n_args = {"choice": len(args) if isinstance(args, list) else 0, "quniform": 3}.get(name, 2)
        if not isinstance(args, list) or not args or len(args) != n_args:
            raise UserError(f"search space {path}: `{key}: {{{name}: ...}}` needs a list of "
                            f"{'values' if name == 'choice' else 'bounds'}, got {args!r}")  # fmt: skip
        if name != "choice":
            _check_bounds(path, key, name, args)
    _check_settings(path, data)
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_bounds(path: str | Path, key: str, name: str, args: list[Any]) -> None:
    """Refuse bounds Ray or Optuna would choke on inside a trial (or sample nonsense from)."""
    entry = f"search space {path}: `{key}` ({{{name}: {args!r}}})"
    if name == "randint" and not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise UserError(f"{entry} needs integers as bounds, e.g. {{randint: [16, 65]}} (upper bound excluded)")
    if not all(_is_number(a) for a in args):
        raise UserError(f"{entry} needs finite numbers as bounds, e.g. {{{name}: [0.9, 0.99]}}; "
                        "use {choice: [...]} for other values")  # fmt: skip
    low, high = args[0], args[1]
    if not low < high:
        raise UserError(f"{entry}: its lower bound must be below the upper bound"
                        f"{' (which randint excludes)' if name == 'randint' else ''}")  # fmt: skip
    if name == "loguniform" and low <= 0:
        raise UserError(f"{entry} needs bounds above 0 (it samples on a log scale), e.g. [1.0e-4, 1.0e-2]")
    if name == "quniform" and args[2] <= 0:
        raise UserError(f"{entry} needs a step above 0 as its third value, e.g. [0.9, 0.99, 0.01]")


def _check_settings(path: str | Path, data: dict[str, Any]) -> None:
    samples, metric, mode = data.get("samples"), data.get("metric"), data.get("mode")
    if "samples" in data and not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1):
        raise UserError(f"search space {path}: `samples` must be a positive integer (points to try), got {samples!r}")
    if "metric" in data and not (isinstance(metric, str) and "/" in metric):
        raise UserError(f"search space {path}: `metric` must be <section>/<key> of metrics.json, e.g. "
                        f"{DEFAULT_METRIC}; got {metric!r}")  # fmt: skip
    if "mode" in data and mode not in ("max", "min"):
        raise UserError(f"search space {path}: `mode` must be 'max' or 'min', got {mode!r}")


def _extremes(name: str, args: list[Any]) -> list[Any]:
    """The values a distribution can give at its edges: every choice, or both bounds (randint's upper
    bound is excluded)."""
    if name == "choice":
        return list(args)
    return [args[0], args[1] - 1 if name == "randint" else args[1]]


def check_points(base: dict[str, Any], space: dict[str, Any], path: str | Path, config: str | None) -> None:
    """Build the config and the model for every key at each of its extremes (the others as in
    ``base``), so that a key or value the config, the policy or the env refuses stops the sweep
    before Ray starts rather than failing every trial."""
    # train imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import check_semantics, validate
    from neuromod_rl.experiment.train import check_buildable

    points = [(key, value) for key, dist in space.items() for name, args in dist.items()
              for value in _extremes(name, args)] or [(None, None)]  # fmt: skip
    source = config or "the default config"
    for key, value in points:
        try:
            data = trial_config(base, {} if key is None else {key: value})
        except UserError as err:  # a key path through a value that is not a mapping
            raise UserError(f"search space {path}: {err}") from None
        try:
            cfg = validate(data, source)
            check_semantics(cfg, source)
            check_buildable(cfg)
        except UserError as err:
            if key is None:
                raise
            raise UserError(f"search space {path}: `{key}` cannot take the value {value!r}: {err}") from None


def trial_config(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """What a trial trains (before its seed and budget are set): ``base`` with ``point`` applied."""
    data = apply_point(base, point)
    if data.get("algo") == "es":
        data.setdefault("hyperparameters", {}).setdefault("num_actors", 0)
    return data


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
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                parent = ".".join(parts[: i + 1])
                raise UserError(f"`{key}`: `{parent}` is {child!r}, not a mapping, so it has no key "
                                f"`{parts[i + 1]}`. Search `{parent}` itself instead.")  # fmt: skip
            node = child
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
    score to Tune (inside a trial) and return the scores of every rung (Tune calls :func:`tune_trial`)."""
    # config and train import torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import validate
    from neuromod_rl.experiment.train import TrainOptions, resume, train

    in_tune = label is None
    if in_tune:
        from ray import tune  # Ray Tune: heavy optional dependency, only inside a trial

        label = "t" + tune.get_context().get_trial_id().rsplit("_", 1)[-1]  # "<experiment>_00003" -> t00003
    data = trial_config(base, point)
    data["name"] = f"{base['name']}-{label}"[:80]
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


def tune_trial(point: dict[str, Any], **kwargs: Any) -> None:
    """:func:`run_trial` as a Tune trainable: it reports each rung itself, and Tune takes only a number
    or a dict as a return value (a list fails the trial after its last report)."""
    run_trial(point, **kwargs)


def error_text(err: BaseException) -> str:
    """A trial's exception as one plain line: the exception raised in the trial rather than Ray's
    wrapper around it (whose first line is a coloured header naming the worker), with its type unless
    it is a :class:`UserError`, whose message stands alone."""
    while isinstance(getattr(err, "cause", None), BaseException):  # RayTaskError keeps the trial's own error
        err = err.cause
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    return " ".join(_ANSI.sub("", text).split())


# ------------------------------------------------------------------------------ the sweep
def sweep(config: str | None, seeds: int, space_path: str | None, samples: int | None, rungs: int, metric: str | None,
          mode: str | None, runs_dir: str, overrides: list[str], ray_address: str | None, cpus_per_trial: float,
          max_concurrent: int | None, wandb: Any, seed: int = 0) -> Path:
    """Run the sweep; return the sweep directory (see the module docstring). Without Ray Tune (or, for a
    search space, Optuna) it raises :class:`~neuromod_rl.extras.MissingExtraError` before any work."""
    # config imports torch and SB3: not when `neuromod-rl` builds its parser (imports this module)
    from neuromod_rl.experiment.config import load_config

    # imported, not only looked up: Ray without its `tune` dependencies is installed but fails to import
    require("sweep", "a sweep", ("ray.tune",), load=True)
    if space_path:
        require("sweep", "a sweep with a search space (--search)", ("optuna",), load=True)

    cfg = load_config(config, overrides)  # validates the base config fully
    base = cfg.model_dump()
    space = load_space(space_path) if space_path else {"space": {}}
    if samples is None:
        samples = space.get("samples") or (8 if space["space"] else 1)
    metric, mode = metric or space.get("metric") or DEFAULT_METRIC, mode or space.get("mode") or "max"
    if mode not in ("max", "min"):
        raise UserError(f"--mode {mode!r} is not valid; allowed values: ['max', 'min']")
    if "/" not in metric:
        raise UserError(f"--metric {metric!r} must be <section>/<key> of metrics.json, e.g. {DEFAULT_METRIC}")
    if seeds < 1 or rungs < 1 or samples < 1:
        raise UserError(f"--seeds, --rungs and --samples must be positive integers, got {seeds}, {rungs} and {samples}")
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be a positive integer (trials at once), got {max_concurrent}")
    if not (cpus_per_trial > 0 and math.isfinite(cpus_per_trial)):
        raise UserError(f"--cpus-per-trial must be a positive number of CPUs, e.g. 1 or 0.5; got {cpus_per_trial}")
    check_points(base, space["space"], space_path, config)  # here, not once per trial
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (Path(runs_dir) / f"sweep-{cfg.name}-{stamp}").resolve()
    out.mkdir(parents=True)
    if wandb.enabled and not wandb.group:
        wandb.group = out.name
    try:
        results = _run_tune(base, space["space"], list(range(cfg.seed, cfg.seed + seeds)), samples, rungs, metric,
                            mode, out, ray_address, cpus_per_trial, max_concurrent, wandb, seed)  # fmt: skip
    except BaseException:
        if not any(out.iterdir()):  # Ray never started (a cluster nobody answers): leave nothing behind
            out.rmdir()
        raise
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
        tune.with_parameters(tune_trial, base=base, seeds=seeds, rungs=rungs, runs_dir=str(out), metric=metric,
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
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        grid = tuner.fit()
    finally:  # Tune installs its own Ctrl-C handler and leaves it behind; the caller's are put back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
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
            "error": None if result.error is None else error_text(result.error),
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
        print(f"{len(failed)} of {len(trials)} trial(s) failed:", file=sys.stderr)
        for trial in failed:
            print(f"  {trial['point'] or 'the config'}: {trial['error']}", file=sys.stderr)
    run_dirs = [d for t in ranked for d in t["run_dirs"]]
    if run_dirs:
        report = compare(run_dirs, out / "compare", progress=False)
        print(f"Comparison: {report}", file=sys.stderr)
    if trials and len(failed) == len(trials):
        causes = list(dict.fromkeys(t["error"] for t in failed))
        raise UserError(f"every trial ({len(trials)}) failed, so the sweep has no result: {'; '.join(causes[:5])}"
                        f"{f' (and {len(causes) - 5} other errors)' if len(causes) > 5 else ''}. Each trial's error is "
                        f"in {out / 'sweep.json'}; fix the cause and run the sweep again.")  # fmt: skip
    succeeded = [t for t in ranked if not t["error"]]
    if succeeded:
        best = succeeded[0]
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
