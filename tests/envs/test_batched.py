"""Batched tasks (``neuromod_rl.envs.batched``) reproduce their Gymnasium versions.

Each task is checked three ways: step-by-step identical trajectories against the Gymnasium env with the
same task and actions (the Gymnasium env's own in-episode randomness is copied into the batched lane), the
same return statistics under uniformly random play, and the SB3 ``VecEnv`` adapter's conventions.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecMonitor

import neuromod_rl  # noqa: F401  (registers the ids)
from neuromod_rl.envs.batched import BATCHED_ENV_IDS, BatchedTaskEnv, BatchedVecEnv, make_batched
from neuromod_rl.envs.batched.tensors import distinct_sign_vectors

torch.set_num_threads(1)


# --------------------------------------------------------------------------- per-task adapters
def _cue_task(t):
    return {"cues": t["cues"][None], "target": [t["target"]]}


def _sync_cue(genv, benv) -> bool:
    """Copy the gym env's current trial (its own draws) into lane 0; the obs does not change (a trial
    always opens with a blank step, so the step's observation already agrees)."""
    trial = torch.full_like(benv.trial[0], -1)
    trial[: len(genv._trial)] = torch.tensor(genv._trial)
    benv.trial[0], benv.trial_len[0] = trial, len(genv._trial)
    benv.trial_step[0], benv.target_shown[0] = genv._trial_step, genv._target_shown
    return False


def _sync_maze(genv, benv) -> bool:
    """Copy the gym env's position when it teleported (its own draw)."""
    if tuple(benv.pos[0].tolist()) == genv._pos:
        return False
    benv.pos[0] = torch.tensor(genv._pos)
    return True


def _sync_harlow(genv, benv) -> bool:
    """Copy which object the gym env put on the left (its own draw)."""
    benv.left[0] = genv._left
    return True


CASES: dict[str, tuple[dict, Callable, Callable | None]] = {
    # id: (forced task, gym task -> batched lane-0 task, sync of in-episode randomness)
    "neuromod_rl/TwoArmedBandit-v0": ({"p": (1.0, 0.0)}, lambda t: {"p": [t["p"]]}, None),
    "neuromod_rl/TwoArmedBanditDependent-v0": ({"p": (0.0, 1.0)}, lambda t: {"p": [t["p"]]}, None),
    "neuromod_rl/TwoArmedBanditFixed-v0": ({"p": (1.0, 0.0)}, lambda t: {"p": [t["p"]]}, None),
    "neuromod_rl/CueReward-v0": (None, _cue_task, _sync_cue),
    "neuromod_rl/Maze-v0": ({"goal": (6, 5)}, lambda t: {"goal": [t["goal"]]}, _sync_maze),
    "neuromod_rl/Maze9-v0": ({"goal": (4, 3)}, lambda t: {"goal": [t["goal"]]}, _sync_maze),
    "neuromod_rl/Maze11-v0": ({"goal": (5, 4)}, lambda t: {"goal": [t["goal"]]}, _sync_maze),
    "neuromod_rl/TMaze-v0": (
        {"high_arm": 1, "switch_trial": 3},
        lambda t: {"high_arm": [t["high_arm"]], "switch_trial": [t["switch_trial"]]},
        None,
    ),
    "neuromod_rl/Harlow-v0": (
        None,
        lambda t: {"objects": t["objects"][None], "rewarded": [t["rewarded"]]},
        _sync_harlow,
    ),
    "neuromod_rl/DelayedCue-v0": ({"cue": 1}, lambda t: {"cue": [t["cue"]]}, None),
}


def test_every_batched_id_is_covered_here():
    assert set(CASES) == set(BATCHED_ENV_IDS)


