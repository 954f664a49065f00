"""Learned neuron and synapse update functions -- Gregor, "Finding online neural update rules by
learning to remember", 2020 (arXiv:2003.03124)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neuromod_rl.plasticity.rules.base import PlasticityRule, register_rule
from neuromod_rl.plasticity.state import PlasticState


class GatedUpdate(nn.Module):
    """A small shared MLP that updates a state vector: ``s' = (1 - σ(g)) s + σ(g) tanh(c)``, with
    ``[g, c] = Linear(tanh(z))`` and ``z`` the (pre-summed) first-layer input.

    The gate keeps every state in ``[-1, 1]`` for any sequence length (a plain residual
    ``s + f(...)`` drifts without bound over long episodes) and lets the function learn how fast
    each state component forgets.
    """

    def __init__(self, state_size: int, hidden: int):
        super().__init__()
        self.state_in = nn.Linear(state_size, hidden)
        self.out = nn.Linear(hidden, 2 * state_size)
        with torch.no_grad():  # start slow: gates mostly closed, so states persist at init
            self.out.bias[:state_size].fill_(-2.0)

    def forward(self, s: Tensor, z: Tensor) -> Tensor:
        gate, cand = self.out(torch.tanh(self.state_in(s) + z)).chunk(2, dim=-1)
        g = torch.sigmoid(gate)
        return (1 - g) * s + g * torch.tanh(cand)


@register_rule("metanet")
class MetaNetRule(PlasticityRule):
    """Gregor (2020): every neuron and every synapse holds a state vector, updated by two small
    meta-networks shared by all neurons/synapses from local information only; neuron types are
    learned embeddings fed to both.

    With pre activity ``x_i`` (state ``a_i``, type embedding ``e_i``), post activity ``y_j``
    (``b_j``, ``e_j``), synapse state ``s_ij`` and modulation ``m`` (0 when absent), one step is

    * neurons:  ``a_i' = f_n(a_i; x_i, e_i, 0)``, ``b_j' = f_n(b_j; y_j, e_j, m_j)``;
    * synapses: ``s_ij' = f_w(s_ij; a_i', b_j', x_i, y_j, e_i, e_j, m_j)``;
    * read-out: ``weight_term = alpha ⊙ (s_ij · r)`` with a learned vector ``r``.

    ``f_n`` and ``f_w`` are :class:`GatedUpdate` MLPs. Interpretation choices (the paper leaves
    them *open*): the neuron activity itself is the host cell's (``PlasticRNNCell``'s tanh; the
    per-neuron state vectors are the rule's memory beside it), pre and post sides keep their own
    neuron states so the rule also serves feed-forward layers; neuron ``i`` has type
    ``i mod n_types``; ``f_w``'s first layer is split into a synapse part, a pre-neuron part and a
    post-neuron part that are summed by broadcasting, which is the same linear map as on the
    concatenated inputs but never materialises a ``[B, n_pre, n_post, inputs]`` tensor.

    Traces: ``S [B, n_pre, n_post, synapse_size]``, ``A [B, n_pre, neuron_size]``,
    ``Bn [B, n_post, neuron_size]``. Memory per step grows as ``B n_pre n_post meta_hidden``: keep the
    sizes small (defaults 4, 4, 16).

    Sequence engine: this rule runs on the ``reference`` backend only (it has networks inside, which the
    fused engine does not implement); ``scan`` picks ``reference`` for it by itself.
    """

    modulation = "optional"
    trace_names = ("S", "A", "Bn")

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        alpha_shape="none",
        alpha_init: float = 0.01,
        synapse_size: int = 4,
        neuron_size: int = 4,
        meta_hidden: int = 16,
        n_types: int = 4,
        type_size: int = 4,
    ):
        super().__init__(n_pre, n_post, alpha_shape, alpha_init)
        for name, v in dict(synapse_size=synapse_size, neuron_size=neuron_size, meta_hidden=meta_hidden,
                            n_types=n_types, type_size=type_size).items():  # fmt: skip
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"metanet: {name} must be a positive int, got {v!r}")
        self.synapse_size, self.neuron_size = synapse_size, neuron_size
        self.types = nn.Parameter(0.5 * torch.randn(n_types, type_size))
        self.register_buffer("type_pre", torch.arange(n_pre) % n_types, persistent=False)
        self.register_buffer("type_post", torch.arange(n_post) % n_types, persistent=False)
        # f_n: neuron state update from (activity, type, modulation).
        self.f_n = GatedUpdate(neuron_size, meta_hidden)
        self.n_in = nn.Linear(2 + type_size, meta_hidden, bias=False)
        # f_w: synapse update; first layer split by source (synapse / pre neuron / post neuron).
        self.f_w = GatedUpdate(synapse_size, meta_hidden)
        self.w_pre = nn.Linear(neuron_size + 1 + type_size, meta_hidden, bias=False)
        self.w_post = nn.Linear(neuron_size + 2 + type_size, meta_hidden, bias=False)
        self.readout = nn.Parameter(torch.full((synapse_size,), 1.0 / synapse_size))

    def init_traces(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        dtype = dtype or torch.get_default_dtype()
        z = dict(device=device, dtype=dtype)
        return {
            "S": torch.zeros(batch, self.n_pre, self.n_post, self.synapse_size, **z),
            "A": torch.zeros(batch, self.n_pre, self.neuron_size, **z),
            "Bn": torch.zeros(batch, self.n_post, self.neuron_size, **z),
        }

    def weight_term(self, state: PlasticState) -> Tensor:
        w = state.S @ self.readout
        return w if self.alpha is None else self.alpha * w

    def update(self, state: PlasticState, pre: Tensor, post: Tensor, modulation: Tensor | None) -> PlasticState:
        B = pre.shape[0]
        m = self._modulation(modulation, B)
        m = post.new_zeros(B, self.n_post) if m is None else m.reshape(B, -1).expand(B, self.n_post)
        e_pre = self.types[self.type_pre].to(pre.dtype).expand(B, -1, -1)
        e_post = self.types[self.type_post].to(pre.dtype).expand(B, -1, -1)
        x, y, mm = pre.unsqueeze(-1), post.unsqueeze(-1), m.unsqueeze(-1)
        A = self.f_n(state.A, self.n_in(torch.cat([x, torch.zeros_like(x), e_pre], -1)))
        Bn = self.f_n(state.Bn, self.n_in(torch.cat([y, mm, e_post], -1)))
        z_pre = self.w_pre(torch.cat([A, x, e_pre], -1))  # [B, n_pre, meta_hidden]
        z_post = self.w_post(torch.cat([Bn, y, mm, e_post], -1))  # [B, n_post, meta_hidden]
        S = self.f_w(state.S, z_pre.unsqueeze(2) + z_post.unsqueeze(1))
        return state.replace(S=S, A=A, Bn=Bn)
