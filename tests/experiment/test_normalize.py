"""`normalize` in a config: VecNormalize in training, its statistics saved without pickle, applied at evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from support import TINY, write_config

from neuromod_rl.experiment import normalize
from neuromod_rl.experiment import train as tr
from neuromod_rl.experiment.config import load_config, validate
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import evaluate, load_model, load_run, rollout


def test_settings_default_to_the_configs_discount_and_bad_keys_are_named():
    cfg = validate({**TINY, "normalize": True})
    s = cfg.normalize_settings()
    assert (s.norm_obs, s.norm_reward, s.gamma) == (True, True, 0.9)  # gamma from hyperparameters
    assert validate(TINY).normalize_settings() is None
    assert validate({**TINY, "normalize": {"norm_reward": False, "gamma": 0.5}}).normalize_settings().gamma == 0.5
    with pytest.raises(UserError, match=r"unknown key `normalize.norm_ob` .*allowed keys: \['clip_obs'"):
        validate({**TINY, "normalize": {"norm_ob": True}})
    with pytest.raises(UserError, match="key `normalize` has value 'sometimes': use true, false or a mapping"):
        validate({**TINY, "normalize": "sometimes"})


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    cfg = load_config(write_config(root / "c.yaml", normalize=True))
    return tr.train(cfg, tr.TrainOptions(runs_dir=root / "runs", progress=False)).run, cfg


def test_training_statistics_are_saved_and_loaded_without_pickle(normalized_run):
    run, cfg = normalized_run
    path = run.path / normalize.FILENAME
    with np.load(path, allow_pickle=False) as f:  # plain arrays only
        assert int(f["obs_count"]) == cfg.n_timesteps + cfg.n_envs  # every step's observation and the first reset
    norm = normalize.load(run)
    obs = np.array([[1.0, 0.0, 1.0, 0.5]], dtype=np.float32)
    expected = np.clip((obs - norm.mean) / np.sqrt(norm.var + norm.epsilon), -norm.clip, norm.clip)
    assert np.allclose(norm(obs), expected) and norm(obs).dtype == np.float32
    path.write_bytes(b"not an npz")
    with pytest.raises(UserError, match="is damaged"):
        normalize.load(run)
    path.unlink()
    assert normalize.load(run) is None


def test_evaluation_shows_the_policy_normalised_observations(normalized_run, tmp_path):
    run, cfg = normalized_run
    seen = []

    class Recorder:
        def __call__(self, obs):
            seen.append(obs.copy())
            return obs

    model = load_model(*load_run(run.path))
    traces = rollout(cfg, model, 3, None, 0, True, progress=False, normalizer=Recorder(), batch=3,
                     info_keys=("regret",))
    assert len(seen) == cfg.env_kwargs["n_pulls"] and seen[0].shape == (3, 4)
    assert np.array_equal(traces["info_regret"], traces["regret"])  # extra info keys recorded per step
    assert "mean_return" in evaluate(run.path, "test", episodes=2, progress=False)
