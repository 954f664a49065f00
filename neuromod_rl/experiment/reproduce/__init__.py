"""``neuromod-rl reproduce NAME``: re-run a source paper's claim (one module per study in this package).

Each reproduction trains at a scale that fits 2 CPU cores (``--scale default``), or at a larger one
(``--scale paper``), and writes ``<out>/<name>.md`` with the exact command, seeds, settings, a numbers
table, PNG plots, and whether each target claim reproduced. ``--scale smoke`` runs in seconds and
exists for the test suite. Shared helpers: :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

REPRODUCTIONS = {
    "gregor": "neuromod_rl.experiment.reproduce.gregor",
    "blur": "neuromod_rl.experiment.reproduce.blur",
    "l2l": "neuromod_rl.experiment.reproduce.l2l",
    "es-ant": "neuromod_rl.experiment.reproduce.es_ant",
}
SCALES = ("smoke", "default", "paper")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neuromod-rl reproduce",
        description="Reproduce a source paper's claim and write docs/results/<name>.md with plots.",
    )
    p.add_argument("name", choices=sorted(REPRODUCTIONS), help="which paper: gregor | blur | l2l")
    p.add_argument(
        "--scale", choices=SCALES, default="default", help="smoke: seconds (tests); default: minutes on 2 cores"
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (every random draw derives from it)")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="folder for the report and plots")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` without the program name. Returns the exit status."""
    args = build_parser().parse_args(argv)
    import torch

    if args.threads is not None:
        if args.threads <= 0:
            print(f"--threads must be positive, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    module = importlib.import_module(REPRODUCTIONS[args.name])
    command = "neuromod-rl reproduce " + " ".join(
        [args.name, "--scale", args.scale, "--seed", str(args.seed), "--out", str(args.out)]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = module.run(scale=args.scale, seed=args.seed, out=args.out, command=command)
    print(f"wrote {report} in {time.perf_counter() - start:.0f} s")
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
