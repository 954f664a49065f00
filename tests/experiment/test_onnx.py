"""ONNX export of a stateful plastic policy: the graph run by onnxruntime follows ``predict`` with state
step for step (actions equal, values and state within 1e-5), for both cores and both modulated rules,
and it runs with numpy and onnxruntime alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.cli import main
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.export import ONNX_FORMAT, export_onnx

B, T = 2, 200


@pytest.fixture(autouse=True)
def _one_thread():
    """Small policies step fastest on one thread (and two contend on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(env_id: str, core: str, rule: str, **env_kwargs) -> PlasticPPO:
    """A freshly built model (untrained: what is tested is that the graph computes what the policy does)."""
    torch.manual_seed(0)
    env = gym.make(env_id, **env_kwargs)
    return PlasticPPO("MlpPlasticPolicy", env, n_steps=8, batch_size=8, seed=0,
                      policy_kwargs=dict(core=core, rule=rule, hidden_size=16))


def _run_episode(model, path, env_id, **env_kwargs):
    """One episode of ``T`` steps in ``B`` envs, acting with onnxruntime; at every step the graph's action
    and next state are compared with the policy's ``predict`` (carrying its own state), every 10th step
    its value with the policy's."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    envs = [gym.make(env_id, **env_kwargs) for _ in range(B)]
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    policy = model.policy
    onnx_state = np.zeros((B, policy.state_dim), np.float32)  # any values: episode_start resets them
    state, start = None, np.ones(B, dtype=bool)
    worst = 0.0
    for t in range(T):
        action, value, onnx_state_next = session.run(None, {"obs": obs, "state": onnx_state, "episode_start": start})
        expected, state_next = model.predict(obs, state=state, episode_start=start, deterministic=True)
        if t % 10 == 0:  # the value (predict does not return it) from the policy's own step
            with torch.no_grad():
                torch_state = policy.initial_state(B) if state is None else policy.unpack_state(torch.as_tensor(state))
                ref_value = policy.step(torch.as_tensor(obs), torch_state, torch.as_tensor(start), True).values
            np.testing.assert_allclose(value, ref_value.numpy(), atol=1e-5, rtol=0, err_msg=f"step {t}")
        if isinstance(model.action_space, gym.spaces.Discrete):
            assert action.dtype == np.int64 and np.array_equal(action, expected), t
        else:
            np.testing.assert_allclose(action, expected, atol=1e-5, rtol=0, err_msg=f"step {t}")
        np.testing.assert_allclose(onnx_state_next, state_next, atol=1e-5, rtol=0, err_msg=f"step {t}")
        worst = max(worst, float(np.abs(onnx_state_next - state_next).max()))
        onnx_state, state, start = onnx_state_next, state_next, np.zeros(B, dtype=bool)
        steps = [env.step(a) for env, a in zip(envs, action)]
        obs = np.stack([s[0] for s in steps]).astype(np.float32)
        assert not any(s[2] or s[3] for s in steps[:-1]) or t == T - 1
    return worst, onnx_state


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("rule", ["neuromod", "retroactive"])
def test_onnx_step_follows_predict_for_a_whole_episode(tmp_path, core, rule):
    env_id, kwargs = "neuromod_rl/TwoArmedBanditDependent-v0", {"n_pulls": T}
    model = _model(env_id, core, rule, **kwargs)
    path = export_onnx(model, tmp_path / "policy.onnx")
    worst, final_state = _run_episode(model, path, env_id, **kwargs)
    assert np.abs(final_state).max() > 0.01  # the traces moved: the state really went through the graph
    assert worst < 1e-5


def test_onnx_box_actions_are_clipped_as_predict_clips_them(tmp_path):
    model = _model("Pendulum-v1", "rnn", "neuromod")
    with torch.no_grad():  # means beyond the bounds [-2, 2] for some observations
        model.policy.action_net.weight.mul_(1000.0)
    path = export_onnx(model, tmp_path / "policy.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(0).uniform(-8, 8, (64, 3)).astype(np.float32)
    state = np.zeros((64, model.policy.state_dim), np.float32)
    action, _, _ = session.run(None, {"obs": obs, "state": state, "episode_start": np.ones(64, dtype=bool)})
    expected, _ = model.predict(obs, state=None, episode_start=np.ones(64, dtype=bool), deterministic=True)
    assert action.shape == (64, 1)
    assert np.abs(action).max() == 2.0  # some means fall outside [-2, 2]: clipped there
    np.testing.assert_allclose(action, expected, atol=1e-5, rtol=0)
    _run_episode(model, path, "Pendulum-v1")  # and a whole episode, the state carried


def test_cli_export_onnx_runs_without_torch(tmp_path, trained_run, capsys):
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["format"] == ONNX_FORMAT and "tiny" in meta["config"]
    layout = json.loads(meta["state_layout"])
    assert [f["field"] for f in layout] == ["pi.h", "pi.c", "pi.F"]  # the default (LSTM) core
    assert layout[-1]["offset"] + layout[-1]["size"] == int(meta["state_dim"])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # importing torch now fails: the graph must run without it
        import numpy as np, onnxruntime
        session = onnxruntime.InferenceSession({str(out)!r}, providers=["CPUExecutionProvider"])
        state = np.zeros((1, {meta["state_dim"]}), np.float32)
        start = np.array([True])
        for t in range(10):
            action, value, state = session.run(None, {{"obs": np.zeros((1, 4), np.float32), "state": state,
                                                       "episode_start": start}})
            start = np.array([False])
        print(int(action[0]), "torch" in sys.modules and sys.modules["torch"] is not None)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] == "False"


def test_onnx_export_refuses_what_a_graph_cannot_hold(tmp_path):
    model = PlasticPPO("MlpPlasticPolicy", "FrozenLake-v1", n_steps=8, batch_size=8, policy_kwargs={"hidden_size": 4})
    with pytest.raises(UserError, match=r"supports Box observations; this policy observes Discrete\(16\)"):
        export_onnx(model, tmp_path / "lake.onnx")
    with pytest.raises(UserError, match="is a directory"):
        export_onnx(model, tmp_path)
    model = _model("neuromod_rl/DelayedCue-v0", "rnn", "neuromod")
    with torch.no_grad():
        model.policy.core.w[0, 0] = float("nan")
    with pytest.raises(UserError, match=r"weight 'core\.w' holds NaN/inf \(training diverged\)"):
        export_onnx(model, tmp_path / "nan.onnx")
    assert not list(tmp_path.glob("*.onnx"))
