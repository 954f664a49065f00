"""BLUR: bidirectional learned update rules -- Sandler et al., "Meta-learning bidirectional update
rules", ICML 2021.

Every neuron carries ``k`` states; every synapse carries ``k`` channels in a *forward* block ``W``
and a *backward* block ``V``. One small genome, shared by all neurons and synapses, defines

* forward messages  ``u_{b,j,l} = Σ_i Σ_k x_{b,i,k} ν^f_{k,l} W_{i,j,l}``      (paper eq. 2),
  neuron update     ``y <- σ(upd_f ⊙ u)`` (neurons start every example at zero, so the paper's
  ``keep ⊙ y`` term vanishes in a feed-forward pass and is left out of the genome);
* backward messages ``v_{b,i,l} = Σ_j Σ_k y_{b,j,k} ν^b_{k,l} V_{i,j,l}``      (paper eq. 3),
  neuron update     ``x <- keep_b ⊙ x + upd_b ⊙ σ'(x_0) v``;
* synapse update    ``ΔW_{i,j,o} = (1/B) Σ_b Σ_k Σ_l x_{b,i,k} P_{k,o} Q_{o,l} y_{b,j,l}``   (paper eq. 4),
  ``W <- κ W + upd_s ΔW`` with ``κ = clamp(keep_s, 0, 1)``, and the same for ``V``.

Interpretation choices (details the paper leaves *open*):

* ``upd_f``, ``keep_b``, ``upd_b`` are per state (``k`` each), the synapse ``keep_s``, ``upd_s`` scalars:
  ``4 k² + 3 k + 2`` numbers (24 for k = 2, 78 for k = 4; the paper quotes about 27 and 75);
* the backward neuron update multiplies the message by the activation's derivative at the neuron's
  own state 0 (``σ' = 1 - x_0²`` for tanh). That factor is fixed, not evolved; it is what lets one
  genome equal backprop (:meth:`BlurGenome.sgd`), which the paper states and the tests check;
* supervised use writes the error ``target - softmax(z)`` into state 1 of the output layer (a linear
  ν cannot compute a softmax); in RL the feedback signal (reward, TD error) is written there as is;
* weight updates average over the batch, so ``upd_s`` is a learning rate;
* the synapse keep is used clamped to ``[0, 1]``: above 1 weights grow exponentially and below 0
  they flip sign every step, and a genome found on short unrolls otherwise exploits ``keep_s > 1``
  and diverges on longer ones (seen with CMA-ES in ``reproduce blur``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

GENOME_FIELDS = ("nu_f", "nu_b", "P", "Q", "upd_f", "keep_b", "upd_b", "keep_s", "upd_s")


class BlurGenome(nn.Module):
    """The meta-learned numbers of BLUR (see the module docstring for the equations).

    Args:
        k: states per neuron (>= 2: state 0 carries activity forward, state 1 feedback backward).
        lr: ``upd_s`` at initialisation. The initial genome is the backprop genome of :meth:`sgd`
            plus ``noise`` times a standard normal (``keep_s`` stays 1), so meta-training starts
            from a working rule.
        noise: scale of the perturbation (``0`` gives exactly SGD).
        generator: random generator for the perturbation.
    """

    def __init__(self, k: int = 2, lr: float = 0.1, noise: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        if k < 2:
            raise ValueError(f"BlurGenome: k must be >= 2 (activity and feedback states), got {k}")
        if not math.isfinite(lr):
            raise ValueError(f"BlurGenome: lr must be finite, got {lr}")
        self.k = k
        values = sgd_genome_values(k, lr)
        for name in GENOME_FIELDS:
            v = values[name]
            if noise and name != "keep_s":  # a synapse keep above 1 grows weights exponentially
                v = v + noise * torch.randn(v.shape, generator=generator)
            setattr(self, name, nn.Parameter(v))

    @classmethod
    def sgd(cls, k: int = 2, lr: float = 0.1) -> BlurGenome:
        """The genome that makes a BLUR network do plain SGD backprop (tied init, tanh hidden)."""
        return cls(k=k, lr=lr, noise=0.0)

    @property
    def synapse_keep(self) -> Tensor:
        """``keep_s`` clamped to ``[0, 1]`` (the retention actually applied to the weights)."""
        return self.keep_s.clamp(0.0, 1.0)

    @property
    def n_numbers(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def to_vector(self) -> Tensor:
        return torch.cat([getattr(self, n).reshape(-1) for n in GENOME_FIELDS])

    def load_vector(self, vec: Tensor) -> BlurGenome:
        """Write a flat vector (e.g. a CMA-ES solution) into the genome, in place; returns self."""
        if vec.numel() != self.n_numbers:
            raise ValueError(f"BlurGenome.load_vector: expected {self.n_numbers} numbers, got {vec.numel()}")
        i = 0
        with torch.no_grad():
            for n in GENOME_FIELDS:
                p = getattr(self, n)
                p.copy_(vec[i : i + p.numel()].reshape(p.shape))
                i += p.numel()
        return self


def sgd_genome_values(k: int, lr: float) -> dict[str, Tensor]:
    """Genome entries for backprop: ν^f routes state 0 -> channel 0, ν^b state 1 -> channel 1;
    every channel learns ``ΔW_ij = x_i δ_j`` (P row 0, Q column 1); forward overwrites, backward keeps
    state 0 and writes state 1."""
    nu_f, nu_b, P, Q = (torch.zeros(k, k) for _ in range(4))
    nu_f[0, 0] = 1.0
    nu_b[1, 1] = 1.0
    P[0, :] = 1.0
    Q[:, 1] = 1.0
    keep_b = torch.zeros(k)
    keep_b[0] = 1.0
    return {
        "nu_f": nu_f, "nu_b": nu_b, "P": P, "Q": Q,
        "upd_f": torch.ones(k), "keep_b": keep_b, "upd_b": torch.ones(k),
        "keep_s": torch.tensor(1.0), "upd_s": torch.tensor(float(lr)),
    }  # fmt: skip


# -- the three genome-driven passes, as pure functions (shared by the network and the ``blur`` rule) --
def forward_message(x: Tensor, W: Tensor, nu_f: Tensor) -> Tensor:
    """``u[b,j,l] = Σ_i Σ_k x[b,i,k] ν^f[k,l] W[i,j,l]``; ``W`` ``[I,J,k]`` or ``[B,I,J,k]``."""
    xn = x @ nu_f
    return torch.einsum("bil,ijl->bjl", xn, W) if W.dim() == 3 else torch.einsum("bil,bijl->bjl", xn, W)


def backward_message(y: Tensor, V: Tensor, nu_b: Tensor) -> Tensor:
    """``v[b,i,l] = Σ_j Σ_k y[b,j,k] ν^b[k,l] V[i,j,l]`` (the backward block ``V``)."""
    yn = y @ nu_b
    return torch.einsum("bjl,ijl->bil", yn, V) if V.dim() == 3 else torch.einsum("bjl,bijl->bil", yn, V)


def synapse_delta(x: Tensor, y: Tensor, P: Tensor, Q: Tensor, batch_mean: bool = True) -> Tensor:
    """``ΔW[i,j,o] = Σ_k Σ_l x[b,i,k] P[k,o] Q[o,l] y[b,j,l]``, averaged over ``b`` (or per ``b``)."""
    a, c = x @ P, y @ Q.transpose(0, 1)
    if batch_mean:
        return torch.einsum("bio,bjo->ijo", a, c) / x.shape[0]
    return a.unsqueeze(2) * c.unsqueeze(1)


def tanh_derivative(state0: Tensor) -> Tensor:
    """``σ'`` of a tanh neuron from its output ``x_0``: ``1 - x_0²``."""
    return 1.0 - state0 * state0


