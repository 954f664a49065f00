"""The memory suite (rl-zoo3's velocity-masked tasks) and the core sweep over it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuromod_rl.studies import command as reproduce

torch.set_num_threads(1)




def test_pomdp_suite_smoke_writes_report_and_resumes(tmp_path):
    """The memory suite at smoke scale: every agent trains, is evaluated and timed; the report has the
    claims and the table; a second call finds every run done (results are kept) and trains nothing."""
    from neuromod_rl.studies.memory import pomdp_suite, throughput

    assert pomdp_suite.MODULE == pomdp_suite.__name__  # the worker processes import it by this name
    assert throughput.THIS == throughput.__name__  # and the timing processes this one
    assert reproduce.main(["pomdp", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "pomdp.md").read_text()
    assert "| claim | reproduced | evidence |" in report and "RecurrentPPO (LSTM, zoo)" in report
    assert "env-steps/s (timed)" in report and (tmp_path / "pomdp_curves.png").stat().st_size > 0
    assert "share of fast weights at the clip bound" in report and (tmp_path / "pomdp_traces.png").stat().st_size > 0
    store = tmp_path / "pomdp.smoke.runs.json"
    runs = json.loads(store.read_text())["runs"]
    assert sorted(k.split("/")[1] for k in runs) == sorted(pomdp_suite.AGENTS)
    assert all(len(r["result"]["curve"]) == 2 and np.isfinite(r["result"]["final_return"]) for r in runs.values())
    before = store.stat().st_mtime_ns
    assert reproduce.main(["pomdp", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    assert store.stat().st_mtime_ns == before


def test_pomdp_tasks_option_keeps_the_suites_order():
    """``--tasks`` runs a subset of the suite (the report then covers only those), in the suite's order."""
    from neuromod_rl.studies.memory.pomdp import SCALES, with_tasks

    s = with_tasks(SCALES["default"], ("CartPoleNoVel-v1", "PendulumNoVel-v1"))
    assert s.tasks == ("PendulumNoVel-v1", "CartPoleNoVel-v1") and s.seeds == SCALES["default"].seeds
    assert with_tasks(SCALES["default"], None) is SCALES["default"]
    with pytest.raises(ValueError, match="unknown pomdp task"):
        with_tasks(SCALES["default"], ("Nope-v0",))


def test_pomdp_target_needs_an_anchor_that_learned():
    """Where RecurrentPPO stays at memoryless PPO's level, "reaching its final return" is trivially true
    at the first evaluation: the claim then asks for the task's threshold instead."""
    import dataclasses

    from neuromod_rl.studies.memory.pomdp import SCALES
    from neuromod_rl.studies.memory.summary import summarise, verdicts

    task = "MountainCarNoVel-v0"
    s = dataclasses.replace(SCALES["default"], tasks=(task,), agents=("recurrent_ppo", "plastic_lstm", "ppo"))

    def verdict(rppo: float, plastic: list[float], ppo: float = -200.0):
        def run(values):  # an evaluation every 100k steps
            return {"curve": [(100_000 * (i + 1), v) for i, v in enumerate(values)], "final_return": values[-1],
                    "train_seconds": 60.0}

        curves = {"recurrent_ppo": [-200.0, -200.0, rppo], "plastic_lstm": plastic, "ppo": [-200.0, -200.0, ppo]}
        results = {(f"{task}/{a}", k): run(c) for a, c in curves.items() for k in range(3)}
        speed = {"recurrent_ppo": 1000.0, "plastic_lstm": 3000.0, "ppo": 5000.0}  # env-steps/s
        summary = summarise(results, s, [0, 1, 2], {task: speed})
        [(text, ok, _)] = verdicts(summary, "plastic_lstm")
        return summary[task]["learned"], text, ok

    learned, text, ok = verdict(-200.0, [-200.0, -200.0, -200.0])  # nobody learned: the floor is no target
    assert not learned and "judged on the task's threshold" in text and not ok
    learned, text, ok = verdict(-200.0, [-200.0, -150.0, -105.0])  # the plastic agent solves what RPPO did not
    assert not learned and "judged on the task's threshold" in text and ok
    learned, text, ok = verdict(-120.0, [-200.0, -118.0, -118.0])  # RPPO learned: final, steps and wall time
    assert learned and "reaches RecurrentPPO's final return" in text and ok
    assert not verdict(-120.0, [-200.0, -200.0, -150.0])[2]


