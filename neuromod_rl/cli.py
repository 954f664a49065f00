"""The ``neuromod-rl`` command: argument parsing and dispatch only (the work lives in sibling modules).

Every subcommand imports what it needs when it runs: the imports inside the ``cmd_*`` functions are
deliberate, because torch, SB3 and the studies take seconds to import, and ``neuromod-rl --help`` (and
``envs``) should answer in under a second.
User errors (:class:`UserError`, a file that cannot be written, NaN/inf traced to its source) print
one paragraph and exit with code 2; Ctrl-C during training saves a checkpoint and exits with code 130
(SIGTERM: 143).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path

from neuromod_rl._version import __version__
from neuromod_rl.bench import BENCHES
from neuromod_rl.experiment.errors import EXIT_USER_ERROR, UserError
from neuromod_rl.extras import EXTRA_OF, MissingExtraError, install_hint

EXIT_INTERRUPTED = 130
#: errors of the disk or of permissions: the user's to fix, reported without a traceback
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
                 errno.EISDIR, errno.ENAMETOOLONG}
PICKLE_WARNING = (
    "Checkpoints and model.zip are SB3 .zip files holding pickles: loading one runs code stored in it, so use "
    "only runs from trusted sources. To share a policy, use `neuromod-rl export` (safetensors or ONNX: loading "
    "runs nothing)."
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments already; this only makes its message a single paragraph."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"neuromod-rl: error: {message}. Run `{self.prog} --help` for the options.\n")


def _add_wandb(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Weights & Biases (offline when no credentials; WANDB_MODE is respected)")
    g.add_argument("--wandb", action="store_true", help="log to W&B")
    g.add_argument("--wandb-project", default="neuromod-rl", metavar="NAME")
    g.add_argument("--wandb-entity", default=None, metavar="NAME")
    g.add_argument("--wandb-group", default=None, metavar="NAME")
    g.add_argument("--wandb-tags", nargs="*", default=[], metavar="TAG")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuromod-rl", description="Train, evaluate, report and compare plastic RL agents.",
                     epilog=PICKLE_WARNING)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train a config (the embedded default when CONFIG is omitted)")
    p.add_argument("config", nargs="?", help="YAML config (default: the embedded default config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set n_envs=4 --set hyperparameters.learning_rate=lin_1e-3")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its last checkpoint (a pickle: only runs you trust)")
    p.add_argument("--runs-dir", default="runs", help="where new run directories go (default: runs/)")
    p.add_argument("--report", action="store_true", help="after training: evaluate and write the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_wandb(p)

    p = sub.add_parser("eval", help="evaluate a run on train or test tasks (loads a pickle: trusted runs only)",
                       description="Evaluate a run on its train or test tasks.", epilog=PICKLE_WARNING)
    p.add_argument("run_dir")
    p.add_argument("--tasks", choices=["train", "test"], default="test")
    p.add_argument("--episodes", type=int, default=None, help="1 to 100000 (default: the config's eval.episodes)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("report", help="evaluate if needed, plot and write RUN_DIR/report.md (trusted runs only)",
                       description="Evaluate if needed, plot and write RUN_DIR/report.md.", epilog=PICKLE_WARNING)
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=None)
    p.add_argument("--no-video", action="store_true", help="skip the episode video")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--baseline", default=None, metavar="OTHER_RUN",
                   help="a run of a non-adaptive agent on the same task: the verdict compares recovery against it")
    _add_bounds(p)
    _add_wandb(p)

    p = sub.add_parser("compare", help="compare runs (median and IQR over seeds of each config)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default=None, help="output directory (default: runs/compare-<timestamp>)")
    _add_bounds(p)

    p = sub.add_parser("export", help="export a run's policy to share it (safetensors or ONNX: loading runs nothing)",
                       description="Export a run's policy in a format that loads without unpickling: safetensors "
                       "(weights + config, for neuromod_rl.experiment.export.load_exported_model) or onnx (one "
                       "policy step with the plastic state as input and output, for onnxruntime).",
                       epilog=PICKLE_WARNING)
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors")
    p.add_argument("--out", default=None,
                   help="output file (default: RUN_DIR/model.safetensors or RUN_DIR/policy.onnx)")

    p = sub.add_parser("push", help="share a run's policy on the Hugging Face Hub (safetensors, ONNX: no pickles)",
                       description="Write a run's policy (safetensors; ONNX with the export extra), its config, its "
                       "evaluation results and a model card into a folder, then upload the folder to a Hugging Face "
                       "Hub repository. Load it with neuromod_rl.hub.load('USER/NAME'). Needs the hub extra: "
                       "pip install 'neuromod-rl[hub]'.", epilog=PICKLE_WARNING)
    p.add_argument("run_dir", help="a run of `neuromod-rl train`, evaluated with `neuromod-rl eval`")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the Hub repository (created if missing)")
    p.add_argument("--folder", default=None, metavar="DIR",
                   help="where the files are written before the upload (default: RUN_DIR/hub)")
    p.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")

    p = sub.add_parser("check", help="validate configs and print the resolved config")
    p.add_argument("configs", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("envs", help="table of the registered tasks")

    p = sub.add_parser("sweep", help="a config over seeds and a hyperparameter space (Ray Tune, Optuna, ASHA)")
    _add_sweep_arguments(p)
    _add_wandb(p)

    p = sub.add_parser("bench", help="benchmarks: core, sb3, envs, offpolicy, es, pipeline")
    p.add_argument("name", choices=sorted(BENCHES))
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the benchmark")

    # reproduce and demo read their own options, --help included
    p = sub.add_parser("reproduce", help="multi-seed studies and paper reproductions (docs/reproduce.md)",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="NAME [OPTIONS]")

    p = sub.add_parser("demo", help="a short demonstration of the plastic core", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


# ------------------------------------------------------------------------------ commands
def _wandb_settings(args):
    from neuromod_rl.experiment.wandb_logging import WandbSettings

    return WandbSettings(args.wandb, args.wandb_project, args.wandb_entity, args.wandb_group, list(args.wandb_tags))


def cmd_train(args) -> int:
    from neuromod_rl.experiment import train as tr

    opts = tr.TrainOptions(runs_dir=Path(args.runs_dir), wandb=_wandb_settings(args), progress=not args.no_progress)
    if args.resume:
        if args.config or args.seed is not None:
            raise UserError("--resume continues a saved run with its saved config: pass no CONFIG and no --seed.")
        result = tr.resume(args.resume, args.overrides, opts)
    else:
        from neuromod_rl.experiment.config import load_config

        overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
        result = tr.train(load_config(args.config, overrides), opts)
    if not result.finished:
        result.wandb.finish()
        return 128 + result.stopped_by if result.stopped_by else EXIT_INTERRUPTED
    print(f"Trained {result.num_timesteps} steps: {result.run.path}", file=sys.stderr)
    if result.wandb.active:  # the trained policy as a W&B model artifact, in the format that loads without pickle
        from neuromod_rl.experiment.export import export_safetensors

        result.wandb.log_model(lambda: export_safetensors(result.run.path),
                               {"format": "safetensors", "num_timesteps": result.num_timesteps})
    if args.report:
        from neuromod_rl.experiment.report import make_report

        path = make_report(result.run.path, progress=opts.progress, wandb=result.wandb)
        print(f"Report: {path}")
    result.wandb.finish()
    return 0


def cmd_eval(args) -> int:
    from neuromod_rl.experiment.evaluate import evaluate

    summary = evaluate(args.run_dir, args.tasks, args.episodes, args.deterministic or None, not args.no_progress)
    for key, value in summary.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    return 0


def _add_bounds(p: argparse.ArgumentParser) -> None:
    """``--oracle`` and ``--markov``: the bound runs that a run's share of the oracle-Markov gap is read against."""
    p.add_argument("--oracle", nargs="+", default=None, metavar="RUN_DIR",
                   help="runs of the oracle bound (the task in the observation: TaskInObservation), same task, "
                        "algorithm and budget; with --markov, adds the share of the oracle-Markov gap closed")
    p.add_argument("--markov", nargs="+", default=None, metavar="RUN_DIR",
                   help="runs of the Markov bound (the raw observation), same task, algorithm and budget")


