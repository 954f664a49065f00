"""rl-zoo3's ``push_to_hub`` imports ``generate_metadata`` from huggingface_sb3, which huggingface_sb3 3 no
longer has under that name: ``neuromod_rl.zoo`` gives it back, returning the dict rl-zoo3 writes into the
model card. Offline: nothing here talks to the Hub."""

from __future__ import annotations

import importlib

from huggingface_hub.repocard import metadata_load, metadata_save

from neuromod_rl.zoo.hub_compat import restore_generate_metadata


def test_generate_metadata_is_restored_and_writes_a_model_card(tmp_path):
    hub = importlib.import_module("huggingface_sb3.push_to_hub")
    restore_generate_metadata()
    restore_generate_metadata()  # a second call changes nothing
    metadata = hub.generate_metadata("PlasticPPO", "neuromod_rl/Recall-v0", 0.75, 0.125)
    assert isinstance(metadata, dict) and "neuromod_rl/Recall-v0" in metadata["tags"]
    readme = tmp_path / "README.md"
    readme.write_text("# a model\n")
    metadata_save(readme, metadata)  # what rl-zoo3's save_model_card does with it
    (result,) = metadata_load(readme)["model-index"][0]["results"]
    assert result["metrics"][0]["value"] == "0.75 +/- 0.12"
