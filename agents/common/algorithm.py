"""What every plastic algorithm checks, on-policy (PlasticPPO / PlasticA2C) and off-policy
(PlasticSAC / PlasticTD3): policy names, and that a loaded model keeps its plastic configuration."""

from __future__ import annotations

from typing import Any, ClassVar


class PlasticAlgorithmMixin:
    """Goes in front of an SB3 algorithm class (through the on- or off-policy mixin)."""

    #: the SB3 algorithms to name when a user asks for a feed-forward policy
    feed_forward_peers: ClassVar[str] = "stable_baselines3.PPO / A2C"
    plastic_config: dict[str, Any] | None
    policy_aliases: ClassVar[dict[str, type]]

    def _get_policy_from_name(self, policy_name: str) -> type:
        if policy_name not in self.policy_aliases:
            raise ValueError(
                f"unknown policy {policy_name!r} for {type(self).__name__}; valid choices: "
                f"{sorted(self.policy_aliases)} (for SB3's feed-forward policies use {self.feed_forward_peers})"
            )
        return self.policy_aliases[policy_name]

    def _check_plastic_config(self) -> None:
        """A loaded model must be rebuilt with the configuration it was saved with."""
        current = self.policy.core_config.as_dict()  # type: ignore[attr-defined]
        saved = self.plastic_config
        if saved is not None and saved != current:
            diff = {k: (saved.get(k), current.get(k)) for k in current if saved.get(k) != current.get(k)}
            raise ValueError(
                "the saved model's plastic policy configuration does not match the one requested "
                f"(key: (saved, requested)): {diff}. Load without overriding policy_kwargs / custom_objects, "
                "or train a new model with the new configuration"
            )
        self.plastic_config = current
