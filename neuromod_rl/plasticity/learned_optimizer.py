"""A learned, coordinatewise LSTM optimizer -- Andrychowicz et al., "Learning to learn by gradient
descent by gradient descent", NeurIPS 2016.

The optimizer ``m_phi`` maps each coordinate's gradient to that coordinate's update,

    θ_{t+1} = θ_t + g_t,      [g_t, state_{t+1}] = m_phi(∇f(θ_t), state_t)        (paper eq. 1),

with one small LSTM whose weights ``phi`` are shared by all coordinates while every coordinate keeps
its own hidden/cell state (paper §2.1, "coordinatewise"). The meta-loss is the sum of the optimizee
losses along the trajectory, ``L(phi) = Σ_t f(θ_t)`` (eq. 3 with w_t = 1), trained by truncated BPTT;
the gradient fed to the LSTM is detached ("second derivatives dropped", §3).

The same :class:`CoordinatewiseLSTM` is the core of the ``l2l`` plasticity rule
(:mod:`neuromod_rl.plasticity.rules.l2l`), where the "coordinates" are synapses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


def preprocess_gradient(g: Tensor, p: float = 10.0) -> Tensor:
    """Andrychowicz et al. (2016), appendix A: map ``g`` to two features of similar scale,

    ``(log|g| / p, sign g)`` if ``|g| >= e^-p``, else ``(-1, e^p g)``.

    Returns ``g.shape + (2,)``. Gradients span many orders of magnitude; the log keeps the LSTM's
    inputs O(1) while the second branch stays continuous near zero.
    """
    if p <= 0:
        raise ValueError(f"preprocess_gradient: p must be > 0, got {p}")
    thresh = math.exp(-p)
    big = g.abs() >= thresh
    # clamp before the log so the unused branch of torch.where never produces -inf (and NaN grads).
    first = torch.where(big, torch.log(g.abs().clamp_min(thresh)) / p, torch.full_like(g, -1.0))
    second = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.stack([first, second], dim=-1)


class CoordinatewiseLSTM(nn.Module):
    """A stacked LSTM applied independently to every coordinate, weights shared (paper §2.1).

    ``forward(x[..., input_size], h[..., L, H], c[..., L, H]) -> (out[...], h, c)``: any leading
    shape (parameters ``[n]``, a batch of problems ``[P, n]``, synapses ``[B, n_pre, n_post]``) is
    flattened into the LSTM's batch. ``out = out_scale * Linear_{H->1}(h_top)`` (the paper scales the
    output by 0.01 so early updates are small).
    """

    def __init__(
        self, input_size: int = 2, hidden_size: int = 20, num_layers: int = 2, out_scale: float = 0.01
    ):
        super().__init__()
        if min(input_size, hidden_size, num_layers) <= 0:
            raise ValueError(
                f"CoordinatewiseLSTM: input_size, hidden_size and num_layers must be positive, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.out_scale = float(out_scale)
        self.cells = nn.ModuleList(
            nn.LSTMCell(input_size if l == 0 else hidden_size, hidden_size) for l in range(num_layers)
        )
        self.out = nn.Linear(hidden_size, 1)

    def init_state(self, shape: tuple[int, ...], device=None, dtype=None) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)`` of shape ``shape + (num_layers, hidden_size)``."""
        full = (*shape, self.num_layers, self.hidden_size)
        z = torch.zeros(full, device=device, dtype=dtype or torch.get_default_dtype())
        return z, z.clone()

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lead = x.shape[:-1]
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"CoordinatewiseLSTM: expected {self.input_size} input features, got {x.shape[-1]}"
            )
        if h.shape != (*lead, self.num_layers, self.hidden_size) or c.shape != h.shape:
            raise ValueError(
                f"CoordinatewiseLSTM: state must have shape {(*lead, self.num_layers, self.hidden_size)}, "
                f"got h {tuple(h.shape)}, c {tuple(c.shape)}"
            )
        inp = x.reshape(-1, self.input_size)
        hf = h.reshape(-1, self.num_layers, self.hidden_size)
        cf = c.reshape(-1, self.num_layers, self.hidden_size)
        hs, cs = [], []
        for l, cell in enumerate(self.cells):
            hl, cl = cell(inp, (hf[:, l], cf[:, l]))
            hs.append(hl)
            cs.append(cl)
            inp = hl
        out = self.out_scale * self.out(inp).squeeze(-1)
        shape = (*lead, self.num_layers, self.hidden_size)
        return out.reshape(lead), torch.stack(hs, 1).reshape(shape), torch.stack(cs, 1).reshape(shape)


LossFn = Callable[[Tensor], Tensor]


class L2LOptimizer(nn.Module):
    """The learned optimizer of Andrychowicz et al. (2016): 2-layer, 20-unit coordinatewise LSTM on
    preprocessed gradients (``p = 10``), output scaled by 0.01.

    Usage (meta-training one truncated unroll)::

        opt = L2LOptimizer()
        theta, state = theta0.requires_grad_(), None
        for _ in range(100 // 20):
            losses, theta, state = opt.unroll(loss_fn, theta, 20, state)
            losses.sum().backward(); meta_opt.step(); meta_opt.zero_grad()
            theta, state = theta.detach().requires_grad_(), tuple(s.detach() for s in state)
    """

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, p: float = 10.0, out_scale: float = 0.01):
        super().__init__()
        self.p = float(p)
        self.net = CoordinatewiseLSTM(2, hidden_size, num_layers, out_scale)

    def init_state(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self.net.init_state(tuple(theta.shape), device=theta.device, dtype=theta.dtype)

    def step(self, grad: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The update ``g_t`` for gradient ``grad`` (any shape) and the next LSTM state."""
        update, h, c = self.net(preprocess_gradient(grad, self.p), *state)
        return update, (h, c)

    def unroll(
        self,
        loss_fn: LossFn,
        theta: Tensor,
        n_steps: int,
        state: tuple[Tensor, Tensor] | None = None,
        track_meta: bool = True,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Optimise ``loss_fn`` from ``theta`` for ``n_steps``; returns ``(losses[n_steps], theta, state)``.

        ``losses[t] = f(θ_t)`` keeps its graph to ``phi`` through ``θ`` (the meta-loss is their sum);
        the gradient fed to the LSTM is detached, so no second derivatives are taken (paper §3).
        ``loss_fn`` may return one loss per problem (a batch of problems sharing the optimizer);
        their sum is differentiated and their mean recorded. ``track_meta=False`` (evaluation) cuts
        the graph after every step, so memory stays constant over long horizons.
        """
        if n_steps <= 0:
            raise ValueError(f"unroll: n_steps must be > 0, got {n_steps}")
        if not theta.requires_grad:
            theta = theta.detach().requires_grad_()
        state = self.init_state(theta) if state is None else state
        losses = []
        for _ in range(n_steps):
            loss = loss_fn(theta)
            (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=track_meta)
            update, state = self.step(grad.detach(), state)
            losses.append(loss.mean() if track_meta else loss.mean().detach())
            theta = theta + update
            if not track_meta:
                theta = theta.detach().requires_grad_()
                state = (state[0].detach(), state[1].detach())
        return torch.stack(losses), theta, state