# --------------------------------------------------------------------------- (a) identical trajectories
@pytest.mark.parametrize("env_id", list(CASES))
def test_same_task_and_actions_give_the_same_trajectory(env_id):
    """Lane 0 of the batched env, forced to the gym env's task, steps exactly like the gym env (observations,
    rewards, ends, final observations, the next episode); the other lanes run their own tasks alongside."""
    forced, to_batched, sync = CASES[env_id]
    genv = gymnasium.make(env_id)
    benv = make_batched(env_id, 3)
    rng = np.random.default_rng(0)
    n_actions = benv.single_action_space.n

    def start(seed=None):
        obs_g, info = genv.reset(seed=seed, options={"task": forced} if forced else None)
        task = info["task"]
        obs_b = benv.set_tasks(to_batched(task), lanes=[0])
        if sync is not None and sync(genv.unwrapped, benv):
            obs_b = benv._observe()
        np.testing.assert_allclose(obs_b[0].numpy(), obs_g, atol=1e-6)
        return task

    benv.reset(seed=1)
    task = start(seed=0)
    episodes, reached = 0, 0
    for _ in range(450):
        a = int(rng.integers(n_actions))
        obs_g, r_g, term_g, trunc_g, info = genv.step(a)
        actions = torch.randint(0, n_actions, (3,))
        actions[0] = a
        obs_b, r_b, term_b, trunc_b = benv.step(actions)
        reached += bool(info.get("reached_goal", False))
        assert r_b[0].item() == pytest.approx(r_g, abs=1e-6)
        assert (bool(term_b[0]), bool(trunc_b[0])) == (term_g, trunc_g)
        if term_g or trunc_g:
            final = benv.final_observation[0].numpy()
            if env_id == "neuromod_rl/Harlow-v0" and not np.array_equal(final[:8], obs_g[:8]):
                final = np.concatenate([final[8:16], final[:8], final[16:]])  # the last side draw is free
            np.testing.assert_allclose(final, obs_g, atol=1e-6)
            episodes += 1
            task = start()
            continue
        if sync is not None and sync(genv.unwrapped, benv):
            obs_b = benv._observe()
        np.testing.assert_allclose(obs_b[0].numpy(), obs_g, atol=1e-6)
    assert episodes >= 1, "the comparison must cross an episode boundary"
    if "Maze" in env_id and env_id != "neuromod_rl/TMaze-v0":
        assert reached >= 1, "the comparison must include a goal reached"
    assert isinstance(task, dict)


def test_the_task_is_sampled_like_the_gym_version():
    """Distinctness and uniform order of the ±1 vectors (cues, objects), and each task family's law."""
    g = torch.Generator().manual_seed(0)
    full = distinct_sign_vectors(500, 4, 2, g, torch.device("cpu"))  # all 4 codes, in uniform order
    assert all(len({tuple(v) for v in lane.tolist()}) == 4 for lane in full)
    first = ((full[:, 0] + 1) / 2 @ torch.tensor([1.0, 2.0])).long()
    counts = torch.bincount(first, minlength=4).float()
    assert (counts - 125).abs().max() < 4.5 * (500 * 0.25 * 0.75) ** 0.5
    dep = make_batched("neuromod_rl/TwoArmedBanditDependent-v0", 400)
    dep.reset(seed=0)
    assert torch.allclose(dep.task["p"].sum(1), torch.ones(400))
    fixed = make_batched("neuromod_rl/TwoArmedBanditFixed-v0", 400, difficulty="easy")
    fixed.reset(seed=0)
    assert {tuple(round(x, 4) for x in p) for p in fixed.task["p"].tolist()} == {(0.1, 0.9), (0.9, 0.1)}
    maze = make_batched("neuromod_rl/Maze9-v0", 4000)
    maze.reset(seed=0)
    goals = {tuple(c) for c in maze.task["goal"].tolist()}
    assert goals == {tuple(c) for c in gymnasium.make("neuromod_rl/Maze9-v0").unwrapped.goal_cells}
    tm = make_batched("neuromod_rl/TMaze-v0", 4000)
    tm.reset(seed=0)
    switch = tm.task["switch_trial"]
    assert (int(switch.min()), int(switch.max())) == (25, 75)


def test_cue_reward_trials_follow_the_gym_law():
    """A trial: blank, ``n_cues // 2`` distinct cues among ``n_cues // 2 + U{0..n_cues-1}`` middle steps at
    uniform places, go, blank; the target is shown in half the trials (2 of 4 cues shown)."""
    env = make_batched("neuromod_rl/CueReward-v0", 4000)
    env.reset(seed=0)
    trial, length = env.trial, env.trial_len
    middle = length - 3 - 2
    assert set(middle.tolist()) == {0, 1, 2, 3}
    assert (torch.bincount(middle, minlength=4).float() - 1000).abs().max() < 4.5 * (4000 * 0.25 * 0.75) ** 0.5
    lanes = torch.arange(4000)
    assert (
        (trial[:, 0] == -1).all() and (trial[lanes, length - 1] == -1).all() and (trial[lanes, length - 2] == -2).all()
    )
    cues = trial[:, 1:-2]
    assert ((cues >= 0).sum(1) == 2).all(), "two distinct cues per trial"
    shown = torch.where(cues >= 0, cues, -10 - torch.arange(cues.shape[1]))
    assert (shown.sort(1).values.diff(1) != 0).all()
    assert abs(env.target_shown.float().mean().item() - 0.5) < 4.5 * (0.25 / 4000) ** 0.5
    # in the longest trials (middle of 5 steps) every middle step holds a cue equally often (2/5)
    longest = (cues[middle == 3, :5] >= 0).float().mean(0)
    assert (longest - 0.4).abs().max() < 0.06


