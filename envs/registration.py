"""Gymnasium registration of every task as ``neuromod_rl/<Name>-v0``.

``register_envs()`` runs when ``neuromod_rl`` is imported; it registers entry-point *strings*,
so MuJoCo is imported only when a MuJoCo task is made. Without a prior import, Gymnasium's
module form finds the ids: ``gymnasium.make("neuromod_rl:neuromod_rl/Maze-v0")`` (Gymnasium 1.x
loads no plugin entry points). ``ENV_SPECS`` also feeds the docs table and the CLI listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "neuromod_rl"


@dataclass(frozen=True)
class TaskSpec:
    """One registered id and what a user needs to know about it."""

    id: str
    entry_point: str
    description: str
    max_episode_steps: int | None
    changes: str  # what changes from task to task
    switches: str  # when the task changes
    kwargs: dict[str, Any] = field(default_factory=dict)
    mujoco: bool = False
    episode_length: str = "200"  # in steps, for the docs table (classic tasks end by themselves)


_E = "neuromod_rl.envs."
_PER_EPISODE = "new task at every reset"
_MJ_SWITCH = "every reset; mid-episode at `change_at` if set"
_STREAM = "the random symbol stream"

ENV_SPECS: list[TaskSpec] = [
    TaskSpec(
        "neuromod_rl/TwoArmedBandit-v0",
        _E + "bandit:TwoArmedBandit",
        "Bernoulli two-armed bandit, 100 pulls (Wang et al. 2016)",
        None,
        "arm probabilities p1, p2 ~ U[0,1] (`variant`: independent / dependent / fixed)",
        _PER_EPISODE,
        episode_length="100",
    ),
    TaskSpec(
        "neuromod_rl/TwoArmedBanditDependent-v0",
        _E + "bandit:TwoArmedBandit",
        "Two-armed bandit with p2 = 1 - p1",
        None,
        "p1 ~ U[0,1], p2 = 1 - p1",
        _PER_EPISODE,
        {"variant": "dependent"},
        episode_length="100",
    ),
    TaskSpec(
        "neuromod_rl/TwoArmedBanditFixed-v0",
        _E + "bandit:TwoArmedBandit",
        "Two-armed bandit with a fixed-difficulty pair",
        None,
        "which arm is better (pair 0.25/0.75; `difficulty` easy/medium/hard)",
        _PER_EPISODE,
        {"variant": "fixed"},
        episode_length="100",
    ),
    TaskSpec(
        "neuromod_rl/CueReward-v0",
        _E + "cue_reward:CueReward",
        "Cue-reward association, 120 steps (Backpropamine)",
        None,
        "4 random 20-bit cues and which one is the target",
        _PER_EPISODE,
        episode_length="120",
    ),
    TaskSpec(
        "neuromod_rl/Maze-v0",
        _E + "maze:Maze",
        "13x13 maze, invisible goal, 200 steps (Backpropamine)",
        None,
        "goal cell",
        _PER_EPISODE,
    ),
    TaskSpec(
        "neuromod_rl/Maze9-v0", _E + "maze:Maze", "9x9 maze", None, "goal cell", _PER_EPISODE, {"size": 9}
    ),
    TaskSpec(
        "neuromod_rl/Maze11-v0", _E + "maze:Maze", "11x11 maze", None, "goal cell", _PER_EPISODE, {"size": 11}
    ),
    TaskSpec(
        "neuromod_rl/TMaze-v0",
        _E + "tmaze:TMaze",
        "T-maze, 100 trials, high/low reward arms (Soltoggio et al. 2008)",
        None,
        "which arm holds the high reward",
        "reset; the arms swap once at a random trial (25-75%)",
        episode_length="100 trials (<= 200)",
    ),
    TaskSpec(
        "neuromod_rl/Harlow-v0",
        _E + "harlow:Harlow",
        "Harlow learning-to-learn, 6 trials, vector objects",
        None,
        "two random 8-bit objects and which one is rewarded",
        _PER_EPISODE,
        episode_length="6",
    ),
    TaskSpec(
        "neuromod_rl/DelayedCue-v0",
        _E + "delayed_cue:DelayedCue",
        "Delayed match-to-cue memory check (cue, 5 blanks, go)",
        None,
        "which cue (of 2)",
        _PER_EPISODE,
        episode_length="7",
    ),
    TaskSpec(
        "neuromod_rl/Recall-v0",
        _E + "recall:Recall",
        "Repeat-k: name the symbol seen 4 steps earlier (4 kinds, 48 scored steps)",
        None,
        _STREAM,
        _PER_EPISODE,
        episode_length="52",
    ),
    TaskSpec(
        "neuromod_rl/RecallHard-v0",
        _E + "recall:Recall",
        "Repeat-k with k = 8 (4 kinds, 48 scored steps)",
        None,
        _STREAM,
        _PER_EPISODE,
        {"k": 8, "length": 56},
        episode_length="56",
    ),
    TaskSpec(
        "neuromod_rl/Majority-v0",
        _E + "recall:Majority",
        "Name the most frequent of 10 symbols (4 kinds) at a query step",
        None,
        _STREAM,
        _PER_EPISODE,
        episode_length="11",
    ),
    TaskSpec(
        "neuromod_rl/MajorityHard-v0",
        _E + "recall:Majority",
        "Name the most frequent of 24 symbols (6 kinds) at a query step",
        None,
        _STREAM,
        _PER_EPISODE,
        {"length": 24, "n_symbols": 6},
        episode_length="25",
    ),
    TaskSpec(
        "neuromod_rl/Copy-v0",
        _E + "recall:Copy",
        "Copy 3 symbols (4 kinds) back in order after 10 blank steps",
        None,
        _STREAM,
        _PER_EPISODE,
        episode_length="16",
    ),
    TaskSpec(
        "neuromod_rl/CopyHard-v0",
        _E + "recall:Copy",
        "Copy 6 symbols (4 kinds) back in order after 30 blank steps",
        None,
        _STREAM,
        _PER_EPISODE,
        {"sequence_length": 6, "delay": 30},
        episode_length="42",
    ),
    TaskSpec(
        "neuromod_rl/HalfCheetahVel-v0",
        _E + "locomotion:HalfCheetahVel",
        "HalfCheetah-v5 body, run at a target velocity",
        200,
        "target velocity ~ U[0, 3]",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/HalfCheetahDir-v0",
        _E + "locomotion:HalfCheetahDir",
        "HalfCheetah-v5 body, run forward or backward",
        200,
        "direction +-1",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/AntDir-v0",
        _E + "locomotion:AntDir",
        "Ant-v5 body, run along a direction",
        200,
        "direction angle ~ U[0, 2pi)",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/AntGoal-v0",
        _E + "locomotion:AntGoal",
        "Ant-v5 body, walk to a goal",
        200,
        "goal uniform in a disc of radius 3",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/CrippledHalfCheetah-v0",
        _E + "crippled:CrippledHalfCheetah",
        "HalfCheetah-v5 with one joint disabled",
        200,
        "disabled joint (5 train joints; ffoot held out, `split='test'`)",
        "every reset; with `change_at` intact until the joint breaks mid-episode",
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/CrippledAnt-v0",
        _E + "crippled:CrippledAnt",
        "Ant-v5 with one leg disabled",
        200,
        "disabled leg (3 train legs; leg 4 held out, `split='test'`)",
        "every reset; with `change_at` intact until the leg breaks mid-episode",
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/HalfCheetahRandParams-v0",
        _E + "rand_params:HalfCheetahRandParams",
        "HalfCheetah-v5 with randomised dynamics",
        200,
        "mass, inertia, friction x1.5^u, damping x1.3^u, u ~ U[-3,3] per element",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/HopperRandParams-v0",
        _E + "rand_params:HopperRandParams",
        "Hopper-v5 with randomised dynamics",
        200,
        "mass, inertia, friction x1.5^u, damping x1.3^u, u ~ U[-3,3] per element",
        _MJ_SWITCH,
        mujoco=True,
    ),
]

# tasks where one step of feedback does not reveal the task, so memory is necessary (docs/envs.md)
ENV_SPECS += [
    TaskSpec(
        "neuromod_rl/HiddenGoalCorridor-v0",
        _E + "corridor:HiddenGoalCorridor",
        "Dark corridor, goal 3-6 cells left or right, 40 steps (needs memory)",
        None,
        "goal cell +-d, d in 3..6 (8 goals)",
        _PER_EPISODE,
        episode_length="40",
    ),
    TaskSpec(
        "neuromod_rl/HalfCheetahHiddenGoal-v0",
        _E + "hidden_goal:HalfCheetahHiddenGoal",
        "HalfCheetah-v5 body, find a hidden goal without seeing its own x (needs memory)",
        200,
        "goal at +-d on the x axis, d ~ U[2, 4] m",
        _MJ_SWITCH,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/HalfCheetahCueDir-v0",
        _E + "cue_run:HalfCheetahCueDir",
        "HalfCheetah-v5 body, direction cued for 10 steps, body reset, run paid at the end (needs memory)",
        200,
        "direction +-1",
        _PER_EPISODE,
        mujoco=True,
    ),
    TaskSpec(
        "neuromod_rl/ReacherHiddenGoal-v0",
        _E + "reacher:ReacherHiddenGoal",
        "Reacher-v5 arm, paid only within 10 cm of a target it never sees (needs memory)",
        50,
        "target uniform in the annulus 5-20 cm from the shoulder",
        _MJ_SWITCH,
        mujoco=True,
        episode_length="50",
    ),
    TaskSpec(
        "neuromod_rl/ReacherCue-v0",
        _E + "reacher:ReacherCue",
        "Reacher-v5 arm, target shown for 5 steps, then the arm is reset and the target hidden (needs memory)",
        None,
        "target uniform in the annulus 5-20 cm from the shoulder",
        _PER_EPISODE,
        mujoco=True,
        episode_length="50",
    ),
]

_NO_VEL = "fixed task: the velocity entries of the observation are zeroed"
ENV_SPECS += [
    TaskSpec(
        f"neuromod_rl/{base.split('-v')[0]}NoVel-v{base.split('-v')[1]}",
        _E + "masked:make_no_vel",
        f"{base} with velocities masked (rl-zoo3's memory benchmark)",
        None,
        _NO_VEL,
        "never",
        {"base_id": base},
        episode_length=length,
    )
    for base, length in (
        ("CartPole-v1", "500"),
        ("Pendulum-v1", "200"),
        ("MountainCar-v0", "200"),
        ("MountainCarContinuous-v0", "999"),
    )
]

ENV_IDS: list[str] = [spec.id for spec in ENV_SPECS]


def register_envs() -> None:
    """Register every id in ``ENV_SPECS`` with Gymnasium (idempotent: known ids are skipped)."""
    import gymnasium

    for spec in ENV_SPECS:
        if spec.id in gymnasium.registry:
            continue
        gymnasium.register(
            id=spec.id,
            entry_point=spec.entry_point,
            max_episode_steps=spec.max_episode_steps,
            kwargs=dict(spec.kwargs),
        )
