"""What a valid config may ask for beyond its types: counts the algorithms can use, heads of a sane
shape, and networks that fit in this machine's memory. Checked before anything is built or allocated,
so a config that passes ``neuromod-rl check`` does not fail on these later."""

from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any

from neuromod_rl.agents.common.core_factory import PLASTIC_KEYS, CoreConfig
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.safe_yaml import short_repr, truncate
from neuromod_rl.plasticity.rules import get_rule_class

if TYPE_CHECKING:  # annotations only: the config module imports this one
    from neuromod_rl.experiment.config import ExperimentConfig

# constructor arguments the algorithms use as counts -> (smallest value, whether it must be an int). A value
# out of range passes the constructor and breaks training later (`n_epochs: -1` ends in an
# UnboundLocalError), so `check` refuses it. Strings, lists and None (`bptt_length: episode`,
# `train_freq: [1, episode]`, `batch_size: null`) are left to the constructor, which `check` also runs.
_COUNTS: dict[str, tuple[int, bool]] = {
    "n_steps": (1, True), "batch_size": (1, True), "n_epochs": (1, True), "bptt_length": (1, True),
    "buffer_size": (1, True), "learning_starts": (0, False), "train_freq": (1, True),
    "target_update_interval": (1, True), "policy_delay": (1, True), "sequence_length": (1, True),
    "burn_in": (0, True), "stats_window_size": (1, True), "popsize": (1, True),
    "episodes_per_member": (1, True), "chunk_size": (1, True), "max_episode_steps": (1, True),
}


def check_counts(hyperparameters: dict[str, Any], source: str = "<config>") -> None:
    """Refuse a count (``n_steps``, ``batch_size``, ``n_epochs``, ...) below its smallest value, or a bool or
    fraction where the algorithm needs an integer; see :data:`_COUNTS`."""
    for key, value in hyperparameters.items():
        if key not in _COUNTS or isinstance(value, str | list | tuple | dict) or value is None:
            continue
        minimum, integer = _COUNTS[key]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and (isinstance(value, numbers.Integral) or not integer) and value >= minimum):
            kind = "a positive integer" if minimum == 1 else "an integer of 0 or more"
            raise UserError(
                f"invalid config {source}: key `hyperparameters.{key}` has value {short_repr(value)}: {kind}, "
                f"written without a decimal point (e.g. {key}: {max(minimum, 4)}). {type(value).__name__} values "
                "pass the algorithm's constructor and fail during training."
            )


def check_net_arch(net_arch: Any, source: str = "<config>") -> None:
    """SB3's ``net_arch``: a list of positive layer sizes, or ``{pi: [...], vf: [...]}``."""
    if net_arch is None:
        return
    lists = net_arch.items() if isinstance(net_arch, dict) else [("", net_arch)]
    for key, sizes in lists:
        where = "policy_kwargs.net_arch" + (f".{key}" if key else "")
        if isinstance(net_arch, dict) and key not in ("pi", "vf", "qf"):
            raise UserError(f"invalid config {source}: key `{where}` is not valid; allowed keys: pi, vf")
        if not isinstance(sizes, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1_000_000 for n in sizes
        ):
            raise UserError(
                f"invalid config {source}: key `{where}` has value {short_repr(sizes)}: a list of layer sizes, each a "
                "positive integer, e.g. [64, 64] (or [] for linear heads)"
            )


def check_memory(cfg: ExperimentConfig, source: str = "<config>") -> None:
    """Refuse a plastic policy whose weights and per-env state alone exceed this machine's memory,
    before anything is allocated (a huge ``hidden_size`` or ``core_layers`` would otherwise die in the
    allocator), naming the key(s) that make it too large. The estimate is a lower bound: N x N slow
    weights and plastic gains per core and layer, plus each env's traces (``F``, and ``E`` for
    eligibility rules), 4 bytes each."""
    if not cfg.policy.endswith("PlasticPolicy"):
        return
    try:
        core = CoreConfig(**{k: v for k, v in cfg.policy_kwargs.items() if k in PLASTIC_KEYS})
    except (TypeError, ValueError) as err:
        raise UserError(
            f"invalid config {source}: key `policy_kwargs` has value {short_repr(cfg.policy_kwargs)}: "
            f"{truncate(str(err))}"
        ) from None
    n, traces = core.hidden_size, len(get_rule_class(core.rule).trace_names)
    layers = core.core_layers if core.core == "mlp" else 1
    gates = 4 if core.core == "lstm" else 1
    cores = 1 if core.shared_core else 2

    def need(n: int, layers: int, n_envs: int) -> int:
        return 4 * cores * layers * n * n * (traces * n_envs + gates + 1)

    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf: let the allocator judge
        return
    total = need(n, layers, cfg.n_envs)
    if total <= have:
        return
    # blame the keys that, at their defaults, would fit (`core_layers: 100000000` is not hidden_size's fault)
    n0, layers0 = (CoreConfig.__dataclass_fields__[f].default for f in ("hidden_size", "core_layers"))
    fits = {
        "policy_kwargs.hidden_size": n > n0 and need(n0, layers, cfg.n_envs) <= have,
        "policy_kwargs.core_layers": layers > layers0 and need(n, layers0, cfg.n_envs) <= have,
        "n_envs": cfg.n_envs > 1 and need(n, layers, 1) <= have,
    }
    values = {"policy_kwargs.hidden_size": n, "policy_kwargs.core_layers": layers, "n_envs": cfg.n_envs}
    blamed = [k for k, fit in fits.items() if fit]
    if not blamed:  # no key alone: all of them together
        blamed = [k for k in values if core.core == "mlp" or k != "policy_kwargs.core_layers"]
    keys = " and ".join(f"`{k}`" for k in blamed)
    settings = ", ".join(f"{k}={short_repr(values[k])}" for k in blamed)
    raise UserError(
        f"invalid config {source}: key{'s' if len(blamed) > 1 else ''} {keys} too large: {settings} needs at least "
        f"{_bytes(total)} ({cores} core(s) x {short_repr(layers)} layer(s) of {short_repr(n)}x{short_repr(n)} weights, "
        f"and {traces} trace(s) per env for {cfg.n_envs} envs), more than this machine's {have / 2**30:.1f} GiB of "
        f"memory. Lower {' or '.join(k.rpartition('.')[2] for k in blamed)}."
    )


def _bytes(n: int) -> str:
    """A byte count for a message (``repr`` of an integer past 4,300 digits raises)."""
    if n.bit_length() > 80:
        return f"about 10^{int(n.bit_length() * 0.30103)} bytes"
    return f"{n:,} bytes = {n / 2**30:,.1f} GiB"
