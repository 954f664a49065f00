"""What the RL studies share: agent configs, the default plastic core, budgets, one trained and
evaluated run per (agent, seed), parameter counts.

**Where an agent's settings come from.** MuJoCo agents load their YAML from the shipped
``configs/`` (the files a user trains with ``neuromod-rl train``); the classic-task studies keep a
short table of hyperparameters in their module. In both cases the *plastic core* (``core``,
``hidden_size``, ``alpha_shape``, ``modulation``, ``modulation_source``) is
:class:`~neuromod_rl.agents.common.core_factory.CoreConfig`'s default unless the study varies it (the rule
of an ablation, a hidden size matched by parameter count): change the defaults there and every study
follows, and re-runs only the agents whose settings changed (see :mod:`.multiseed`).

Every run lives in ``<runs_dir>/<study>/<agent>-seed<k>-<fingerprint>``; an interrupted run resumes
from its newest training checkpoint.
"""

from __future__ import annotations

import copy
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from neuromod_rl.agents.common.core_factory import CoreConfig
from neuromod_rl.agents.on_policy.policies import DEFAULT_NET_ARCH
from neuromod_rl.experiment import normalize
from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.config import CONFIG_DIR, ExperimentConfig, check_semantics, load_yaml, validate
from neuromod_rl.experiment.environment import build_vec_env, make_env
from neuromod_rl.experiment.evaluate import EVAL_SEED_OFFSET, load_model, rollout
from neuromod_rl.experiment.runs import Run, latest_checkpoint
from neuromod_rl.plasticity import freeze_plasticity

#: the policy_kwargs keys of the plastic core that follow CoreConfig's defaults
CORE_KEYS = ("core", "hidden_size", "alpha_shape", "modulation", "modulation_source")
PLASTIC_ALGOS = ("plastic_ppo", "plastic_a2c")
#: the ``eval`` keys of the evaluation during training, left out of fingerprints: it restores the random
#: state it uses, so a run trains to the same agent whatever they say
PERIODIC_EVAL_KEYS = ("every_steps", "periodic_episodes")
#: a non-modulated plastic core whatever the default says: the clipped Hebbian rule, no modulator
UNMODULATED = {"rule": "clipped", "modulation": None, "modulation_source": "hidden"}


def load_agent_yaml(filename: str) -> dict[str, Any]:
    """The raw mapping of ``configs/<filename>``."""
    return load_yaml(CONFIG_DIR / filename)


def default_core(**variant: Any) -> dict[str, Any]:
    """CoreConfig's default plastic core as ``policy_kwargs`` entries, with ``variant`` on top (e.g.
    ``rule="clipped"``, ``hidden_size=...``). Validated, so a bad variant fails before any training."""
    defaults = CoreConfig()
    core = {k: getattr(defaults, k) for k in CORE_KEYS}
    core.update(variant)
    CoreConfig(**{k: v for k, v in core.items() if k in CoreConfig.__dataclass_fields__})
    return core


@dataclass(frozen=True)
class Agent:
    """One contestant of a study: a config mapping (before seed and budget) and how to read it.

    ``frozen_plasticity``: the plastic gain ``alpha`` is held at 0 and the rule's parameters are not
    trained, so the network is an ordinary recurrent one of the same architecture (the non-plastic
    baseline)."""

    name: str
    config: dict[str, Any]
    frozen_plasticity: bool = False
    source: str = ""  # where the settings came from, for the report
    notes: dict[str, Any] = field(default_factory=dict)

    def resolved(self, seed: int, n_timesteps: int | None = None, **changes: Any) -> ExperimentConfig:
        """The validated config of this agent for ``seed`` (and a budget), plastic core filled in."""
        data = merged(self.config, changes)
        data["seed"] = int(seed)
        if n_timesteps is not None:
            data["n_timesteps"] = int(n_timesteps)
        if data.get("algo") in PLASTIC_ALGOS:
            kwargs = dict(data.get("policy_kwargs") or {})
            data["policy_kwargs"] = {**default_core(**{k: kwargs[k] for k in CORE_KEYS if k in kwargs}), **kwargs}
        cfg = validate(data, f"agent {self.name!r} ({self.source or 'study table'})")
        check_semantics(cfg, f"agent {self.name!r}")
        return cfg

    def describe(self, cfg: ExperimentConfig) -> dict[str, Any]:
        """What the fingerprint and the report record of this agent (a plastic policy's heads resolved:
        :func:`heads_described`)."""
        d = cfg.model_dump()
        d.pop("seed", None)
        for key in PERIODIC_EVAL_KEYS:  # logging only: the trained agent is the same with or without it
            d.get("eval", {}).pop(key, None)
        if d.get("algo") in PLASTIC_ALGOS:
            d["policy_kwargs"] = heads_described(d.get("policy_kwargs") or {})
        return {"config": d, "frozen_plasticity": self.frozen_plasticity}