class BlurNetwork:
    """A fully connected BLUR network ``sizes = [in, hidden..., out]`` with tanh hidden layers and
    a linear output layer, trained by its genome alone (no autograd in the learning loop).

    The weights are plain tensors, passed in and returned, so a meta-gradient can flow through a
    whole unroll of :meth:`train_step` into the genome.
    """

    def __init__(self, sizes: list[int], genome: BlurGenome):
        if len(sizes) < 2 or min(sizes) <= 0:
            raise ValueError(f"BlurNetwork: sizes must list >= 2 positive layer widths, got {sizes}")
        self.sizes, self.genome, self.k = list(sizes), genome, genome.k

    def init_weights(self, generator: torch.Generator | None = None, tied: bool = True) -> list[tuple[Tensor, Tensor]]:
        """Forward/backward blocks per layer, uniform ±1/sqrt(fan_in) like ``nn.Linear``.

        ``tied=True`` gives every channel of both blocks the same matrix (the start backprop needs);
        ``tied=False`` draws every channel and the backward block independently (feedback alignment).
        """
        out = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / math.sqrt(a)

            def draw(shape, bound=bound):
                return bound * (2 * torch.rand(shape, generator=generator) - 1)

            if tied:
                W = draw((a, b)).unsqueeze(-1).expand(a, b, self.k).contiguous()
                out.append((W, W.clone()))
            else:
                out.append((draw((a, b, self.k)), draw((a, b, self.k))))
        return out

    def _states(self, x: Tensor) -> Tensor:
        s = x.new_zeros(*x.shape, self.k)
        s[..., 0] = x
        return s

    def forward(self, weights: list[tuple[Tensor, Tensor]], x: Tensor) -> list[Tensor]:
        """Neuron states ``[B, n_l, k]`` of every layer after the forward pass (logits: last, state 0)."""
        g = self.genome
        states = [self._states(x)]
        for l, (W, _) in enumerate(weights):
            u = forward_message(states[-1], W, g.nu_f)
            pre = g.upd_f * u
            last = l == len(weights) - 1
            states.append(pre if last else torch.tanh(pre))
        return states

    def logits(self, weights: list[tuple[Tensor, Tensor]], x: Tensor) -> Tensor:
        return self.forward(weights, x)[-1][..., 0]

    def train_step(
        self,
        weights: list[tuple[Tensor, Tensor]],
        x: Tensor,
        target: Tensor | None = None,
        feedback: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """One genome learning step: forward; write into state 1 of the output layer either the
        supervised error for class labels ``target [B]`` or a given ``feedback [B, out]`` (reward, TD
        error); backward pass; synapse update. Returns the new weights (pure)."""
        if (target is None) == (feedback is None):
            raise ValueError("BlurNetwork.train_step: give exactly one of target (labels) or feedback")
        g = self.genome
        states = self.forward(weights, x)
        out = states[-1]
        if feedback is None:
            feedback = supervised_feedback(out[..., 0], target)
        fb = torch.zeros_like(out)
        fb[..., 1] = feedback
        states[-1] = out * (1 - _state_mask(out, 1)) + fb
        for l in range(len(weights) - 1, 0, -1):
            v = backward_message(states[l + 1], weights[l][1], g.nu_b)
            s = states[l]
            states[l] = g.keep_b * s + g.upd_b * tanh_derivative(s[..., :1]) * v
        new = []
        for l, (W, V) in enumerate(weights):
            d = synapse_delta(states[l], states[l + 1], g.P, g.Q)
            keep = g.synapse_keep
            new.append((keep * W + g.upd_s * d, keep * V + g.upd_s * d))
        return new


def supervised_feedback(logits: Tensor, target: Tensor) -> Tensor:
    """The error ``onehot(target) - softmax(logits)`` (= minus the gradient of the cross-entropy)."""
    onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return onehot - torch.softmax(logits, dim=-1)


def _state_mask(s: Tensor, index: int) -> Tensor:
    m = torch.zeros(s.shape[-1], dtype=s.dtype, device=s.device)
    m[index] = 1.0
    return m
