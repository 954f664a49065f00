"""``neuromod-rl reproduce NAME``: run a declared study over seeds and write its report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from neuromod_rl.agents.common.core_factory import CORES
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.runs import RunLock, check_output_folder
from neuromod_rl.studies.registry import SCALES, Study, studies
from neuromod_rl.studies.scaffold.multiseed import StudyOptions

DEFAULT_OUT = Path("docs/results")
DEFAULT_RUNS = Path("runs/reproduce")


def build_parser(known: dict[str, Study]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neuromod-rl reproduce",
        description="Run a study over seeds (or reproduce a paper's claim) and write <out>/<name>.md.",
        epilog="Studies: " + "; ".join(f"{s.name}: {s.claim}" for s in known.values()),
    )
    p.add_argument("name", choices=list(known), help="which study: " + " | ".join(known))
    p.add_argument(
        "--scale", choices=SCALES + tuple(sorted({x for s in known.values() for x in s.extra_scales})),
        default="default",
        help="smoke: seconds (tests); default: minutes on 2 cores; paper: the paper's size; "
        "control (cue): the single-task control, one fixed task for every episode; gpu (cue): the batched "
        "device-resident path, a wall-clock budget per variant",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (every random draw derives from it)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"folder for the report, plots and progress file (default: ./{DEFAULT_OUT})")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (default: the scale's, at least 3); seeds are SEED, SEED+1, ...")
    p.add_argument("--workers", type=int, default=1,
                   help="runs trained at once, one process and one torch thread each (e.g. 2 on 2 cores)")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS,
                   help="where the studies keep their run directories (models, checkpoints, logs)")
    p.add_argument("--budget", type=int, default=None, metavar="STEPS",
                   help="RL studies: env steps per run for every agent, instead of the scale's")
    p.add_argument("--tasks", default=None, metavar="ID[,ID...]",
                   help="studies of several tasks: run only these (comma-separated; default: every task of the scale)")
    p.add_argument("--core", choices=sorted(CORES), default=None,
                   help="studies whose variants share a plastic core: that core (default: the library's default; "
                   "rnn: the paper's plain recurrent core)")
    return p


def _refuse(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _owners(known: dict[str, Study], applies) -> list[str]:
    return [name for name, s in known.items() if applies(s)]


def _command(args: argparse.Namespace, tasks: tuple[str, ...] | None) -> str:
    """The command line that reproduces this call (written into the report)."""
    parts = [args.name, "--scale", args.scale, "--seed", str(args.seed), "--out", str(args.out)]
    optional = [("--seeds", args.seeds), ("--workers", None if args.workers == 1 else args.workers),
                ("--runs-dir", None if args.runs_dir == DEFAULT_RUNS else args.runs_dir), ("--budget", args.budget),
                ("--tasks", None if tasks is None else ",".join(tasks)), ("--core", args.core)]
    parts += [str(x) for flag, value in optional if value is not None for x in (flag, value)]
    return "neuromod-rl reproduce " + " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` without the program name. Returns the exit status."""
    known = studies()
    args = build_parser(known).parse_args(argv)
    study = known[args.name]
    for flag, value in (("--threads", args.threads), ("--seeds", args.seeds), ("--workers", args.workers),
                        ("--budget", args.budget)):
        if value is not None and value <= 0:
            return _refuse(f"{flag} must be positive, got {value}")
    if args.budget is not None and not study.takes_budget:
        return _refuse(f"--budget applies to the RL studies {_owners(known, lambda s: s.takes_budget)}, "
                       f"not {args.name!r}")
    if args.scale not in study.scales:
        owners = _owners(known, lambda s: args.scale in s.extra_scales)
        return _refuse(f"--scale {args.scale} applies to {owners}, not {args.name!r}; use one of {list(SCALES)}")
    if args.tasks is not None and not study.tasks:
        return _refuse(f"--tasks applies to the studies {_owners(known, lambda s: bool(s.tasks))}, not {args.name!r}")
    if args.core is not None and not study.takes_core:
        return _refuse(f"--core applies to the studies {_owners(known, lambda s: s.takes_core)}, not {args.name!r}")
    tasks = None if args.tasks is None else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if tasks is not None and not tasks:
        return _refuse("--tasks needs at least one task id")
    unknown = [t for t in tasks or () if t not in study.tasks]
    if unknown:
        return _refuse(f"unknown {args.name} task(s) {unknown}; choose from {list(study.tasks)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = _command(args, tasks)
    try:
        check_output_folder(args.out, "--out")
    except UserError as err:
        return _refuse(f"{args.name}: {err}")
    print(f"{args.name}: writing the report, plots and progress file to {args.out.resolve()}", file=sys.stderr)
    options = StudyOptions(seeds=args.seeds, workers=args.workers, runs_dir=args.runs_dir, budget=args.budget,
                           tasks=tasks, core=args.core)
    start = time.perf_counter()
    # one process per progress file: two would each rewrite it from their own copy and lose results
    lock = RunLock.on_file(args.out / f".{args.name}.{args.scale}.lock",
                           f"study {args.name} (scale {args.scale}) in {args.out}", command)
    try:
        with lock:
            report = study.run(scale=args.scale, seed=args.seed, out=args.out, command=command, options=options)
    except UserError as err:
        return _refuse(f"{args.name}: {err}")
    except KeyboardInterrupt:
        print(f"\n{args.name}: interrupted; finished runs are saved. Run the same command again to resume:\n"
              f"  {command}", file=sys.stderr)
        return 130
    print(f"wrote {report} in {time.perf_counter() - start:.0f} s")
    return 0
