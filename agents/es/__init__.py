"""Evolution strategies for plastic policies: :class:`ESTrainer` (evotorch search, Ray evaluation).

>>> from neuromod_rl.agents import ESTrainer
>>> model = ESTrainer("MlpPlasticPolicy", "neuromod_rl/TwoArmedBanditDependent-v0", algorithm="snes",
...                   popsize=32, num_actors=0, policy_kwargs=dict(rule="neuromod", hidden_size=16))
>>> model.learn(200_000)

evotorch and Ray are imported only when a search starts, so importing this package stays cheap.
"""

from neuromod_rl.agents.es.algorithms import ALGORITHMS, PRESETS
from neuromod_rl.agents.es.evaluation import EvalSpec, Evaluator, MemberResults, episode_seeds
from neuromod_rl.agents.es.params import select_parameters
from neuromod_rl.agents.es.trainer import ESTrainer

__all__ = [
    "ALGORITHMS",
    "PRESETS",
    "ESTrainer",
    "EvalSpec",
    "Evaluator",
    "MemberResults",
    "episode_seeds",
    "select_parameters",
]
