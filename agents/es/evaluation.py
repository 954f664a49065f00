"""Score parameter vectors of a plastic policy by rolling it out: the fitness evolution strategies climb.

Fitness of one population member = its mean lifetime return over ``episodes_per_member`` episodes
(lifetimes, when the env is wrapped in :class:`~neuromod_rl.envs.Trial`), minus an optional L2
penalty ``l2_penalty * mean(theta^2)`` on the evolved vector (Najarro & Risi 2020). Every member of
one generation is scored on the *same* episodes: episode ``k`` of generation ``g`` resets its env
with the seed :func:`episode_seeds` gives, so the env draws the same task for every member (common
random numbers: rank differences come from the parameters, not from luckier tasks). A member's
score depends only on its vector and the generation, never on which worker computed it.

Two ways to compute the same scores (:class:`Evaluator`):

* per member: the policy's own :meth:`~neuromod_rl.agents.PlasticActorCriticPolicy.step` (what
  ``predict`` runs), one member after the other -- the reference;
* batched: ``n`` members as a batch dimension of one forward pass. ``torch.func.functional_call``
  puts each member's parameters into the policy and ``torch.func.vmap`` maps the actor's step over
  the members, so one Python step drives ``n x episodes`` envs in lockstep. Same numbers as the
  reference up to float rounding (batched matrix products sum in another order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.utils import ConstantSchedule
from torch import nn
from torch.func import functional_call, vmap

from neuromod_rl.agents.common.finite import check_transition, non_finite_source
from neuromod_rl.agents.es.params import set_vector, split_vector
from neuromod_rl.agents.on_policy.policies import PlasticActorCriticPolicy, _part, _prefixed
from neuromod_rl.plasticity import PlasticState


@dataclass
class EvalSpec:
    """Everything a worker needs to score vectors; plain picklable data (it travels to Ray actors).

    Args:
        policy_class: the SB3 policy class (e.g. ``MlpPlasticPolicy``).
        observation_space: the env's observation space.
        action_space: the env's action space.
        policy_kwargs: the policy's constructor keywords.
        policy_state: the policy's full ``state_dict`` (the parameters that are not evolved keep these values).
        param_names: the evolved parameters, in vector order (:func:`~neuromod_rl.agents.es.params.select_parameters`).
        env_bytes: the env, cloudpickled; every worker unpickles fresh copies of it.
        seed: the run's seed (episode seeds derive from it).
        episodes_per_member: episodes (lifetimes) each member is scored on per generation.
        deterministic: roll out the deterministic action (argmax / Gaussian mean).
        batched: score members in one batched forward (else one after the other).
        redraw_initial_weights: start every episode from fresh random ABCD weights ``U[-s, s]``
            (drawn per episode, the same for every member) instead of the policy's stored draw.
        l2_penalty: weight of ``mean(theta^2)`` subtracted from the fitness.
        max_episode_steps: a guard against envs that never end.
    """

    policy_class: type
    observation_space: spaces.Space
    action_space: spaces.Space
    policy_kwargs: dict[str, Any]
    policy_state: dict[str, torch.Tensor]
    param_names: list[str]
    env_bytes: bytes
    seed: int
    episodes_per_member: int = 4
    deterministic: bool = True
    batched: bool = True
    redraw_initial_weights: bool = False
    l2_penalty: float = 0.0
    max_episode_steps: int = 100_000


@dataclass
class MemberResults:
    """Scores of ``n`` members: ``fitness[n]``, per-episode ``returns[n, K]`` and ``lengths[n, K]``."""

    fitness: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray

    @staticmethod
    def cat(parts: Sequence[MemberResults]) -> MemberResults:
        fields = ("fitness", "returns", "lengths")
        return MemberResults(*(np.concatenate([getattr(p, k) for p in parts]) for k in fields))


def episode_seeds(seed: int, generation: int, n: int) -> list[int]:
    """Env seeds of the ``n`` episodes of ``generation`` (independent streams per run seed and generation)."""
    return [int(s) for s in np.random.SeedSequence([seed, generation]).generate_state(n)]


def _member_seed(seed: int, generation: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, generation, index], spawn_key=(1,)).generate_state(1)[0])


def build_policy(spec: EvalSpec) -> PlasticActorCriticPolicy:
    """A private copy of the policy with the template weights, in evaluation mode."""
    policy = spec.policy_class(spec.observation_space, spec.action_space, ConstantSchedule(0.0), **spec.policy_kwargs)
    policy.load_state_dict(spec.policy_state)
    policy.set_training_mode(False)
    return policy.requires_grad_(False)


def env_actions(policy: PlasticActorCriticPolicy, actions: torch.Tensor) -> np.ndarray:
    """What ``predict`` hands the env: Box actions clipped to the bounds, others as they are."""
    out = actions.cpu().numpy().reshape((-1, *policy.action_space.shape))
    if isinstance(policy.action_space, spaces.Box):
        out = np.clip(out, policy.action_space.low, policy.action_space.high)
    return out


class _ActorStep(nn.Module):
    """The deterministic actor of a plastic policy for one step, as a pure function of
    ``(obs, state fields)``: what ``policy.step(..., deterministic=True)`` computes for the action,
    without the critic and without data-dependent branches, so ``vmap`` can map it over members."""

    def __init__(self, policy: PlasticActorCriticPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, fields: dict[str, torch.Tensor]):
        p = self.policy
        features = p._features(obs)[0]
        signal = p._previous_reward(obs).to(features.dtype) if p.core_config.modulation_source == "reward" else None
        y, _, state = p.core.step(p.core.project_input(features), _part(PlasticState(**fields), "pi"), signal)
        # Discrete: the logits (the caller takes the argmax, which would hide a NaN)
        return p.action_net(p.mlp_extractor.forward_actor(y)), _prefixed(state, "pi")


class Evaluator:
    """Scores vectors for one :class:`EvalSpec`; builds its policy and envs once, reuses them."""

    def __init__(self, spec: EvalSpec):
        self.spec = spec
        self.policy = build_policy(spec)
        self._make_env: Callable[[], Any] = lambda: cloudpickle.loads(spec.env_bytes)
        self._envs: list[Any] = []
        self._actor = _ActorStep(self.policy)
        self._batched_step = None

    # -- public ------------------------------------------------------------------------------------
    def evaluate(self, vectors: torch.Tensor | np.ndarray, generation: int, batched: bool | None = None,
                 offset: int = 0) -> MemberResults:
        """Score ``vectors[n, D]`` on the episodes of ``generation``; ``offset`` is the index of
        ``vectors[0]`` in the population (it seeds the action noise of stochastic rollouts)."""
        vectors = torch.tensor(np.asarray(vectors), dtype=torch.float32)  # a private, writable copy
        seeds = episode_seeds(self.spec.seed, generation, self.spec.episodes_per_member)
        use_batched = self.spec.batched if batched is None else batched
        with torch.no_grad():
            if use_batched:
                returns, lengths = self._rollout_batched(vectors, seeds, _Members(offset, generation))
            else:
                parts = []
                for j, v in enumerate(vectors):
                    with torch.random.fork_rng():  # action noise from the member's own stream
                        torch.manual_seed(_member_seed(self.spec.seed, generation, offset + j))
                        parts.append(self._rollout_member(v, seeds, _Members(offset + j, generation)))
                returns, lengths = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
        penalty = self.spec.l2_penalty * vectors.pow(2).mean(dim=1).double().numpy()
        with np.errstate(over="ignore"):  # an overflow is reported below, with the member
            fitness = returns.mean(axis=1) - penalty
        if not np.isfinite(fitness).all():
            # evotorch would rank a NaN fitness and fail far from here ("'NoneType' object has no attribute 'evals'")
            j = int(np.flatnonzero(~np.isfinite(fitness))[0])
            raise FloatingPointError(
                f"{_Members(offset, generation).name(j)} scored a non-finite fitness ({fitness[j]}) from finite "
                f"rewards: its returns {returns[j].tolist()} or its L2 penalty ({penalty[j]}) left the float range; "
                "scale the env's rewards down (or lower l2_penalty)"
            )
        return MemberResults(fitness, returns, lengths)

    def episode_start_state(self, seeds: Sequence[int]) -> PlasticState:
        """The state at the start of each episode ``[K, ...]``: the policy's initial state, with fresh
        random ABCD weights per episode when ``redraw_initial_weights`` is set."""
        state = self.policy.initial_state(len(seeds))
        if not self.spec.redraw_initial_weights:
            return state
        fields = {}
        for name, rule in self._redrawable_fields():
            draws = []
            for s in seeds:
                rule.redraw_initial_weights(torch.Generator().manual_seed(s))
                draws.append(rule.init_traces(1)["F"][0])
            fields[name] = torch.stack(draws)
        return state.replace(**fields)

    # -- internals ---------------------------------------------------------------------------------
    def _redrawable_fields(self) -> list[tuple[str, Any]]:
        core = self.policy.core
        layers = getattr(core, "layers", None)
        if layers is not None:  # PlasticMLPCell: traces F0, F1, ... per layer
            found = [(f"pi.F{i}", layer.rule) for i, layer in enumerate(layers)]
        else:
            found = [("pi.F", core.rule)]
        found = [(name, rule) for name, rule in found if hasattr(rule, "redraw_initial_weights")]
        if not found:
            raise ValueError(
                "redraw_initial_weights=True needs a rule that draws its episode-start weights (rule='abcd'); "
                f"this policy's core uses {type(core.rule).__name__}"
            )
        return found

    def _env_slots(self, n: int) -> list[Any]:
        while len(self._envs) < n:
            self._envs.append(self._make_env())
        return self._envs[:n]

    def _run(self, n_members: int, seeds: Sequence[int], act: Callable, state,
             members: _Members) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Roll out ``n_members x K`` envs in lockstep until every episode ended; ``act(obs[n*K], state)
        -> (env actions[n*K], state)``. Slot ``j*K + k`` is member ``j``'s episode ``k``; ``members``
        names them when an env returns NaN/inf."""
        K = len(seeds)
        envs = self._env_slots(n_members * K)
        obs = [env.reset(seed=seeds[i % K])[0] for i, env in enumerate(envs)]
        returns = np.zeros(n_members * K)
        lengths = np.zeros(n_members * K, dtype=np.int64)
        active = np.ones(n_members * K, dtype=bool)
        rewards = np.zeros(n_members * K)

        def where(slot: int) -> str:
            return f"episode {slot % K} of {members.name(slot // K)}"

        stacked = _stack(obs)
        check_transition(stacked, rewards, "0 (reset)", where=where)
        for t in range(self.spec.max_episode_steps):
            actions, state = act(stacked, state)
            rewards[:] = 0.0  # an ended episode adds nothing
            for i in np.flatnonzero(active):
                obs[i], r, terminated, truncated, _ = envs[i].step(actions[i])
                rewards[i] = float(r)
                returns[i] += rewards[i]
                lengths[i] += 1
                active[i] = not (terminated or truncated)
            stacked = _stack(obs)
            # a NaN fitness fails inside evotorch's ranking, far from its source; every member shares
            # the episodes, so the first bad slot names the step that produced it
            check_transition(stacked, rewards, t + 1, where=where)
            if not active.any():
                break
        return returns.reshape(n_members, K), lengths.reshape(n_members, K)

    def _rollout_member(self, vector: torch.Tensor, seeds: Sequence[int],
                        member: _Members) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        policy = self.policy
        set_vector(policy, self.spec.param_names, vector)
        starts = torch.zeros(len(seeds), dtype=torch.bool)

        def act(obs, state):
            try:
                out = policy.step(policy.obs_to_tensor(obs)[0], state, starts, deterministic=self.spec.deterministic)
            except FloatingPointError as err:  # the policy names the source; say which member it was
                raise FloatingPointError(f"{member.name(0)}: {err}") from None
            return env_actions(policy, out.actions), out.state

        returns, lengths = self._run(1, seeds, act, self.episode_start_state(seeds), member)
        return returns[0], lengths[0]

    def _rollout_batched(self, vectors: torch.Tensor, seeds: Sequence[int],
                         members: _Members) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        policy, n, K = self.policy, vectors.shape[0], len(seeds)
        if not self.spec.deterministic:
            raise ValueError("batched evaluation rolls out the deterministic action; set deterministic=True "
                             "or batched=False")
        if not isinstance(policy.observation_space, spaces.Box) or not isinstance(
            policy.action_space, spaces.Box | spaces.Discrete
        ):
            raise ValueError("batched evaluation needs a Box observation space and a Box or Discrete action "
                             "space; set batched=False for other spaces")
        if self._batched_step is None:
            actor = self._actor
            # tie_weights=False: PlasticMLPCell registers its last layer's rule twice (layers.-1.rule and
            # rule); swapping it under both names would leave vmapped tensors in the module afterwards
            self._batched_step = vmap(lambda p, o, s: functional_call(actor, p, (o, s), tie_weights=False))
        params = {f"policy.{k}": v for k, v in split_vector(policy, self.spec.param_names, vectors).items()}
        start = self.episode_start_state(seeds)
        fields = {k: v.unsqueeze(0).expand(n, *v.shape).contiguous() for k, v in start.items() if k.startswith("pi.")}

        def act(obs, fields):
            obs_t = policy.obs_to_tensor(obs)[0]
            obs_t = obs_t.reshape(n, K, *obs_t.shape[1:])
            out, new_fields = self._batched_step(params, obs_t, fields)
            if not bool(torch.isfinite(out).all()):
                self._raise_non_finite(vectors, out, obs_t, fields, new_fields, members)
            if isinstance(policy.action_space, spaces.Discrete):
                out = out.argmax(dim=-1)
            return env_actions(policy, out.reshape(n * K, *out.shape[2:])), new_fields

        return self._run(n, seeds, act, fields, members)

    def _raise_non_finite(self, vectors: torch.Tensor, out: torch.Tensor, obs: torch.Tensor,
                          fields: dict[str, torch.Tensor], new_fields: dict[str, torch.Tensor],
                          members: _Members) -> None:  # fmt: skip
        """Name the first member whose batched step produced NaN/inf and why (the vmapped step cannot
        say): that member's weights go into the policy, which :func:`non_finite_source` then inspects."""
        j = int((~torch.isfinite(out.reshape(out.shape[0], -1))).any(1).nonzero()[0])
        set_vector(self.policy, self.spec.param_names, vectors[j])
        source = non_finite_source(self.policy, obs[j], PlasticState(**{k: v[j] for k, v in fields.items()}),
                                   PlasticState(**{k: v[j] for k, v in new_fields.items()}))  # fmt: skip
        raise FloatingPointError(f"{members.name(j)}: {type(self.policy).__name__}: {source}")


@dataclass(frozen=True)
class _Members:
    """Names population members in errors: member ``j`` of a chunk is ``first + j`` in ``generation``."""

    first: int
    generation: int

    def name(self, j: int) -> str:
        return f"population member {self.first + j} (generation {self.generation})"


def _stack(obs: list[Any]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(obs[0], dict):
        return {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    return np.stack(obs)