def heads_described(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A plastic policy's ``policy_kwargs`` as a fingerprint records them: ``net_arch`` resolved against the
    policy's default, so a run made under one default is not reused under another; linear heads
    (``net_arch=[]``) are recorded as no key, which is how every run before the default became
    ``DEFAULT_NET_ARCH`` recorded them (they had linear heads and no key)."""
    kwargs = dict(policy_kwargs)
    heads = kwargs.get("net_arch", list(DEFAULT_NET_ARCH))
    if heads == []:
        kwargs.pop("net_arch", None)
    else:
        kwargs["net_arch"] = heads
    return kwargs


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``changes`` applied; nested mappings are merged key by key, so
    ``{"hyperparameters": {"n_steps": 40}}`` changes one hyperparameter and keeps the others."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def yaml_agent(name: str, filename: str, **changes: Any) -> Agent:
    """An agent read from ``configs/<filename>`` (``changes`` replace top-level keys)."""
    return Agent(name, merged(load_agent_yaml(filename), changes), source=f"configs/{filename}")


# ------------------------------------------------------------------------------ non-plastic baseline
class FreezePlasticity(BaseCallback):
    """Freezes plasticity before the first update (and again after a resume)."""

    def _on_training_start(self) -> None:
        freeze_plasticity(self.model.policy)

    def _on_step(self) -> bool:
        return True


def freeze_callback() -> BaseCallback:
    """A fresh :class:`FreezePlasticity` for one training run of a ``frozen_plasticity`` agent."""
    return FreezePlasticity()


def count_trainable(agent: Agent, **changes: Any) -> int:
    """Trainable parameters of ``agent``'s policy (built on one env, never trained)."""
    cfg = agent.resolved(0, **{"n_envs": 1, **changes})
    venv = build_vec_env(cfg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # SB3: batch_size vs the 1-env rollout (never trained)
            model = tr.build_model(cfg, venv)
    finally:
        venv.close()
    if agent.frozen_plasticity:
        freeze_plasticity(model.policy)
    return sum(p.numel() for p in model.policy.parameters() if p.requires_grad)


def matched_size(agent: Agent, key: str, target: int, upper: int = 1024) -> tuple[int, int]:
    """``(size, count)``: the value of ``policy_kwargs[key]`` (a hidden size) whose trainable-parameter
    count is closest to ``target`` (counts grow with the size, so a bisection finds it)."""

    def count(n: int) -> int:
        return count_trainable(agent, policy_kwargs={key: n})

    lo, hi = 1, upper
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda n: abs(count(n) - target))
    return best, count(best)


# ------------------------------------------------------------------------------ train + load
def run_path(runs_dir: Path, study: str, agent: str, seed: int, fp: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in agent)
    return Path(runs_dir) / study / f"{safe}-seed{seed}-{fp[:8]}"


def train_or_resume(agent: Agent, cfg: ExperimentConfig, path: Path):
    """The trained run at ``path``: reused when finished, resumed from its newest checkpoint when
    interrupted, trained from scratch otherwise. Returns the :class:`~neuromod_rl.experiment.runs.Run`.
    Ctrl-C (or SIGTERM) stops training at a checkpoint and raises ``KeyboardInterrupt``: the study stops,
    and the same command resumes it."""
    run = Run(path)
    callbacks = [freeze_callback()] if agent.frozen_plasticity else []
    opts = tr.TrainOptions(runs_dir=path.parent, progress=False, callbacks=callbacks)
    latest = latest_checkpoint(run) if run.config.is_file() else None
    if (run.model.is_file() and run.config.is_file()) or (latest is not None and latest[2] >= cfg.n_timesteps):
        return run  # finished (a final checkpoint without model.zip is finished too: it is what it holds)
    if latest is not None:
        print(f"resuming {path}", file=sys.stderr)
        result = tr.resume(path, [], opts)
    else:
        if path.exists():  # stopped before its first checkpoint: nothing in it is worth keeping
            shutil.rmtree(path)
        result = tr.train(cfg, opts, run_dir=path)
    result.wandb.finish()
    if not result.finished:
        raise KeyboardInterrupt(f"training of {path} stopped at step {result.num_timesteps}")
    return run


def was_resumed(run) -> bool:
    """Whether ``run`` was trained in more than one segment (each resume starts a new monitor file)."""
    return len(list(run.monitor.glob("*.monitor.csv"))) > 1


def load_trained(run, cfg: ExperimentConfig):
    """``(model, observation normaliser or None)`` of a finished run."""
    torch.set_num_threads(cfg.torch_threads)
    return load_model(run, cfg), normalize.load(run)


def task_split(cfg: ExperimentConfig, **sizes: int) -> tuple[list[Any], list[Any]]:
    """The env's ``(train, test)`` tasks, fixed by the config's seed (``sizes``: ``n_train``, ``n_test``)."""
    env = make_env(cfg)
    try:
        return env.unwrapped.task_split(cfg.seed, **sizes)
    finally:
        env.close()


def episode_limit(cfg: ExperimentConfig) -> int:
    """The env's episode length limit (its registered ``max_episode_steps``); a clear error without one."""
    env = make_env(cfg)
    try:
        limit = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    if not limit:
        raise ValueError(f"env {cfg.env!r} has no episode length limit (max_episode_steps); register it with one")
    return int(limit)


def evaluate(cfg: ExperimentConfig, model, normalizer, tasks: list[Any] | None, episodes: int, seed: int,
             info_keys: tuple[str, ...] = (), batch: int | None = None) -> dict[str, np.ndarray]:
    """Per-step traces of ``episodes`` episodes on ``tasks`` (cycled), all envs in lockstep batches."""
    return rollout(cfg, model, episodes, tasks, EVAL_SEED_OFFSET + seed, cfg.eval.deterministic, progress=False,
                   normalizer=normalizer, batch=batch or episodes, info_keys=info_keys)  # fmt: skip


def mean_curve(traces: dict[str, np.ndarray], key: str = "rewards") -> list[float]:
    """Mean over episodes of a per-step trace (NaN padding ignored), as a JSON-able list."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [float(v) for v in np.nanmean(traces[key], axis=0)]