# --------------------------------------------------------------------------- (b) random-play statistics
def _gym_returns(env_id: str, episodes: int) -> np.ndarray:
    env = gymnasium.make(env_id)
    rng = np.random.default_rng(0)
    out = []
    env.reset(seed=0)
    for _ in range(episodes):
        env.reset()
        total, absolute, length, done = 0.0, 0.0, 0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            total, absolute, length, done = total + r, absolute + abs(r), length + 1, term or trunc
        out.append((total, absolute, length))
    return np.array(out)


def _batched_returns(env_id: str, episodes: int) -> np.ndarray:
    env = make_batched(env_id, episodes)
    env.reset(seed=0)
    g = torch.Generator().manual_seed(1)
    total = torch.zeros(episodes)
    absolute = torch.zeros(episodes)
    length = torch.zeros(episodes)
    open_ = torch.ones(episodes, dtype=torch.bool)  # lanes still in their first episode
    while bool(open_.any()):
        actions = torch.randint(0, env.single_action_space.n, (episodes,), generator=g)
        _, r, term, trunc = env.step(actions)
        total += r * open_
        absolute += r.abs() * open_
        length += open_
        open_ &= ~(term | trunc)
    # a sum of |reward| counts the scored steps (go steps of CueReward, arm ends and crashes of TMaze)
    return torch.stack([total, absolute, length], dim=1).double().numpy()


@pytest.mark.parametrize(
    ("env_id", "episodes"),
    [
        ("neuromod_rl/TwoArmedBandit-v0", 200),
        ("neuromod_rl/TwoArmedBanditDependent-v0", 200),
        ("neuromod_rl/TwoArmedBanditFixed-v0", 200),
        ("neuromod_rl/CueReward-v0", 150),
        ("neuromod_rl/Maze9-v0", 150),
        ("neuromod_rl/TMaze-v0", 200),
        ("neuromod_rl/Harlow-v0", 400),
        ("neuromod_rl/DelayedCue-v0", 400),
    ],
)
def test_random_play_has_the_same_return_statistics(env_id, episodes):
    """Mean return, mean sum of |reward| and mean length agree within 4.5 standard errors."""
    gym_stats, batched_stats = _gym_returns(env_id, episodes), _batched_returns(env_id, episodes)
    for col, name in enumerate(("return", "sum |reward|", "length")):
        a, b = gym_stats[:, col], batched_stats[:, col]
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se + 1e-9, (name, a.mean(), b.mean(), se)


# --------------------------------------------------------------------------- (c) the SB3 adapter
def test_vec_env_follows_sb3_conventions():
    venv = BatchedVecEnv(make_batched("neuromod_rl/DelayedCue-v0", 3))
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (3, 3) and obs.dtype == np.float32
    assert venv.observation_space.contains(obs[0]) and venv.action_space.n == 2
    cue = obs[:, :2].argmax(1)
    for t in range(7):
        obs, rewards, dones, infos = venv.step(cue if t == 6 else np.zeros(3, dtype=np.int64))
        assert rewards.shape == (3,) and rewards.dtype == np.float32 and dones.dtype == bool
        assert len(infos) == 3
    assert dones.all() and (rewards == 1.0).all()
    for info in infos:
        assert info["TimeLimit.truncated"] is False
        np.testing.assert_array_equal(info["terminal_observation"], [0, 0, 0])
    assert (obs[:, :2].sum(1) == 1).all(), "autoreset: the returned obs opens the next episode"
    # attributes and methods answer once per env; nothing wraps a batched env
    assert venv.get_attr("n_cues") == [2, 2, 2] and venv.get_attr("delay", indices=[1]) == [5]
    venv.set_attr("wrong_reward", -1.0)
    assert venv.batched.wrong_reward == -1.0
    with pytest.raises(ValueError, match="indices=None"):
        venv.set_attr("wrong_reward", 0.0, indices=[0])
    assert venv.env_method("get_tasks", indices=[0, 2])[0]["cue"].shape == (3,)
    assert venv.env_is_wrapped(VecMonitor) == [False] * 3


