"""PlasticPPO on a CUDA GPU, end to end: training, the backend each core runs there, and a checkpoint
that moves between the GPU and the CPU. Skipped without a CUDA device; ``make gpu-check`` runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plastic_test_envs import cue_env
from stable_baselines3.common.env_util import make_vec_env

from neuromod_rl.agents import PlasticPPO
from neuromod_rl.plasticity import available_backends, default_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_plastic_ppo_trains_on_cuda_and_its_checkpoint_runs_on_cpu(core, tmp_path):
    env = make_vec_env(cue_env, 2, seed=0)
    model = PlasticPPO("MlpPlasticPolicy", env, n_steps=16, batch_size=16, n_epochs=2, device="cuda", seed=0,
                       policy_kwargs=dict(core=core, hidden_size=8))
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    model.learn(64)
    params = dict(model.policy.named_parameters())
    assert all(p.is_cuda for p in params.values())
    assert any(not torch.equal(before[n], p.detach()) for n, p in params.items()), "training changed nothing"
    assert all(torch.isfinite(p).all() for p in params.values())

    # the fastest backend on the GPU: Triton kernels for the plastic RNN where triton is installed,
    # the fused torch-op path for the LSTM
    expected = "triton" if core == "rnn" and "triton" in available_backends(model.policy.core) else "fused"
    assert default_backend(model.policy.core, "cuda") == expected

    path = tmp_path / "model.zip"
    model.save(path)
    cpu = PlasticPPO.load(path, device="cpu")
    obs = env.reset()
    state_gpu = state_cpu = None
    for _ in range(4):
        a, state_gpu = model.predict(obs, state=state_gpu, deterministic=True)
        b, state_cpu = cpu.predict(obs, state=state_cpu, deterministic=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(state_gpu, state_cpu, atol=1e-5)
