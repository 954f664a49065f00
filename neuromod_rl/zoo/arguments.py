"""What ``neuromod_rl.zoo`` hands rl-zoo3: the script to run and its flags, with the shipped zoo file
added where none is named. Plain argument handling: nothing here imports rl-zoo3."""

from __future__ import annotations

from collections.abc import Sequence

from neuromod_rl.zoo import PLASTIC_ALGOS, shipped_conf

#: rl-zoo3's scripts this command runs (``python -m rl_zoo3.<name>``)
COMMANDS = ("train", "enjoy", "record_video", "push_to_hub")
#: rl-zoo3's names of the hyperparameter-file flag of ``train``
CONF_FLAGS = ("-conf", "--conf-file")

ES_REFUSAL = (
    "--algo es is not offered through rl-zoo3: rl-zoo3 drives a Stable-Baselines3 algorithm through its "
    "training env step by step (its monitor files, --eval-freq, VecNormalize statistics and the pruning of "
    "-optimize all count steps of that env), while ESTrainer scores whole populations on copies of the env. "
    "Train evolution strategies with `neuromod-rl train es_delayed_cue`, or with any config of yours that "
    "says `algo: es` (docs/es.md); use --algo plastic_ppo, plastic_a2c, plastic_sac or plastic_td3 here."
)


class ZooUsageError(ValueError):
    """A command line ``neuromod_rl.zoo`` refuses before rl-zoo3 runs (exit status 2)."""


def _option(token: str) -> str:
    return token.split("=", 1)[0]


def _names(token: str, names: Sequence[str]) -> bool:
    """Does ``token`` spell one of ``names``? Long names may be abbreviated, as argparse allows."""
    option = _option(token)
    return any(option == name or (name.startswith("--") and len(option) > 2 and name.startswith(option))
               for name in names)  # fmt: skip


def flag_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of the last of ``names`` in ``args`` (``--algo x`` or ``--algo=x``), as argparse reads it.

    Args:
        args: the command-line arguments after the script name.
        names: the spellings of the flag (``("--algo",)``).
    """
    value = None
    for i, token in enumerate(args):
        if token.startswith("-") and _names(token, names):
            if "=" in token:
                value = token.split("=", 1)[1]
            elif i + 1 < len(args):
                value = args[i + 1]
    return value


def has_flag(args: Sequence[str], names: Sequence[str]) -> bool:
    """Whether any of ``names`` is given in ``args``.

    Args:
        args: the command-line arguments after the script name.
        names: the spellings of the flag.
    """
    return any(token.startswith("-") and _names(token, names) for token in args)


def zoo_arguments(command: str, args: Sequence[str]) -> list[str]:
    """rl-zoo3's arguments for ``command``: ``args`` unchanged, plus ``--conf-file`` with the shipped zoo
    file when ``train`` runs a plastic algorithm and names no file of its own.

    Args:
        command: one of :data:`COMMANDS`.
        args: the rl-zoo3 flags, as typed.

    Raises:
        ZooUsageError: an unknown command, or ``--algo es`` (see :data:`ES_REFUSAL`).
    """
    if command not in COMMANDS:
        raise ZooUsageError(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
    algo = flag_value(args, ("--algo",))
    if algo == "es":
        raise ZooUsageError(ES_REFUSAL)
    out = list(args)
    conf = shipped_conf(algo) if algo in PLASTIC_ALGOS else None
    if command == "train" and conf is not None and not has_flag(args, CONF_FLAGS):
        out += ["--conf-file", str(conf)]
    return out
