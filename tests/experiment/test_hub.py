"""``neuromod-rl push`` and ``neuromod_rl.hub.load``: everything up to the network call. The upload's
transport is replaced by a copy into a local folder (the "remote" repository), and loading from that
folder is the real loader. Hostile folders (a missing file, a crafted config, weights of the wrong shape,
a pickle) are refused with a message, and nothing in them is run."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from support import copy_run, stderr_without_traceback

from neuromod_rl.cli import main
from neuromod_rl.experiment import hub
from neuromod_rl.experiment.config import load_config
from neuromod_rl.experiment.errors import UserError
from neuromod_rl.experiment.evaluate import evaluate, load_model, load_run
from neuromod_rl.experiment.hub_card import usage_snippet
from neuromod_rl.hub import load, make_env, push

REPO = "alice/plastic-bandit"
OBS = np.random.default_rng(0).random((6, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def evaluated_run(trained_run: Path, tmp_path_factory) -> Path:
    """A copy of the tiny trained run, evaluated on its test tasks (the card reports the results)."""
    run = copy_run(trained_run, tmp_path_factory.mktemp("evaluated"))
    evaluate(run, "test", episodes=4, progress=False)
    return run


def _copy_into(remote: Path):
    """A transport that "uploads" a folder by copying it to ``remote/USER/NAME``."""

    def transport(folder: Path, repo_id: str) -> str:
        shutil.copytree(folder, remote / repo_id, dirs_exist_ok=True)
        return f"file://{remote / repo_id}"

    return transport


@pytest.fixture(scope="module")
def remote(evaluated_run: Path, tmp_path_factory) -> Path:
    """The repository a push of ``evaluated_run`` uploaded, through a transport that copies."""
    root = tmp_path_factory.mktemp("remote")
    push(evaluated_run, REPO, tmp_path_factory.mktemp("push") / "folder", transport=_copy_into(root))
    return root / REPO


def _actions(model) -> np.ndarray:
    state, out = None, []
    for t in range(len(OBS)):
        action, state = model.predict(OBS[t:t + 1], state=state, episode_start=np.array([t == 0]), deterministic=True)
        out.append(action)
    return np.concatenate(out)


def _folder(remote: Path, tmp_path: Path) -> Path:
    """A copy of the pushed repository that a test may damage."""
    return Path(shutil.copytree(remote, tmp_path / "repo"))


# ------------------------------------------------------------------------------ push
def test_push_uploads_weights_graph_config_results_and_card(remote, evaluated_run):
    assert sorted(p.name for p in remote.iterdir()) == ["README.md", "config.yaml", "eval_results.json",
                                                        "model.safetensors", "policy.onnx"]
    # the run's config, with the heads it left to the default spelled out (as the weights carry it)
    pushed, ran = load_config(remote / "config.yaml"), load_config(evaluated_run / "config.yaml")
    assert "net_arch" not in ran.policy_kwargs
    assert pushed.model_dump() == ran.model_copy(
        update={"policy_kwargs": {**ran.policy_kwargs, "net_arch": [64, 64]}}).model_dump()
    results = json.loads((remote / "eval_results.json").read_text())
    assert results["test"] == json.loads((evaluated_run / "eval" / "test.json").read_text())


def test_the_card_holds_the_metadata_the_hub_reads(remote, evaluated_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(remote / "README.md")
    env = load_run(evaluated_run)[1].env
    summary = json.loads((remote / "eval_results.json").read_text())["test"]

    assert card.data.library_name == "neuromod-rl"
    assert {"neuromod-rl", "reinforcement-learning", "stable-baselines3", env} <= set(card.data.tags)
    mean_reward = next(r for r in card.data.eval_results if r.metric_type == "mean_reward")
    assert mean_reward.task_type == "reinforcement-learning" and mean_reward.dataset_type == env
    assert mean_reward.dataset_split == "test"
    assert mean_reward.metric_value == f"{summary['mean_return']:.2f} +/- {summary['std_return']:.2f}"
    assert "pip install neuromod-rl" in card.text and f"load({REPO!r})" in card.text


def test_a_pushed_model_loads_from_the_repository_and_acts_as_the_run(remote, evaluated_run):
    run, cfg = load_run(evaluated_run)

    model = load(str(remote))

    assert model.env is None
    np.testing.assert_array_equal(_actions(model), _actions(load_model(run, cfg)))


def test_the_usage_snippet_of_the_card_runs(remote):
    namespace: dict = {}
    exec(usage_snippet(str(remote)), namespace)  # noqa: S102  (the card's own code, on the pushed folder)
    assert namespace["env"].action_space.contains(np.asarray(namespace["action"])[0])


def test_a_repository_id_is_loaded_through_the_download(remote):
    asked = []

    def download(repo_id: str, revision: str | None) -> Path:
        asked.append((repo_id, revision))
        return remote

    model = load(REPO, revision="v1", download=download)

    assert asked == [(REPO, "v1")] and model.policy is not None
    assert make_env(REPO, download=download).observation_space == model.observation_space


def test_a_dry_run_writes_the_folder_and_uploads_nothing(evaluated_run, tmp_path, capsys):
    folder = tmp_path / "out"
    assert main(["push", str(evaluated_run), "--repo-id", REPO, "--folder", str(folder), "--dry-run"]) == 0
    assert "Dry run: nothing uploaded" in capsys.readouterr().out
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    # a second push into the folder it wrote replaces its files
    assert main(["push", str(evaluated_run), "--repo-id", REPO, "--folder", str(folder), "--dry-run"]) == 0


def test_without_the_export_extra_the_folder_has_no_graph_and_says_so(evaluated_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    pushed = push(evaluated_run, REPO, tmp_path / "out", dry_run=True)

    assert "policy.onnx" not in pushed.files and "neuromod-rl[export]" in pushed.onnx_note
    assert f"No ONNX graph: {pushed.onnx_note}" in (tmp_path / "out" / "README.md").read_text()


def test_push_refuses_a_folder_holding_other_files(evaluated_run, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"notes\.txt.*new or empty folder"):
        push(evaluated_run, REPO, folder, dry_run=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_push_needs_an_evaluated_run(trained_run, tmp_path):
    with pytest.raises(UserError, match="neuromod-rl eval"):
        push(trained_run, REPO, tmp_path / "out", dry_run=True)
    assert not (tmp_path / "out").exists()


def test_push_refuses_a_run_that_normalises_observations(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "normalize": True}))
    with pytest.raises(UserError, match="normalise.*normalize: false"):
        push(run, REPO, tmp_path / "out", dry_run=True)


@pytest.mark.parametrize("repo_id", ["alice", "alice/../bob", "a/b/c", "alice/name with space", ".x/y"])
def test_push_refuses_a_repository_id_that_is_not_user_slash_name(evaluated_run, tmp_path, repo_id, capsys):
    assert main(["push", str(evaluated_run), "--repo-id", repo_id, "--folder", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "USER/NAME" in stderr_without_traceback(capsys)
    assert not (tmp_path / "o").exists()


def test_without_huggingface_hub_push_exits_2_naming_the_extra(evaluated_run, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["huggingface_hub"] = None
        from neuromod_rl.cli import main
        sys.exit(main(["push", {str(evaluated_run)!r}, "--repo-id", {REPO!r}, "--folder", {str(tmp_path / "o")!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'neuromod-rl[hub]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_an_unreachable_hub_is_a_message_that_the_files_are_ready(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=f"files are ready in {tmp_path}"):
        hub.hf_upload(tmp_path, REPO)
    with pytest.raises(UserError, match="cannot download neuromod-rl-tests/no-such-model"):
        load("neuromod-rl-tests/no-such-model")


# ------------------------------------------------------------------------------ hostile folders
@pytest.mark.parametrize("name", ["model.safetensors", "config.yaml"])
def test_a_folder_missing_a_file_is_refused_naming_it(remote, tmp_path, name):
    folder = _folder(remote, tmp_path)
    (folder / name).unlink()
    with pytest.raises(UserError, match=rf"has no {name}.*Push the run again"):
        load(str(folder))


def test_a_config_yaml_that_is_not_the_weights_config_is_refused(remote, tmp_path):
    folder = _folder(remote, tmp_path)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["policy_kwargs"]["hidden_size"] = 64
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match=r"not the config inside model\.safetensors.*policy_kwargs"):
        load(str(folder))


def test_a_config_yaml_with_a_python_tag_runs_nothing(remote, tmp_path):
    folder = _folder(remote, tmp_path)
    marker = tmp_path / "ran"
    (folder / "config.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserError, match="config.yaml"):
        load(str(folder))
    assert not marker.exists()


def _rewrite_weights(folder: Path, config: dict | None = None, tensors=None) -> None:
    """Rewrite ``folder``'s weights (and its config.yaml to match the embedded config) as a crafter would."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    data = load_file(str(path))
    if config:
        meta["config"] = yaml.safe_dump({**yaml.safe_load(meta["config"]), **config})
        (folder / "config.yaml").write_text(meta["config"])
    save_file(tensors(data) if tensors else data, str(path), metadata=meta)


