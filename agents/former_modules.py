"""The module paths of the flat layout of neuromod-rl 0.1, still importable.

SB3 saves a model's classes (policy, rollout or replay buffer) by their module path, so a model saved by
0.1 names ``neuromod_rl.agents.policies.MlpPlasticPolicy`` and the like. Each former path resolves to
the module the class lives in now, so those models load unchanged.
"""

import importlib
import sys

#: former module path -> the module that holds its classes now
FORMER_MODULES = {
    "neuromod_rl.agents.buffers": "neuromod_rl.agents.on_policy.buffers",
    "neuromod_rl.agents.core_factory": "neuromod_rl.agents.common.core_factory",
    "neuromod_rl.agents.diagnostics": "neuromod_rl.agents.common.diagnostics",
    "neuromod_rl.agents.finite": "neuromod_rl.agents.common.finite",
    "neuromod_rl.agents.offpolicy_policies": "neuromod_rl.agents.off_policy.policies",
    "neuromod_rl.agents.offpolicy_rollouts": "neuromod_rl.agents.off_policy.rollouts",
    "neuromod_rl.agents.onnx_step": "neuromod_rl.agents.on_policy.onnx_step",
    "neuromod_rl.agents.plastic_a2c": "neuromod_rl.agents.on_policy.plastic_a2c",
    "neuromod_rl.agents.plastic_algorithm": "neuromod_rl.agents.common.algorithm",
    "neuromod_rl.agents.plastic_ppo": "neuromod_rl.agents.on_policy.plastic_ppo",
    "neuromod_rl.agents.plastic_sac": "neuromod_rl.agents.off_policy.plastic_sac",
    "neuromod_rl.agents.plastic_td3": "neuromod_rl.agents.off_policy.plastic_td3",
    "neuromod_rl.agents.policies": "neuromod_rl.agents.on_policy.policies",
    "neuromod_rl.agents.recurrent_adapter": "neuromod_rl.agents.on_policy.recurrent_adapter",
    "neuromod_rl.agents.rollouts": "neuromod_rl.agents.on_policy.rollouts",
    "neuromod_rl.agents.sequence_replay": "neuromod_rl.agents.off_policy.sequence_replay",
    "neuromod_rl.experiment.recurrent_ppo": "neuromod_rl.agents.on_policy.recurrent_ppo",
}

for _former, _current in FORMER_MODULES.items():
    sys.modules.setdefault(_former, importlib.import_module(_current))
