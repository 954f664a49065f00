"""The search algorithms :class:`~neuromod_rl.agents.es.ESTrainer` offers, their defaults, and presets.

* ``"openai_es"`` -- :class:`~neuromod_rl.agents.es.openai_es.OpenAIES` (antithetic sampling, centred
  ranks, plain search-gradient steps, optional ``lr``/``sigma`` decays);
* ``"cmaes"`` -- evotorch's ``CMAES`` (full covariance: for up to a few thousand parameters; pass
  ``algorithm_kwargs={"separable": True}`` for a diagonal one);
* ``"pgpe"`` -- evotorch's ``PGPE`` (ClipUp optimiser, symmetric sampling, centred ranks);
* ``"snes"`` / ``"xnes"`` -- evotorch's separable / exponential natural evolution strategies.

``lr`` is the centre's step size (``center_learning_rate`` for PGPE/SNES/XNES; CMA-ES has none),
``sigma`` the initial noise scale (``stdev_init``). ``algorithm_kwargs`` go to the evotorch class
unchanged. The decays ``lr_decay``/``sigma_decay`` exist for ``openai_es`` only.

Presets bundle the settings of a paper; explicit arguments override them:

* ``"najarro_risi"`` -- Najarro & Risi (NeurIPS 2020): OpenAI-ES, population 200, ``lr`` 0.2 decaying
  x0.995 per generation, ``sigma`` 0.1 decaying x0.999, fitness penalty ``0.01 mean(theta^2)``, only
  the rule's coefficients evolved, fresh random weights at the start of every episode.
"""

from __future__ import annotations

import os
from typing import Any

ALGORITHMS = ("openai_es", "cmaes", "pgpe", "snes", "xnes")

#: defaults of the settings a preset may change
DEFAULTS: dict[str, Any] = {
    "algorithm": "openai_es",
    "params": "all",
    "popsize": 64,
    "sigma": 0.1,
    "lr": None,  # the algorithm's own default (LR_DEFAULTS)
    "lr_decay": 1.0,
    "sigma_decay": 1.0,
    "l2_penalty": 0.0,
    "redraw_initial_weights": False,
}
LR_DEFAULTS = {"openai_es": 0.05, "pgpe": 0.05}  # SNES/XNES: evotorch's own; CMA-ES: none

PRESETS: dict[str, dict[str, Any]] = {
    "najarro_risi": {
        "algorithm": "openai_es",
        "params": "rule",
        "popsize": 200,
        "lr": 0.2,
        "lr_decay": 0.995,
        "sigma": 0.1,
        "sigma_decay": 0.999,
        "l2_penalty": 0.01,
        "redraw_initial_weights": True,
    },
}


