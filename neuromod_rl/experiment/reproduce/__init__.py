"""``neuromod-rl reproduce NAME``: re-run a study (one module per study, grouped by family).

Each study trains at a scale meant to fit 2 CPU cores (``--scale default``), or at a larger one
(``--scale paper``), over several seeds, and writes ``<out>/<name>.md`` with the exact command, the
seeds, settings, tables of medians and interquartile ranges, PNG plots, and whether each target claim
reproduced. ``--scale smoke`` runs in seconds and exists for the test suite. Per-seed results are
saved as they finish (``<out>/<name>.<scale>.runs.json``), so a stopped study resumes where it was.
Families: :mod:`.mujoco` (adaptation on MuJoCo bodies), :mod:`.backpropamine` (cue and maze),
:mod:`.memory` (memory tasks against recurrent baselines), :mod:`.metalearning` (learned update
rules). Shared helpers: :mod:`.common` (reports, figures), :mod:`.multiseed` (seeds, progress,
statistics), :mod:`.rl` (agents and runs).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from pathlib import Path

from neuromod_rl.experiment.reproduce.multiseed import StudyOptions

REPRODUCTIONS = {
    "gregor": "neuromod_rl.experiment.reproduce.metalearning.gregor",
    "blur": "neuromod_rl.experiment.reproduce.metalearning.blur",
    "l2l": "neuromod_rl.experiment.reproduce.metalearning.l2l",
    "pomdp": "neuromod_rl.experiment.reproduce.memory.pomdp",
    "core-sweep": "neuromod_rl.experiment.reproduce.memory.core_sweep",
    "crippled-cheetah": "neuromod_rl.experiment.reproduce.mujoco.crippled_cheetah",
    "crippled-ant": "neuromod_rl.experiment.reproduce.mujoco.crippled_ant",
    "cheetah-vel": "neuromod_rl.experiment.reproduce.mujoco.cheetah_vel",
    "bandit": "neuromod_rl.experiment.reproduce.memory.bandit",
    "cue": "neuromod_rl.experiment.reproduce.backpropamine.cue",
    "maze": "neuromod_rl.experiment.reproduce.backpropamine.maze",
    "offpolicy": "neuromod_rl.experiment.reproduce.memory.offpolicy",
    "es-ant": "neuromod_rl.experiment.reproduce.metalearning.es_ant",
}
SCALES = ("smoke", "default", "paper")
#: scales only some studies have (a control experiment rather than a size)
STUDY_SCALES = {"cue": ("control",)}
#: the studies that train RL agents (they take --budget)
RL_STUDIES = ("crippled-cheetah", "crippled-ant", "cheetah-vel", "bandit", "cue", "maze")
#: the studies made of several tasks (they take --tasks)
TASK_STUDIES = ("pomdp", "core-sweep")
#: the studies whose variants share one plastic core (they take --core)
CORE_STUDIES = ("cue", "maze")
#: the plastic cores (``neuromod_rl.agents.core_factory.CORES``; named here so --help imports no torch)
CORES = ("lstm", "mlp", "rnn")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neuromod-rl reproduce",
        description="Run a study over seeds (or reproduce a paper's claim) and write docs/results/<name>.md.",
    )
    p.add_argument("name", choices=sorted(REPRODUCTIONS), help="which study: " + " | ".join(REPRODUCTIONS))
    p.add_argument(
        "--scale", choices=SCALES + tuple(sorted({x for v in STUDY_SCALES.values() for x in v})), default="default",
        help="smoke: seconds (tests); default: minutes on 2 cores; paper: the paper's size; "
        "control (cue): the single-task control, one fixed task for every episode",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (every random draw derives from it)")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="folder for the report and plots")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (default: the scale's, at least 3); seeds are SEED, SEED+1, ...")
    p.add_argument("--workers", type=int, default=1,
                   help="runs trained at once, one process and one torch thread each (e.g. 2 on 2 cores)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/reproduce"),
                   help="where the studies keep their run directories (models, checkpoints, logs)")
    p.add_argument("--budget", type=int, default=None, metavar="STEPS",
                   help="RL studies: env steps per run for every agent, instead of the scale's")
    p.add_argument("--tasks", default=None, metavar="ID[,ID...]",
                   help="pomdp, core-sweep: run only these tasks (comma-separated; default: every task of the scale)")
    p.add_argument("--core", choices=CORES, default=None,
                   help="cue, maze: the plastic core of every variant (default: the library's default core; "
                   "rnn: the paper's plain recurrent core)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` without the program name. Returns the exit status."""
    args = build_parser().parse_args(argv)
    import torch

    for flag, value in (("--threads", args.threads), ("--seeds", args.seeds), ("--workers", args.workers),
                        ("--budget", args.budget)):
        if value is not None and value <= 0:
            print(f"{flag} must be positive, got {value}", file=sys.stderr)
            return 2
    if args.budget is not None and args.name not in RL_STUDIES:
        print(f"--budget applies to the RL studies {list(RL_STUDIES)}, not {args.name!r}", file=sys.stderr)
        return 2
    if args.scale not in SCALES and args.scale not in STUDY_SCALES.get(args.name, ()):
        owners = [n for n, extra in STUDY_SCALES.items() if args.scale in extra]
        print(f"--scale {args.scale} applies to {owners}, not {args.name!r}; use one of {list(SCALES)}",
              file=sys.stderr)
        return 2
    if args.tasks is not None and args.name not in TASK_STUDIES:
        print(f"--tasks applies to the studies {list(TASK_STUDIES)}, not {args.name!r}", file=sys.stderr)
        return 2
    if args.core is not None and args.name not in CORE_STUDIES:
        print(f"--core applies to the studies {list(CORE_STUDIES)}, not {args.name!r}", file=sys.stderr)
        return 2
    tasks = None if args.tasks is None else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if tasks is not None and not tasks:
        print("--tasks needs at least one task id", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    module = importlib.import_module(REPRODUCTIONS[args.name])
    unknown = [t for t in tasks or () if t not in getattr(module, "TASKS", {})]
    if unknown:
        print(f"unknown {args.name} task(s) {unknown}; choose from {list(module.TASKS)}", file=sys.stderr)
        return 2
    parts = [args.name, "--scale", args.scale, "--seed", str(args.seed), "--out", str(args.out)]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.workers != 1:
        parts += ["--workers", str(args.workers)]
    if args.runs_dir != Path("runs/reproduce"):
        parts += ["--runs-dir", str(args.runs_dir)]
    if args.budget is not None:
        parts += ["--budget", str(args.budget)]
    if tasks is not None:
        parts += ["--tasks", ",".join(tasks)]
    if args.core is not None:
        parts += ["--core", args.core]
    command = "neuromod-rl reproduce " + " ".join(parts)
    args.out.mkdir(parents=True, exist_ok=True)
    options = StudyOptions(seeds=args.seeds, workers=args.workers, runs_dir=args.runs_dir, budget=args.budget,
                           tasks=tasks, core=args.core)
    extra = {}
    if "options" in inspect.signature(module.run).parameters:
        extra["options"] = options
    elif options != StudyOptions(runs_dir=args.runs_dir):
        print(f"{args.name} runs its own seeds: --seeds, --workers and --budget do not apply to it", file=sys.stderr)
        return 2
    start = time.perf_counter()
    from neuromod_rl.experiment.errors import UserError
    from neuromod_rl.experiment.runs import RunLock

    # one process per progress file: two would each rewrite it from their own copy and lose results
    lock = RunLock.on_file(args.out / f".{args.name}.{args.scale}.lock",
                           f"study {args.name} (scale {args.scale}) in {args.out}", command)
    try:
        with lock:
            report = module.run(scale=args.scale, seed=args.seed, out=args.out, command=command, **extra)
    except UserError as err:
        print(f"{args.name}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{args.name}: interrupted; finished runs are saved. Run the same command again to resume:\n"
              f"  {command}", file=sys.stderr)
        return 130
    print(f"wrote {report} in {time.perf_counter() - start:.0f} s")
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
