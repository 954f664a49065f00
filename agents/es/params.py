"""Which parameters of a plastic policy evolution strategies search over, as one flat vector.

``params`` (an :class:`~neuromod_rl.agents.es.ESTrainer` argument) selects them by name:

* ``"rule"`` -- the plasticity rules' meta-parameters only (every parameter under a ``rule``
  module: ``alpha``, ``eta``, the ABCD coefficients, a meta-network, ...); everything else keeps
  its initial value (Najarro & Risi 2020 evolve only the rule);
* ``"all"`` -- every parameter that shapes the action: the features extractor, the core, the actor
  heads. Parts that only the critic reads (``value_net``, a separate critic core) and the Gaussian
  ``log_std`` (ES rolls out the deterministic action) are left out: evolving them would only add
  noise dimensions;
* a list of ``fnmatch`` patterns over ``policy.named_parameters()`` names, e.g.
  ``["core.rule.*", "core.modulator.*"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch

import torch
from torch import nn

#: parameter-name prefixes that never influence the deterministic action
CRITIC_ONLY = ("value_net.", "critic_core.", "mlp_extractor.value_net.", "vf_features_extractor.", "log_std")
SELECTORS = ("rule", "all")


def _is_rule_parameter(name: str) -> bool:
    parts = name.split(".")
    return "rule" in parts[:-1]


def select_parameters(policy: nn.Module, params: str | Sequence[str]) -> list[str]:
    """Names of the parameters ``params`` selects, in ``named_parameters`` order (a stable layout)."""
    names = [n for n, _ in policy.named_parameters()]
    if isinstance(params, str):
        if params == "rule":
            chosen = [n for n in names if _is_rule_parameter(n)]
        elif params == "all":
            chosen = [n for n in names if not n.startswith(CRITIC_ONLY)]
        else:
            raise ValueError(
                f"params={params!r} is not valid; use 'rule', 'all' or a list of name patterns such as "
                f"['core.rule.*']; the policy's parameters are {names}"
            )
    else:
        patterns = list(params)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"params must be 'rule', 'all' or a non-empty list of name patterns, got {params!r}")
        chosen = [n for n in names if any(fnmatch(n, p) for p in patterns)]
    if not chosen:
        raise ValueError(
            f"params={params!r} selects no parameter of this policy (it has {names}); with params='rule' the "
            "policy needs a rule with meta-parameters (e.g. rule='abcd', or alpha_shape other than 'none')"
        )
    return chosen


def get_vector(policy: nn.Module, names: Sequence[str]) -> torch.Tensor:
    """The selected parameters, flattened and concatenated (a copy)."""
    named = dict(policy.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n in names]).clone()


def split_vector(policy: nn.Module, names: Sequence[str], vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """``vector[..., D]`` cut into the selected parameters' shapes (leading dims kept: a population)."""
    named = dict(policy.named_parameters())
    sizes = [named[n].numel() for n in names]
    if vector.shape[-1] != sum(sizes):
        raise ValueError(f"the parameter vector has {vector.shape[-1]} entries; the selection needs {sum(sizes)}")
    lead = vector.shape[:-1]
    pieces = torch.split(vector, sizes, dim=-1)
    return {n: p.reshape(tuple(lead) + tuple(named[n].shape)) for n, p in zip(names, pieces)}


def set_vector(policy: nn.Module, names: Sequence[str], vector: torch.Tensor) -> None:
    """Write ``vector`` into the selected parameters of ``policy`` (in place)."""
    named = dict(policy.named_parameters())
    with torch.no_grad():
        for n, value in split_vector(policy, names, vector.to(torch.float32)).items():
            named[n].copy_(value)