def resolve_settings(preset: str | None, **given: Any) -> dict[str, Any]:
    """Settings from ``DEFAULTS``, overridden by the preset, overridden by the non-``None`` ``given``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not valid; valid choices: {sorted(PRESETS)} or None")
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown ES settings {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **(PRESETS[preset] if preset else {})}
    out.update({k: v for k, v in given.items() if v is not None})
    if out["algorithm"] not in ALGORITHMS:
        raise ValueError(f"algorithm={out['algorithm']!r} is not valid; valid choices: {list(ALGORITHMS)}")
    if out["lr"] is None:
        out["lr"] = LR_DEFAULTS.get(out["algorithm"])
    if out["algorithm"] != "openai_es" and (out["lr_decay"] != 1.0 or out["sigma_decay"] != 1.0):
        raise ValueError(f"lr_decay and sigma_decay apply to algorithm='openai_es' only, not {out['algorithm']!r}")
    if out["algorithm"] == "cmaes" and given.get("lr") is not None:
        raise ValueError("CMA-ES has no centre learning rate: drop lr (its step size is sigma)")
    if not (isinstance(out["popsize"], int) and out["popsize"] >= 2):
        raise ValueError(f"popsize must be an int >= 2, got {out['popsize']!r}")
    if out["algorithm"] in ("openai_es", "pgpe") and out["popsize"] % 2:
        raise ValueError(f"{out['algorithm']} samples antithetic pairs: popsize must be even, got {out['popsize']}")
    for key in ("sigma", "lr"):
        if out[key] is not None and not float(out[key]) > 0:
            raise ValueError(f"{key} must be positive, got {out[key]!r}")
    if not float(out["l2_penalty"]) >= 0:
        raise ValueError(f"l2_penalty must be >= 0, got {out['l2_penalty']!r}")
    return out


def physical_memory() -> int | None:
    """Bytes of memory of this machine, or ``None`` where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_search_memory(settings: dict[str, Any], n_parameters: int,
                        algorithm_kwargs: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Refuse a search that cannot fit in this machine's memory, before evotorch allocates it (a huge
    ``popsize`` would otherwise die in the allocator, or swap the machine to a halt).

    The estimate is a lower bound, in float32 (the search's dtype): the population of ``popsize x D``
    values is held twice (the search's own and the copy the evaluation scores), and CMA-ES without
    ``separable=True`` keeps two ``D x D`` matrices (the covariance and its square root)."""
    have = physical_memory()
    if have is None:  # no way to tell: let the allocator judge
        return
    popsize, d = int(settings["popsize"]), int(n_parameters)
    population = 2 * 4 * popsize * d
    full_covariance = settings["algorithm"] == "cmaes" and not (algorithm_kwargs or {}).get("separable", False)
    covariance = 2 * 4 * d * d if full_covariance else 0
    need = population + covariance
    if need <= have:
        return
    if covariance > population:
        raise ValueError(
            f"algorithm='cmaes' with {d:,} evolved parameters needs at least {need:,} bytes ({need / 2**30:.1f} GiB, "
            f"mostly its full covariance: two {d:,} x {d:,} matrices), more than this machine's {have / 2**30:.1f} "
            "GiB of memory. Pass algorithm_kwargs={'separable': True} (a diagonal covariance), choose another "
            "algorithm, or evolve fewer parameters (params='rule', a smaller hidden_size)"
        )
    raise ValueError(
        f"popsize={popsize:,} with {d:,} evolved parameters needs at least {need:,} bytes ({need / 2**30:.1f} GiB: "
        f"the population, {popsize:,} x {d:,} float32 values held twice), more than this machine's "
        f"{have / 2**30:.1f} GiB of memory. Use a lower popsize (or evolve fewer parameters: params='rule', a "
        "smaller hidden_size)"
    )


def make_searcher(problem, center, settings: dict[str, Any], algorithm_kwargs: dict[str, Any] | None = None):
    """The evotorch search algorithm ``settings["algorithm"]`` on ``problem``, started at ``center``."""
    # evotorch (heavy: it imports Ray) only when a search starts; openai_es imports evotorch at its top
    from evotorch.algorithms import CMAES, PGPE, SNES, XNES

    from neuromod_rl.agents.es.openai_es import OpenAIES

    name, extra = settings["algorithm"], dict(algorithm_kwargs or {})
    common = {"popsize": settings["popsize"], "center_init": center.detach().cpu().numpy()}  # numpy: evotorch copies
    try:
        if name == "openai_es":
            return OpenAIES(problem, sigma=settings["sigma"], lr=settings["lr"], sigma_decay=settings["sigma_decay"],
                            lr_decay=settings["lr_decay"], **common, **extra)
        if name == "cmaes":
            return CMAES(problem, stdev_init=settings["sigma"], **common, **extra)
        if name == "pgpe":
            extra.setdefault("stdev_learning_rate", 0.1)
            return PGPE(problem, center_learning_rate=settings["lr"], stdev_init=settings["sigma"], **common, **extra)
        cls = {"snes": SNES, "xnes": XNES}[name]
        if settings["lr"] is not None:
            extra.setdefault("center_learning_rate", settings["lr"])
        return cls(problem, stdev_init=settings["sigma"], **common, **extra)
    except TypeError as err:
        raise TypeError(f"algorithm_kwargs {sorted(extra)} do not fit {name}: {err}") from None