def cmd_report(args) -> int:
    from neuromod_rl.experiment.evaluate import load_run
    from neuromod_rl.experiment.report import make_report
    from neuromod_rl.experiment.runs import RunLock
    from neuromod_rl.experiment.wandb_logging import init_wandb

    run, cfg = load_run(args.run_dir)
    with RunLock(run, "report"):
        wandb = init_wandb(_wandb_settings(args), run, cfg.model_dump()) if args.wandb else None
        path = make_report(run.path, episodes=args.episodes, progress=not args.no_progress, wandb=wandb,
                           video=not args.no_video, baseline=args.baseline, oracle=args.oracle,
                           markov=args.markov)
    if wandb is not None:
        wandb.finish()
    print(f"Report: {path}")
    return 0


def cmd_compare(args) -> int:
    from neuromod_rl.experiment.compare import compare

    print(f"Comparison: {compare(args.run_dirs, args.out, oracle=args.oracle, markov=args.markov)}")
    return 0


def cmd_export(args) -> int:
    from neuromod_rl.experiment import export

    write = export.export_onnx if args.format == "onnx" else export.export_safetensors
    print(f"Exported: {write(args.run_dir, args.out)}")
    return 0


def cmd_push(args) -> int:
    from neuromod_rl.experiment.hub import describe, push

    print(describe(push(args.run_dir, args.repo_id, args.folder, dry_run=args.dry_run)))
    return 0


