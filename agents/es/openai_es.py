"""OpenAI-ES (Salimans et al. 2017, "Evolution strategies as a scalable alternative to reinforcement
learning") as an evotorch search algorithm, with the step-size decays Najarro & Risi (2020) use.

One generation, for a centre ``theta``, noise scale ``sigma`` and step size ``lr``:

* antithetic sampling: ``popsize / 2`` noise vectors ``eps_j ~ N(0, I)``, members ``theta + sigma eps_j``
  and ``theta - sigma eps_j``;
* centred ranks: fitnesses replaced by their ranks scaled to ``[-0.5, 0.5]``
  (``evotorch.tools.ranking.centered``), so the step is invariant to the fitness scale;
* the search-gradient step ``theta <- theta + lr / (popsize sigma) sum_j (r_j^+ - r_j^-) eps_j``;
* then ``lr <- lr * lr_decay`` and ``sigma <- sigma * sigma_decay`` (floored at ``lr_min``/``sigma_min``).
"""

from __future__ import annotations

import torch
from evotorch import Problem, SolutionBatch
from evotorch.algorithms.searchalgorithm import SearchAlgorithm, SinglePopulationAlgorithmMixin
from evotorch.tools.ranking import centered


class OpenAIES(SearchAlgorithm, SinglePopulationAlgorithmMixin):
    """OpenAI-ES with antithetic sampling and centred ranks (see the module docstring).

    Args:
        problem: an evotorch ``Problem`` (maximised or minimised, one objective).
        popsize: population size, even (antithetic pairs).
        sigma: initial noise scale.
        lr: initial step size of the centre.
        center_init: the starting centre (default: drawn by the problem).
        sigma_decay: factor applied to ``sigma`` after every generation.
        lr_decay: factor applied to ``lr`` after every generation.
        sigma_min: lower bound of ``sigma``.
        lr_min: lower bound of ``lr``.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        sigma: float,
        lr: float,
        center_init: torch.Tensor | None = None,
        sigma_decay: float = 1.0,
        lr_decay: float = 1.0,
        sigma_min: float = 0.0,
        lr_min: float = 0.0,
    ):
        problem.ensure_numeric()
        problem.ensure_single_objective()
        if popsize < 2 or popsize % 2:
            raise ValueError(f"OpenAI-ES samples antithetic pairs: popsize must be even and >= 2, got {popsize}")
        if not (sigma > 0 and lr > 0):
            raise ValueError(f"sigma and lr must be positive, got sigma={sigma}, lr={lr}")
        SearchAlgorithm.__init__(self, problem, center=self._get_center, stdev=self._get_sigma, lr=self._get_lr)
        center = problem.generate_values(1)[0] if center_init is None else center_init
        self._center = problem.ensure_tensor_length_and_dtype(center, allow_scalar=False, about="center_init").clone()
        self._popsize, self._sigma, self._lr = int(popsize), float(sigma), float(lr)
        self._sigma_decay, self._lr_decay = float(sigma_decay), float(lr_decay)
        self._sigma_min, self._lr_min = float(sigma_min), float(lr_min)
        self._population = SolutionBatch(problem, popsize=self._popsize, empty=True)
        SinglePopulationAlgorithmMixin.__init__(self)

    @property
    def population(self) -> SolutionBatch:
        return self._population

    def _get_center(self) -> torch.Tensor:
        return self._center

    def _get_sigma(self) -> float:
        return self._sigma

    def _get_lr(self) -> float:
        return self._lr

    def _step(self) -> None:
        half = self._popsize // 2
        eps = self.problem.make_gaussian(half, self.problem.solution_length)
        self._population.set_values(torch.cat([self._center + self._sigma * eps, self._center - self._sigma * eps]))
        self.problem.evaluate(self._population)
        fitness = self._population.evals[:, 0].clone().as_subclass(torch.Tensor)  # ranking writes in place
        ranks = centered(fitness, higher_is_better=self.problem.senses[0] == "max")
        grad = (ranks[:half] - ranks[half:]) @ eps / (self._popsize * self._sigma)
        self._center = self._center + self._lr * grad
        self._lr = max(self._lr * self._lr_decay, self._lr_min)
        self._sigma = max(self._sigma * self._sigma_decay, self._sigma_min)