def test_a_crafted_config_naming_foreign_code_imports_nothing(remote, tmp_path, monkeypatch):
    folder = _folder(remote, tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "crafted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _rewrite_weights(folder, config={"trusted_modules": ["crafted_module"], "env": "crafted_module:Env-v0"})
    with pytest.raises(UserError, match="import"):
        load(str(folder))
    with pytest.raises(UserError, match="import"):
        make_env(str(folder))
    assert not marker.exists() and "crafted_module" not in sys.modules


def test_weights_of_the_wrong_shape_are_refused_naming_the_tensor(remote, tmp_path):
    folder = _folder(remote, tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    name = max(sorted(tensors), key=lambda k: (tensors[k].dim(), tensors[k].numel()))
    _rewrite_weights(folder, tensors=lambda d: {**d, name: torch.zeros(d[name].shape[0] + 1, *d[name].shape[1:])})
    with pytest.raises(UserError, match=rf"{name}.*casts and reshapes nothing"):
        load(str(folder))


@pytest.mark.parametrize("name", ["model.zip", "extra.pkl", "notes.txt"])
def test_a_folder_holding_a_pickle_is_refused_and_the_pickle_never_runs(remote, tmp_path, name):
    folder = _folder(remote, tmp_path)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Touch(str(marker)))
    (folder / name).write_bytes(payload)
    with pytest.raises(UserError, match=rf"{name}.*pickle format"):
        load(str(folder))
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_source_that_is_neither_a_folder_nor_a_repository_id_is_refused(tmp_path):
    with pytest.raises(UserError, match="neither a folder nor a Hub repository id"):
        load(str(tmp_path / "missing" / "deeper"))
