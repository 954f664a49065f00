"""ESTrainer: episode-level meta-training of a plastic policy by evolution strategies.

Where PlasticPPO follows the gradient of the return through every step of an episode, ES treats a
whole lifetime as a black box: sample perturbed copies of the policy's parameters, score each by its
return over a batch of sampled tasks, move the search distribution towards the better ones
(Salimans et al. 2017; Najarro & Risi 2020 evolve Hebbian ABCD rules this way). The search
algorithms are evotorch's (:mod:`~neuromod_rl.agents.es.algorithms`); scoring runs in this process
or on Ray actors (:mod:`~neuromod_rl.agents.es.problem`).

The trainer is a Stable-Baselines3 ``BaseAlgorithm`` around the same policy classes PlasticPPO
uses, so everything downstream treats it like any SB3 model: ``save``/``load`` (the zip also holds
the search state, so training resumes exactly), ``predict(obs, state, episode_start)``,
``num_timesteps`` (env steps of every evaluation), SB3 loggers and callbacks. ``model.policy`` is
always the search's current centre.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import cloudpickle
import gymnasium
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from tqdm import tqdm

from neuromod_rl.agents.es.algorithms import check_search_memory, make_searcher, resolve_settings
from neuromod_rl.agents.es.evaluation import EvalSpec, Evaluator
from neuromod_rl.agents.es.params import get_vector, select_parameters, set_vector
from neuromod_rl.agents.es.ray_cluster import check_address, cluster_cpus, connect, quiet_evotorch
from neuromod_rl.agents.on_policy.plastic_ppo import PLASTIC_POLICY_ALIASES
from neuromod_rl.agents.on_policy.policies import PlasticActorCriticPolicy
from neuromod_rl.extras import require

#: what a search needs: evotorch runs it, and imports Ray (which also scores members on actors)
SEARCH_PACKAGES = ("evotorch", "ray")


class ESTrainer(BaseAlgorithm):
    """Evolve a plastic policy's parameters (or only its rule's) with evolution strategies.

    Args:
        policy: ``"MlpPlasticPolicy"`` (or another alias of PlasticPPO) or a plastic policy class.
        env: an env id, a Gymnasium env or an in-process VecEnv (``DummyVecEnv``); workers score
            members on fresh copies of its first env (cloudpickled).
        algorithm: ``"openai_es"`` (default), ``"cmaes"``, ``"pgpe"``, ``"snes"`` or ``"xnes"``.
        params: ``"all"`` (default: every parameter that shapes the action), ``"rule"`` (the
            plasticity rule's meta-parameters only) or a list of name patterns
            (:mod:`~neuromod_rl.agents.es.params`).
        popsize: population size (default 64; even for ``openai_es`` and ``pgpe``).
        sigma: initial noise scale (default 0.1).
        lr: step size of the centre (default 0.05 for ``openai_es``/``pgpe``; evotorch's for SNES/XNES).
        sigma_decay: ``sigma`` factor per generation (``openai_es``; default 1).
        lr_decay: ``lr`` factor per generation (``openai_es``; default 1).
        l2_penalty: fitness penalty ``l2_penalty * mean(theta^2)`` on the evolved vector (default 0).
        episodes_per_member: episodes (lifetimes, with a ``Trial`` wrapper) scoring each member;
            all members of a generation share them (the same env seeds, hence the same tasks).
        deterministic: roll out the deterministic action (argmax / Gaussian mean). Evaluate the
            result the same way (``eval: {deterministic: true}`` in a config).
        batched: score ``chunk_size`` members in one batched forward (``torch.func.vmap``) instead of
            one after the other; same scores up to float rounding.
        chunk_size: members per evaluation call and per batched forward. Chunks are fixed by member
            index, so results do not depend on the number of actors.
        num_actors: Ray actors scoring chunks: ``"auto"`` (one per CPU of the Ray cluster), an int,
            or 0 to score in this process without Ray.
        ray_address: ``None`` (a local Ray with this machine's CPUs), ``"auto"`` or ``"HOST:PORT"``
            (join a running cluster).
        redraw_initial_weights: start each episode from fresh random ABCD weights (``rule="abcd"``).
        max_episode_steps: guard against episodes that never end.
        algorithm_kwargs: extra arguments of the evotorch algorithm class.
        preset: ``"najarro_risi"`` or ``None``; explicit arguments override the preset's settings.
        policy_kwargs: the policy's keywords (``rule``, ``core``, ``hidden_size``, ...). Without ``net_arch`` the
            heads are linear (``net_arch=[]``), not the gradient agents' 64x64 MLPs: every weight is a
            dimension of the search, and linear heads keep the genome small.
        tensorboard_log: TensorBoard folder (SB3's).
        verbose: 0 or 1 (SB3's).
        seed: seed of the run: the policy's initialisation, the search's samples and the episodes.
        device: torch device of the policy (``"cpu"``: rollouts are small).

    Raises:
        neuromod_rl.extras.MissingExtraError: evotorch or Ray is not installed (the ``es`` extra:
            ``pip install 'neuromod-rl[es]'``). A loaded trainer runs its policy without them.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = PLASTIC_POLICY_ALIASES
    #: resuming needs no saved env state: every generation resets fresh envs from explicit seeds
    resume_needs_env_state: ClassVar[bool] = False
    policy: PlasticActorCriticPolicy

    def __init__(
        self,
        policy: str | type[PlasticActorCriticPolicy],
        env,
        algorithm: str | None = None,
        params: str | Sequence[str] | None = None,
        popsize: int | None = None,
        sigma: float | None = None,
        lr: float | None = None,
        sigma_decay: float | None = None,
        lr_decay: float | None = None,
        l2_penalty: float | None = None,
        episodes_per_member: int = 4,
        deterministic: bool = True,
        batched: bool = True,
        chunk_size: int = 16,
        num_actors: int | str = "auto",
        ray_address: str | None = None,
        redraw_initial_weights: bool | None = None,
        max_episode_steps: int = 100_000,
        algorithm_kwargs: dict[str, Any] | None = None,
        preset: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "cpu",
        _init_setup_model: bool = True,
    ):
        if _init_setup_model:  # a loaded trainer (eval, export) needs no search; resuming one checks there
            require("es", "ESTrainer", SEARCH_PACKAGES)
        self.settings = resolve_settings(
            preset, algorithm=algorithm, params=params, popsize=popsize, sigma=sigma, lr=lr,
            sigma_decay=sigma_decay, lr_decay=lr_decay, l2_penalty=l2_penalty,
            redraw_initial_weights=redraw_initial_weights,
        )  # fmt: skip
        if not (isinstance(num_actors, int) and num_actors >= 0) and num_actors != "auto":
            raise ValueError(f"num_actors must be 'auto' or an int >= 0 (0: no Ray), got {num_actors!r}")
        for name, value in (("episodes_per_member", episodes_per_member), ("chunk_size", chunk_size),
                            ("max_episode_steps", max_episode_steps)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if batched and not deterministic:
            raise ValueError("batched evaluation rolls out the deterministic action: set deterministic=True "
                             "or batched=False")  # fmt: skip
        self.preset, self.algorithm_kwargs = preset, dict(algorithm_kwargs or {})
        self.episodes_per_member, self.deterministic, self.batched = episodes_per_member, deterministic, batched
        self.chunk_size, self.num_actors, self.max_episode_steps = chunk_size, num_actors, max_episode_steps
        self.ray_address = check_address(ray_address)
        self.generation = 0
        self.actor_failures = 0
        self.search_state = th.zeros(0, dtype=th.uint8)  # the pickled search, filled by save()
        self._searcher: Any = None
        policy_kwargs = {"net_arch": [], **(policy_kwargs or {})}
        super().__init__(
            policy, env, learning_rate=0.0, policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_log,
            verbose=verbose, device=device, support_multi_env=True, seed=seed,
            supported_action_spaces=(spaces.Box, spaces.Discrete),
        )  # fmt: skip
        if _init_setup_model:
            self._setup_model()

    # -- SB3 hooks ------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                        **self.policy_kwargs).to(self.device)  # fmt: skip
        if not isinstance(self.policy, PlasticActorCriticPolicy):
            raise ValueError(f"ESTrainer evolves plastic policies {sorted(self.policy_aliases)}, "
                             f"got {type(self.policy).__name__}")  # fmt: skip
        if self.policy.core_config.modulation_source == "td_error":
            raise ValueError("ES evolves no value function, so modulation_source='td_error' has no TD error to "
                             "use; choose modulation_source='hidden' or 'reward'")  # fmt: skip
        self.param_names = select_parameters(self.policy, self.settings["params"])
        check_search_memory(self.settings, self.num_parameters, self.algorithm_kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_searcher"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy"], ["search_state"]

    def save(self, path, exclude=None, include=None) -> None:
        """SB3's zip, plus the search state (a pickle, like the rest of the zip: load trusted files only)."""
        if self._searcher is not None:
            self.search_state = th.frombuffer(bytearray(pickle.dumps(self._searcher)), dtype=th.uint8)
        super().save(path, exclude=exclude, include=include)

    # -- training -------------------------------------------------------------------------------------
    @property
    def num_parameters(self) -> int:
        """Length of the evolved vector."""
        return int(get_vector(self.policy, self.param_names).numel())

    def eval_spec(self, env=None) -> EvalSpec:
        """What a worker needs to score vectors (env: the trainer's, unless another is given)."""
        return EvalSpec(
            policy_class=type(self.policy), observation_space=self.observation_space, action_space=self.action_space,
            policy_kwargs=dict(self.policy_kwargs), policy_state={k: v.detach().cpu().clone() for k, v in
                                                       self.policy.state_dict().items()},
            param_names=list(self.param_names), env_bytes=cloudpickle.dumps(_single_env(env or self.env)),
            seed=int(self.seed or 0), episodes_per_member=self.episodes_per_member, deterministic=self.deterministic,
            batched=self.batched, redraw_initial_weights=bool(self.settings["redraw_initial_weights"]),
            l2_penalty=float(self.settings["l2_penalty"]), max_episode_steps=self.max_episode_steps,
        )  # fmt: skip

    def _actors_wanted(self) -> int:
        if self.num_actors == 0:
            return 0
        connect(self.ray_address)
        return cluster_cpus() if self.num_actors == "auto" else int(self.num_actors)

    def restore_search(self) -> None:
        """Unpickle the search that :meth:`save` stored in ``search_state`` (nothing when none was stored or
        it is restored already). ``learn`` does it by itself; a resume calls it right after ``load`` so that
        a damaged search state is found before anything is written. Raises ``ValueError`` on damage."""
        if self._searcher is not None or self.search_state.numel() == 0:
            return
        require("es", "resuming an ESTrainer", SEARCH_PACKAGES)
        quiet_evotorch()  # before evotorch is first imported, which unpickling may do
        try:
            searcher = pickle.loads(self.search_state.numpy().tobytes())
        except Exception as err:  # noqa: BLE001  (any damage must become one clear error)
            raise ValueError(f"the saved search state is damaged ({type(err).__name__}: {err})") from None
        if not (hasattr(searcher, "step") and hasattr(searcher, "problem")):
            raise ValueError(f"the saved search state is damaged: it holds a {type(searcher).__name__}, not a search")
        self._searcher = searcher

    def _ensure_searcher(self):
        """The search, restored from ``search_state`` after a load, else started at the policy's weights."""
        require("es", "ESTrainer.learn", SEARCH_PACKAGES)
        quiet_evotorch()
        n_actors = self._actors_wanted()
        self.restore_search()
        if self._searcher is None:
            # problem imports evotorch: heavy, and it reads quiet_evotorch()'s setting when first imported
            from neuromod_rl.agents.es.problem import PolicySearchProblem

            problem = PolicySearchProblem(self.eval_spec(), num_actors=n_actors, chunk_size=self.chunk_size,
                                          seed=int(self.seed or 0))  # fmt: skip
            center = get_vector(self.policy, self.param_names)
            self._searcher = make_searcher(problem, center, self.settings, self.algorithm_kwargs)
        self._searcher.problem._num_actors = n_actors  # a resumed run may use another cluster
        return self._searcher

    def _release_actors(self) -> None:
        problem = self._searcher.problem if self._searcher is not None else None
        if problem is not None and problem.actors is not None:
            self.actor_failures = problem.actor_failures
            problem.kill_actors()  # free their CPUs for whatever runs next (another trainer, a sweep trial)

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 1, tb_log_name: str = "ES",
              reset_num_timesteps: bool = True, progress_bar: bool = False, generations: int | None = None):
        """Run generations until ``total_timesteps`` env steps (summed over every evaluation) or
        ``generations`` generations are done. Callbacks see one ``on_rollout_start``/``on_step``/
        ``on_rollout_end`` per generation (a stop requested by ``on_step`` ends training before the
        next generation)."""
        total, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, False)
        searcher = self._ensure_searcher()
        bar = tqdm(total=total, initial=self.num_timesteps, unit="step", disable=not progress_bar, desc="ES")
        callback.on_training_start(locals(), globals())
        done = 0
        try:
            while self.num_timesteps < total and (generations is None or done < generations):
                callback.on_rollout_start()
                if not callback.on_step():
                    break
                before = self.num_timesteps
                self._generation(searcher, log_interval)
                done += 1
                bar.update(self.num_timesteps - before)
                callback.update_locals(locals())
                callback.on_rollout_end()
        finally:
            bar.close()
            self._release_actors()
        callback.on_training_end()
        return self

    def _generation(self, searcher, log_interval: int) -> None:
        problem = searcher.problem
        problem.generation = self.generation
        start = time.perf_counter()
        searcher.step()
        seconds = time.perf_counter() - start
        results = problem.last_results
        self.num_timesteps += int(results.lengths.sum())
        self.generation += 1
        self.actor_failures = problem.actor_failures
        set_vector(self.policy, self.param_names, searcher.status["center"].detach().cpu())
        self._write_monitor_rows(results)
        if self.generation % log_interval == 0:
            self._log(searcher, results, seconds)

    def _write_monitor_rows(self, results) -> None:
        """One monitor row per member (its mean return, its steps), so SB3's monitor files, learning
        curves and ``mean_return_last_100`` work as for PPO (rows are member scores, not single episodes)."""
        monitor = _find_monitor(self.env)
        if monitor is None or monitor.results_writer is None:
            return
        now = round(time.time() - monitor.t_start, 6)
        for r, length in zip(results.returns.mean(axis=1), results.lengths.sum(axis=1)):
            monitor.results_writer.write_row({"r": round(float(r), 6), "l": int(length), "t": now})

    def _log(self, searcher, results, seconds: float) -> None:
        status, fit = searcher.status, results.fitness
        self.logger.record("es/generation", self.generation)
        self.logger.record("es/fitness_mean", float(np.mean(fit)))
        self.logger.record("es/fitness_median", float(np.median(fit)))
        self.logger.record("es/fitness_max", float(np.max(fit)))
        self.logger.record("es/return_mean", float(results.returns.mean()))
        for key in ("stdev", "stepsize", "lr"):
            if key in status:
                self.logger.record(f"es/{'sigma' if key != 'lr' else 'lr'}", float(th.as_tensor(status[key]).mean()))
        self.logger.record("es/evaluations_per_second", len(fit) / max(seconds, 1e-9))
        self.logger.record("es/steps_per_second", float(results.lengths.sum()) / max(seconds, 1e-9))
        self.logger.record("es/actor_failures", self.actor_failures)
        self.logger.record("time/total_timesteps", self.num_timesteps)
        self.logger.dump(step=self.num_timesteps)

    # -- scoring the result ---------------------------------------------------------------------------
    def score(self, env=None, episodes: int = 10, seed: int = 0) -> np.ndarray:
        """Returns of the current policy (the centre) over ``episodes`` episodes seeded from ``seed``,
        on ``env`` (e.g. held-out tasks) or the training env."""
        spec = replace(self.eval_spec(env), seed=seed, episodes_per_member=episodes, l2_penalty=0.0, batched=False)
        return Evaluator(spec).evaluate(get_vector(self.policy, self.param_names)[None], generation=0).returns[0]


def _find_monitor(env) -> VecMonitor | None:
    while env is not None:
        if isinstance(env, VecMonitor):
            return env
        env = getattr(env, "venv", None)
    return None


def _single_env(env):
    """The first env of an in-process VecEnv (or the env itself): the template workers copy."""
    if isinstance(env, str):
        return gymnasium.make(env)
    while isinstance(env, VecEnv):
        if hasattr(env, "envs"):
            return env.envs[0]
        if not hasattr(env, "venv"):
            raise ValueError(f"ESTrainer needs an in-process VecEnv (DummyVecEnv), an env or an env id; got "
                             f"{type(env).__name__}, whose envs live in other processes")  # fmt: skip
        env = env.venv
    if env is None:
        raise ValueError("this ESTrainer has no env (loaded without one): pass env= to load, or to score()")
    return env.env if isinstance(env, Monitor) else env  # workers keep no episode statistics
