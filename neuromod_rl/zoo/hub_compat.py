"""rl-zoo3's ``push_to_hub`` with huggingface_sb3 3.x: rl-zoo3 (2.9) imports ``generate_metadata`` from
``huggingface_sb3.push_to_hub``, which huggingface_sb3 3 renamed ``_generate_metadata`` and made return a
``ModelCardData`` instead of the dict rl-zoo3 writes into the model card. Without this, the stock
``python -m rl_zoo3.push_to_hub`` fails on that import before it reads its flags."""

from __future__ import annotations

import importlib


def restore_generate_metadata() -> None:
    """Give ``huggingface_sb3.push_to_hub`` the ``generate_metadata`` rl-zoo3 imports, where it lacks one
    (nothing changes where huggingface_sb3 still has it)."""
    # by module path: the package's attribute `push_to_hub` is the function of that name, not the module
    hub = importlib.import_module("huggingface_sb3.push_to_hub")

    if hasattr(hub, "generate_metadata") or not hasattr(hub, "_generate_metadata"):
        return

    def generate_metadata(model_name: str, env_id: str, mean_reward: float, std_reward: float) -> dict:
        """The model card's metadata as a dict (huggingface_sb3 2's ``generate_metadata``).

        Args:
            model_name: the algorithm's class name.
            env_id: the env id.
            mean_reward: the evaluation's mean return.
            std_reward: its standard deviation.
        """
        return hub._generate_metadata(model_name, env_id, mean_reward, std_reward).to_dict()

    hub.generate_metadata = generate_metadata