def test_core_sweep_smoke_writes_report_and_resumes(tmp_path):
    """The core sweep at smoke scale: each variant trains through the pomdp worker and is ranked; a
    second call trains nothing."""
    assert reproduce.main(["core-sweep", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "core-sweep.md").read_text()
    assert "no single change beats the default core" in report and "| hidden_size=32 |" in report
    assert "## Mean rank over the tasks" in report and (tmp_path / "core-sweep_curves.png").stat().st_size > 0
    store = tmp_path / "core-sweep.smoke.runs.json"
    runs = json.loads(store.read_text())["runs"]
    assert sorted(runs) == ["PendulumNoVel-v1/default/seed0", "PendulumNoVel-v1/hidden_size=32/seed0"]
    assert len({r["fingerprint"] for r in runs.values()}) == 2  # the variants are different runs
    before = store.stat().st_mtime_ns
    assert reproduce.main(["core-sweep", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    assert store.stat().st_mtime_ns == before


def test_core_sweep_variant_reaches_the_policy():
    """A variant's plastic keys are the policy's (hidden_size=32 builds a 32-neuron core; the frozen
    variant trains with alpha held at 0); plastic keys for a non-plastic agent are refused by name."""
    from stable_baselines3.common.env_util import make_vec_env

    from neuromod_rl.studies.memory import core_sweep
    from neuromod_rl.studies.memory import pomdp_suite as pomdp

    task = pomdp.TASKS["CartPoleNoVel-v1"]
    env = make_vec_env(task.env_id, n_envs=task.n_envs, seed=0)
    model = pomdp.build(task, core_sweep._agent(), 0, env, plastic=core_sweep.VARIANTS["hidden_size=32"])
    assert model.policy.core_config.hidden_size == 32
    assert pomdp.build(task, core_sweep._agent(), 0, env).policy.core_config.hidden_size == 64
    frozen = pomdp.build(task, core_sweep._agent(), 0, env, overrides={"n_steps": 32, "batch_size": 64},
                         plastic=core_sweep.VARIANTS["plasticity off (alpha = 0)"])
    frozen.learn(256)  # trained, the plastic gain stays exactly 0: no fast weight reaches the network
    alphas = [p for n, p in frozen.policy.named_parameters() if n.endswith("alpha")]
    assert alphas and all(not p.requires_grad and torch.count_nonzero(p) == 0 for p in alphas)
    assert pomdp.describe_policy("CartPoleNoVel-v1", "plastic_lstm", {pomdp.FROZEN: True}) != pomdp.describe_policy(
        "CartPoleNoVel-v1", "plastic_lstm")
    with pytest.raises(ValueError, match="plastic policy keys \\['hidden_size'\\] given to the non-plastic agent"):
        pomdp.build(task, "ppo", 0, env, plastic={"hidden_size": 32})


def test_matched_minibatch_variant_trains_on_minibatches_of_batch_size():
    """``bptt_length=batch_size`` where a rollout per env is longer than batch_size (PendulumNoVel: 1024
    steps, batch_size 64: 16x the gradient steps), whole rollouts where it is not; a run of its own."""
    from stable_baselines3.common.env_util import make_vec_env

    from neuromod_rl.studies.memory import core_sweep
    from neuromod_rl.studies.memory import pomdp_suite as pomdp

    variant = core_sweep.VARIANTS["bptt_length=batch_size (RecurrentPPO's minibatches)"]
    assert pomdp.matched_bptt(pomdp.TASKS["PendulumNoVel-v1"].hyperparameters) == 64
    assert pomdp.matched_bptt(pomdp.TASKS["MountainCarContinuousNoVel-v0"].hyperparameters) == 256
    assert pomdp.matched_bptt(pomdp.TASKS["CartPoleNoVel-v1"].hyperparameters) == "episode"
    assert pomdp.matched_bptt({"n_steps": 100, "batch_size": 64}) == "episode"  # 64 does not divide 100
    task = pomdp.TASKS["PendulumNoVel-v1"]
    env = make_vec_env(task.env_id, n_envs=task.n_envs, seed=0)
    model = pomdp.build(task, core_sweep._agent(), 0, env, plastic=variant)
    assert model.bptt_length == 64 and model.rollout_buffer.seq_len == 64
    assert model.policy.core_config == pomdp.build(task, core_sweep._agent(), 0, env).policy.core_config
    assert pomdp.describe_policy("PendulumNoVel-v1", "plastic_lstm", variant) != pomdp.describe_policy(
        "PendulumNoVel-v1", "plastic_lstm")


def test_core_sweep_verdicts_follow_the_numbers():
    """The default passes a task when its median is at least the best variant's lower quartile, and
    the overall claim when it has the best mean rank."""
    from neuromod_rl.studies.memory.core_sweep import Settings, mean_ranks, summarise, verdicts

    def result(final):
        return {"final_return": final, "curve": [(1000, final)], "train_seconds": 1.0}

    a, b = "PendulumNoVel-v1", "CartPoleNoVel-v1"
    finals = {(a, "default"): [10, 11, 12], (a, "x"): [9, 12, 20], (b, "default"): [1, 2, 3], (b, "x"): [7, 8, 9]}
    results = {(f"{t}/{v}", k): result(f) for (t, v), fs in finals.items() for k, f in enumerate(fs)}
    summary = summarise(results, Settings(tasks=(a, b), variants=("default", "x")), [0, 1, 2])
    assert summary[a]["x"]["rank"] == 1 and summary[b]["x"]["rank"] == 1
    assert mean_ranks(summary) == {"default": 2.0, "x": 1.0}
    claims = {text.split(":")[0]: ok for text, ok, _ in verdicts(summary)}
    assert claims[a] is True and claims[b] is False  # on a, x's median is higher but 11 >= its q1 10.5
    assert claims["the default core has the best mean rank over the tasks"] is False
    # at a ceiling the steps to the threshold decide, and what is still equal shares its places
    ceiling = {(b, "default"): [500, 500, 500], (b, "x"): [500, 500, 500]}
    tied = {(f"{t}/{v}", k): {**result(f), "curve": [(1000, 100.0), (2000, f)]} for (t, v), fs in ceiling.items()
            for k, f in enumerate(fs)}  # fmt: skip
    tied[(f"{b}/x", 0)]["curve"] = tied[(f"{b}/x", 1)]["curve"] = [(1000, 500.0), (2000, 500.0)]  # x is faster
    ranked = summarise(tied, Settings(tasks=(b,), variants=("default", "x")), [0, 1, 2])[b]
    assert (ranked["x"]["rank"], ranked["default"]["rank"]) == (1, 2)
    tied[(f"{b}/default", 0)]["curve"] = tied[(f"{b}/default", 1)]["curve"] = [(1000, 500.0), (2000, 500.0)]
    ranked = summarise(tied, Settings(tasks=(b,), variants=("default", "x")), [0, 1, 2])[b]
    assert ranked["x"]["rank"] == ranked["default"]["rank"] == 1.5


def test_steps_to_level():
    from neuromod_rl.studies.memory.summary import steps_to

    curve = [(100, -500.0), (200, -150.0), (300, -90.0)]
    assert steps_to(curve, -200) == 200 and steps_to(curve, 0) == float("inf")
