"""The evotorch ``Problem`` that scores policy parameter vectors, in this process or on Ray actors.

Distribution uses evotorch's Ray support: ``Problem(num_actors=N)`` makes ``N`` evotorch
``EvaluationActor``\\ s, each holding a copy of this problem (and so of the :class:`EvalSpec`). What
this class adds:

* **fixed chunks**: a population is cut into chunks of ``chunk_size`` members in index order,
  whatever the number of actors, and each chunk is one call; a member's score never depends on
  which actor ran it or on how many there are (1 actor and 2 actors give bit-identical runs);
* **fault tolerance**: evotorch's own dispatch (a Ray ``ActorPool``) stops the run when an actor
  dies. Here a chunk whose actor died (``RayActorError``: killed, crashed, its node lost) is put
  back in the queue and redone by another actor; the dead actor is replaced by a fresh one when
  the cluster can place it (within ``ready_timeout`` seconds), else the run goes on with fewer.
  If every actor is gone, the remaining chunks are scored in this process. No generation is lost
  and the scores are the same as without the failure;
* **checkpointable**: pickling the problem (with the search algorithm that holds it) never contacts
  the actors -- they are stateless -- and never consumes the search's random stream, so a resumed
  search continues bit-identically.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np
import torch
from evotorch import Problem, SolutionBatch
from evotorch.core import EvaluationActor

from neuromod_rl.agents.es.evaluation import EvalSpec, Evaluator, MemberResults

#: seconds a replacement actor may take to start before the run goes on without it
READY_TIMEOUT = 120.0


class PolicySearchProblem(Problem):
    """Maximise :class:`~neuromod_rl.agents.es.evaluation.Evaluator` fitness over parameter vectors.

    Args:
        spec: what to evaluate (policy, env, episodes, ...).
        num_actors: 0 to evaluate in this process, ``N >= 1`` for ``N`` Ray actors (Ray must be
            initialised first; :func:`neuromod_rl.agents.es.ray_cluster.connect`).
        chunk_size: members per evaluation call (and per batched forward).
        seed: seed of the search's random stream (the samples of every generation).
        actor_config: Ray options of each actor (default ``{"num_cpus": 1}``).
        ready_timeout: seconds to wait for a replacement actor.
    """

    def __init__(
        self,
        spec: EvalSpec,
        *,
        num_actors: int,
        chunk_size: int,
        seed: int,
        actor_config: dict | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if num_actors < 0:
            raise ValueError(f"num_actors must be >= 0 (0: evaluate in this process), got {num_actors}")
        self.spec, self.chunk_size, self.ready_timeout = spec, int(chunk_size), float(ready_timeout)
        self.generation = 0  # set by the trainer before each step: it selects the episodes
        self.actor_failures = 0
        self.last_results: MemberResults | None = None
        self._evaluator: Evaluator | None = None
        super().__init__(
            "max",
            solution_length=len(torch.cat([spec.policy_state[n].reshape(-1) for n in spec.param_names])),
            dtype=torch.float32,
            seed=seed,
            num_actors=num_actors,
            actor_config=actor_config if actor_config is not None else {"num_cpus": 1},
        )
        # evotorch turns a single actor into in-process evaluation; one remote actor is kept on
        # purpose (it frees the driver, and 1-vs-N actor comparisons then measure the same thing)
        self._num_actors = int(num_actors)

    @property
    def _nonserialized_attribs(self) -> list[str]:
        return ["_evaluator", "last_results"]

    # -- evaluation ----------------------------------------------------------------------------------
    def local_evaluator(self) -> Evaluator:
        """This process's evaluator (built on first use; on an actor, with one torch thread)."""
        if self._evaluator is None:
            if self.is_remote:
                torch.set_num_threads(1)  # one actor per CPU: more threads would only contend
            self._evaluator = Evaluator(self.spec)
        return self._evaluator

    def evaluate_chunk(self, vectors: np.ndarray, generation: int, offset: int) -> MemberResults:
        """Score one chunk (what each actor call runs)."""
        return self.local_evaluator().evaluate(vectors, generation, offset=offset)

    def _evaluate_all(self, batch: SolutionBatch) -> None:
        values = batch.values.detach().cpu().numpy().copy()
        starts = list(range(0, len(values), self.chunk_size))
        chunks = [(values[s : s + self.chunk_size], s) for s in starts]
        if self._actors is None:
            parts = [self.evaluate_chunk(v, self.generation, s) for v, s in chunks]
        else:
            parts = self._dispatch(chunks)
        self.last_results = MemberResults.cat(parts)
        batch.set_evals(torch.as_tensor(self.last_results.fitness, dtype=self.eval_dtype))

    def _dispatch(self, chunks: list[tuple[np.ndarray, int]]) -> list[MemberResults]:
        """Run the chunks on the actors, redoing elsewhere any chunk whose actor died."""
        # Ray: heavy optional dependency, used only when actors score the population (num_actors > 0)
        import ray
        from ray.exceptions import RayActorError

        results: list[MemberResults | None] = [None] * len(chunks)
        pending = deque(range(len(chunks)))
        idle = list(self._actors)
        running: dict = {}
        while pending or running:
            while pending and idle:
                actor, i = idle.pop(0), pending.popleft()
                ref = actor.call.remote("evaluate_chunk", [chunks[i][0], self.generation, chunks[i][1]], {})
                running[ref] = (actor, i)
            if not running:  # no actor left: finish here rather than stop the run
                warnings.warn("every Ray actor is gone; evaluating the rest of this generation in the driver",
                              RuntimeWarning, stacklevel=2)
                for i in pending:
                    results[i] = self.evaluate_chunk(chunks[i][0], self.generation, chunks[i][1])
                pending.clear()
                break
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, i = running.pop(ref)
            try:
                results[i] = ray.get(ref)
                idle.append(actor)
            except FloatingPointError as err:
                # Ray's error is a FloatingPointError too, whose text holds the actor's traceback: keep the
                # message alone (the member and the source of the NaN), as in-process evaluation gives it
                raise FloatingPointError(str(getattr(err, "cause", err))) from None
            except RayActorError:
                pending.appendleft(i)
                replacement = self._replace_actor(actor)
                if replacement is not None:
                    idle.append(replacement)
        return results  # type: ignore[return-value]

    def _replace_actor(self, dead):
        """A fresh actor in ``dead``'s place, or ``None`` (and the slot dropped) if none starts."""
        # Ray: heavy optional dependency, used only when actors score the population (num_actors > 0)
        import ray
        from ray.exceptions import RayActorError
        from ray.util import ActorPool

        self.actor_failures += 1
        index = next(i for i, a in enumerate(self._actors) if a is dead)
        # the seeds only seed the actor's global generators, which evaluation never reads
        new = EvaluationActor.options(**(self._actor_config or {})).remote(self, index, (0, 0, 0, 0), {})
        probe = new.get.remote("_actor_index")
        ready, _ = ray.wait([probe], timeout=self.ready_timeout)
        try:
            if not ready:
                raise TimeoutError
            ray.get(probe)
            self._actors[index] = new
        except (RayActorError, TimeoutError):
            ray.kill(new)
            del self._actors[index]
            warnings.warn(f"a Ray actor died and no replacement started within {self.ready_timeout:.0f} s; "
                          f"continuing with {len(self._actors)} actors", RuntimeWarning, stacklevel=3)
            new = None
        self._actor_pool = ActorPool(self._actors) if self._actors else None
        return new

    # -- evotorch hooks --------------------------------------------------------------------------------
    def seed(self, seed: int | None = None) -> None:
        # evotorch 0.6.1's EvaluationActor calls ``problem.seed(...)``, a method Problem names ``manual_seed``
        self.manual_seed(seed)

    def _fill(self, values: torch.Tensor) -> None:
        # searches start at the policy's weights (center_init); a population evotorch allocates before
        # its first sample (CMA-ES) is overwritten, so zeros do, and they draw nothing from the stream
        values.zero_()

    def _parallelize(self) -> None:
        # evotorch draws the actors' seeds from the search's generator: keep that stream untouched,
        # so a run samples the same populations with or without actors, and after a resume
        state = self._generator.get_state() if self._generator is not None else None
        super()._parallelize()
        if state is not None:
            self._generator.set_state(state)

    def _get_cloned_state(self, *, memo: dict) -> dict:
        # the actors keep no state worth collecting (and a dead one would make pickling fail)
        actors, self._actors = self._actors, None
        try:
            return super()._get_cloned_state(memo=memo)
        finally:
            self._actors = actors