def cmd_check(args) -> int:
    from neuromod_rl.experiment.config import dump_config, load_config
    from neuromod_rl.experiment.train import check_buildable

    for path in args.configs:
        cfg = load_config(path, args.overrides)
        check_buildable(cfg)
        print(f"# {path}: valid (env and model built)\n{dump_config(cfg)}")
    return 0


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from neuromod_rl.experiment.sweep import add_arguments  # the module imports its heavy parts when it runs

    add_arguments(p)


def cmd_sweep(args) -> int:
    from neuromod_rl.experiment.sweep import cmd_sweep as run

    return run(args, _wandb_settings(args))


def cmd_envs(args) -> int:
    from neuromod_rl.experiment.listing import env_table

    print(env_table())
    return 0


def cmd_bench(args) -> int:
    return importlib.import_module(f"neuromod_rl.bench.{BENCHES[args.name]}").main(
        [a for a in args.args if a != "--"]) or 0


def cmd_reproduce(args) -> int:
    from neuromod_rl.studies.command import main as reproduce

    # the study name is validated against the registry there (one list of studies, not two)
    return reproduce([a for a in args.args if a != "--"]) or 0


def cmd_demo(args) -> int:
    from neuromod_rl.bench.demo import main as demo

    return demo([a for a in args.args if a != "--"]) or 0


#: commands whose options their own parser reads
PASSED_ON = ("bench", "reproduce", "demo")

COMMANDS = {
    "train": cmd_train, "eval": cmd_eval, "report": cmd_report, "compare": cmd_compare, "export": cmd_export,
    "push": cmd_push, "check": cmd_check, "envs": cmd_envs, "bench": cmd_bench, "reproduce": cmd_reproduce,
    "demo": cmd_demo, "sweep": cmd_sweep,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuromod-rl``; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.command not in PASSED_ON:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if rest:  # `demo --iterations 5`: options before any positional reach the command's own parser
            args.args = [*rest, *args.args]
    except SystemExit as exc:  # --help (0) and argument errors (2) end here
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except SystemExit as exc:  # a benchmark's or reproduction's own argparse (--help, bad options)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USER_ERROR)
    except (UserError, MissingExtraError, FloatingPointError, ConnectionError) as err:  # a NaN/inf with its
        # source named; a missing optional extra with its install line; a Ray cluster address nobody answers
        print(f"neuromod-rl {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as err:
        top = (err.name or "").partition(".")[0]
        if top not in EXTRA_OF:
            raise
        print(f"neuromod-rl {args.command}: error: this needs the package {top!r}: {install_hint(EXTRA_OF[top])}",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"neuromod-rl {args.command}: error: cannot write{where}: {err.strerror}. Free disk space or fix the "
              "folder's permissions, then run the command again (files written so far are complete: every file is "
              "replaced atomically).", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nneuromod-rl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `neuromod-rl envs | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
