"""``python -m neuromod_rl.zoo COMMAND [rl-zoo3 flags]``, also installed as ``neuromod-rl-zoo``.

COMMAND is one of rl-zoo3's scripts (``train``, ``enjoy``, ``record_video``, ``push_to_hub``); its flags
go to rl-zoo3's own parser unchanged, so ``neuromod-rl-zoo train --help`` lists them all. Before the
script runs, the plastic algorithms join rl-zoo3's ``--algo`` choices and ``-optimize`` samplers
(:mod:`neuromod_rl.zoo.registry`), and ``train`` of a plastic algorithm without ``-conf`` reads the
shipped zoo file (:mod:`neuromod_rl.zoo.arguments`).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

from neuromod_rl.extras import MissingExtraError, require
from neuromod_rl.zoo.arguments import COMMANDS, ZooUsageError, zoo_arguments

USAGE = f"""usage: neuromod-rl-zoo {{{",".join(COMMANDS)}}} [rl-zoo3 flags ...]

rl-zoo3's scripts with the plastic algorithms added: --algo plastic_ppo | plastic_a2c | plastic_sac |
plastic_td3 (and every algorithm of rl-zoo3's). Every flag is rl-zoo3's: `neuromod-rl-zoo train --help`.
Without -conf/--conf-file, `train` of a plastic algorithm reads neuromod_rl/configs/zoo/<algo>.yml.

  neuromod-rl-zoo train --algo plastic_ppo --env neuromod_rl/Recall-v0 -f logs
  neuromod-rl-zoo enjoy --algo plastic_ppo --env neuromod_rl/Recall-v0 -f logs --no-render
  neuromod-rl-zoo train --algo plastic_ppo --env neuromod_rl/CartPoleNoVel-v1 -optimize --n-trials 20

Guide: docs/zoo.md"""


def run_script(command: str, args: Sequence[str]) -> None:
    """Run rl-zoo3's script ``command`` on ``args`` (its parser reads ``sys.argv``, restored afterwards).

    Args:
        command: one of :data:`~neuromod_rl.zoo.arguments.COMMANDS`.
        args: the script's flags.
    """
    from neuromod_rl.zoo.registry import register  # imports rl-zoo3, which patches Gymnasium's TimeLimit

    register()
    saved = sys.argv
    sys.argv = [f"neuromod-rl-zoo {command}", *args]
    try:
        if command == "train":
            from rl_zoo3.train import train

            train()
        elif command == "enjoy":
            from rl_zoo3.enjoy import enjoy

            enjoy()
        else:  # these two scripts run only as __main__
            if command == "push_to_hub":
                from neuromod_rl.zoo.hub_compat import restore_generate_metadata

                restore_generate_metadata()
            runpy.run_module(f"rl_zoo3.{command}", run_name="__main__")
    finally:
        sys.argv = saved


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0 when rl-zoo3's script finished, 2 for a command line refused here or without
    rl-zoo3 installed (rl-zoo3's own parser exits with 2 for its flags).

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    try:
        zoo_args = zoo_arguments(args[0], args[1:])
        require("zoo", "neuromod-rl-zoo", ("rl_zoo3",))
    except (ZooUsageError, MissingExtraError) as err:
        print(f"neuromod-rl-zoo: error: {err}", file=sys.stderr)
        return 2
    run_script(args[0], zoo_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