def test_vec_env_reports_truncation_and_is_reproducible_by_seed():
    def rollout(seed):
        venv = VecMonitor(BatchedVecEnv(make_batched("neuromod_rl/Maze9-v0", 2, max_episode_steps=5)))
        venv.seed(seed)
        out = [venv.reset()]
        for t in range(5):
            obs, _, dones, infos = venv.step(np.array([t % 4, (t + 1) % 4]))
            out.append(obs)
        assert dones.all()
        assert all(info["TimeLimit.truncated"] and info["episode"]["l"] == 5 for info in infos)
        assert all(info["terminal_observation"].shape == (16,) for info in infos)
        return np.stack(out)

    np.testing.assert_array_equal(rollout(3), rollout(3))


def test_batched_env_reset_seed_fixes_the_task_sequence():
    a, b = make_batched("neuromod_rl/CueReward-v0", 4), make_batched("neuromod_rl/CueReward-v0", 4)
    obs_a, obs_b = a.reset(seed=7), b.reset(seed=7)
    for _ in range(130):
        actions = torch.tensor([0, 1, 1, 0])
        obs_a, obs_b = a.step(actions)[0], b.step(actions)[0]
        assert torch.equal(obs_a, obs_b)
    assert torch.equal(a.task["cues"], b.task["cues"])


# --------------------------------------------------------------------------- (d) PlasticPPO on it
def test_plastic_ppo_learns_on_a_batched_vec_env():
    from neuromod_rl.agents import PlasticPPO

    venv = BatchedVecEnv(make_batched("neuromod_rl/DelayedCue-v0", 2))
    model = PlasticPPO(
        "MlpPlasticPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, policy_kwargs=dict(hidden_size=4)
    )
    model.learn(64)
    assert model.num_timesteps == 64
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("env_id", BATCHED_ENV_IDS)
def test_batched_tasks_run_on_cuda_with_the_cpu_return_law(env_id):
    """On a GPU (masked resets every step, no host sync) the random-play mean return matches the CPU one."""
    means = {}
    for device in ("cpu", "cuda"):
        env = make_batched(env_id, 256, device=device)
        obs = env.reset(seed=0)
        assert obs.device.type == device and obs.dtype == torch.float32
        g = torch.Generator(device=device).manual_seed(1)
        total = torch.zeros(256, device=device)
        for _ in range(210):
            actions = torch.randint(0, env.single_action_space.n, (256,), generator=g, device=device)
            obs, r, term, trunc = env.step(actions)
            total += r
        assert torch.isfinite(obs).all() and env.final_observation.device.type == device
        means[device] = total.double().cpu()
    a, b = means["cpu"], means["cuda"]
    se = (a.var() / len(a) + b.var() / len(b)).sqrt().item()
    assert abs(a.mean().item() - b.mean().item()) <= 4.5 * se + 1e-9


# --------------------------------------------------------------------------- (e) bad input
def test_bad_actions_raise_errors_that_name_the_fix():
    env = make_batched("neuromod_rl/TMaze-v0", 3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(3, dtype=torch.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="torch.as_tensor"):
        env.step([0, 1, 2])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        env.step(torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"actions.long\(\)"):
        env.step(torch.zeros(3))
    with pytest.raises(ValueError, match="valid actions: 0 to 2"):
        env.step(torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="whole numbers"):
        BatchedVecEnv(env).step_async(np.array([0.5, 1.0, 0.0]))


def test_bad_ids_tasks_and_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="supported ids are .*CueReward-v0"):
        make_batched("neuromod_rl/Recall-v0", 2)
    with pytest.raises(ValueError, match="num_envs"):
        make_batched("neuromod_rl/Maze-v0", 0)
    with pytest.raises(ValueError, match="size"):
        make_batched("neuromod_rl/Maze-v0", 2, size=10)
    maze = make_batched("neuromod_rl:neuromod_rl/Maze-v0", 2)
    maze.reset(seed=0)
    with pytest.raises(ValueError, match="pillars"):
        maze.set_tasks({"goal": [[2, 2]]}, lanes=[1])
    with pytest.raises(ValueError, match="valid lanes"):
        maze.set_tasks({"goal": [[1, 1]]}, lanes=[2])
    with pytest.raises(ValueError, match=r"keys \['goal'\]"):
        maze.set_tasks({"cell": [[1, 1]]}, lanes=[0])
    with pytest.raises(ValueError, match="BatchedTaskEnv"):
        BatchedVecEnv(gymnasium.make("neuromod_rl/Maze-v0"))
    assert isinstance(maze, BatchedTaskEnv)


def test_importing_the_envs_does_not_import_the_batched_tasks():
    code = "import sys, neuromod_rl.envs; print('neuromod_rl.envs.batched' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
