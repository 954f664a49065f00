"""Plastic cells: slow weights ``w`` + a rule's fast weights ``alpha ⊙ F`` + a modulator head.

Each cell splits one time step in two so the sequence engine can be fast:

* ``project_input(x[T, B, I])`` -- the part that does not depend on the past, for all T steps at
  once (one matrix multiply);
* ``step(xp_t, state, modulation_t)`` -- the recurrent part, one step of the specification.

Data flow of one step (``docs/architecture.md``): features -> plastic core -> modulator head -> ``M(t)`` gates
the trace update of this same step -> next state.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from neuromod_rl.plasticity.rules import PlasticityRule, make_rule
from neuromod_rl.plasticity.state import PlasticState

Modulation = Literal["scalar", "fanout"] | None
ModulationSource = Literal["hidden", "external"]
MODULATIONS = ("scalar", "fanout", None)
MODULATION_SOURCES = ("hidden", "external")


class ModulatorHead(nn.Module):
    """The neuromodulatory signal ``M(t)`` of Backpropamine (Miconi et al. 2019).

    * source ``"hidden"``: ``M(t) = tanh(Linear_{N->1}(h_t))``;
    * source ``"external"``: ``M(t)`` is given by the caller (reward, TD error), shape ``[B]``.

    With ``mode="fanout"`` the scalar is spread to one signed rate per postsynaptic neuron,
    ``eta(t) = Linear_{1->N}(M(t))``, shape ``[B, N]``; with ``"scalar"`` it stays ``[B]``.
    """

    def __init__(self, hidden_size: int, n_post: int, mode: Literal["scalar", "fanout"], source: ModulationSource):
        super().__init__()
        if mode not in ("scalar", "fanout"):
            raise ValueError(f"modulation={mode!r} is not one of ('scalar', 'fanout', None)")
        if source not in MODULATION_SOURCES:
            raise ValueError(f"modulation_source={source!r} is not one of {MODULATION_SOURCES}")
        self.mode, self.source = mode, source
        self.to_scalar = nn.Linear(hidden_size, 1) if source == "hidden" else None
        self.fanout = nn.Linear(1, n_post) if mode == "fanout" else None

    def forward(self, h: Tensor, external: Tensor | None = None) -> Tensor:
        if self.source == "hidden":
            m = torch.tanh(self.to_scalar(h)).squeeze(-1)
        else:
            if external is None:
                raise ValueError(
                    "this cell takes its modulation from the caller (modulation_source='external'): "
                    "pass modulation=[T, B] to scan (e.g. the previous reward or TD error)"
                )
            m = external.reshape(h.shape[0])
        if self.fanout is not None:
            return self.fanout(m.unsqueeze(-1))
        return m


class PlasticCell(nn.Module):
    """Base class: the interface the sequence engine (:func:`neuromod_rl.plasticity.scan`) relies on."""

    input_size: int
    hidden_size: int
    rule: PlasticityRule
    modulator: ModulatorHead | None

    def _build_modulator(self, rule: PlasticityRule, modulation: Modulation, source: ModulationSource) -> None:
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation={modulation!r} is not one of {MODULATIONS}")
        if rule.modulation == "required" and modulation is None:
            raise ValueError(
                f"rule {rule.name!r} is neuromodulated: choose modulation='scalar' or 'fanout' for this cell"
            )
        if rule.modulation == "never" and modulation is not None:
            raise ValueError(
                f"rule {rule.name!r} takes no modulation: set modulation=None, or use rule='neuromod' / "
                "'retroactive' / 'abcd' for a modulated rule"
            )
        self.modulator = (
            None if modulation is None else ModulatorHead(self.hidden_size, rule.n_post, modulation, source)
        )

    @property
    def external_modulation(self) -> bool:
        """True when ``scan`` must be given a per-step ``modulation`` signal."""
        return self.modulator is not None and self.modulator.source == "external"

    def initial_state(self, batch: int, device=None, dtype=None) -> PlasticState:
        """The state at an episode start (zero hidden state and traces, unless the rule says otherwise)."""
        raise NotImplementedError

    def project_input(self, x: Tensor) -> Tensor:
        """Time-parallel part of the step, applied to ``x[T, B, input_size]`` at once."""
        raise NotImplementedError

    def step(self, xp: Tensor, state: PlasticState, modulation: Tensor | None = None):
        """One recurrent step: ``(y_t, M_t or None, next_state)``."""
        raise NotImplementedError

    def _modulate(self, h: Tensor, external: Tensor | None) -> Tensor | None:
        return None if self.modulator is None else self.modulator(h, external)


def _build_rule(rule, n_pre: int, n_post: int, alpha_shape: str | None, rule_kwargs: dict) -> PlasticityRule:
    if isinstance(rule, PlasticityRule):
        if rule_kwargs:
            raise ValueError(f"rule arguments {sorted(rule_kwargs)} were given with an already built rule")
        return make_rule(rule, n_pre, n_post)
    if alpha_shape is not None:
        rule_kwargs = {**rule_kwargs, "alpha_shape": alpha_shape}
    return make_rule(rule, n_pre, n_post, **rule_kwargs)


def _uniform_(t: Tensor, fan: int) -> Tensor:
    bound = 1.0 / math.sqrt(fan)
    return nn.init.uniform_(t, -bound, bound)


class _RecurrentPlasticCell(PlasticCell):
    """Shared construction of the recurrent cells: ``gates`` blocks of N units, input and recurrent
    weights for all of them in one matrix each, the rule on the N x N plastic block, the modulator."""

    gates: int = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rule: str | PlasticityRule = "neuromod",
        modulation: Modulation | Literal["auto"] = "auto",
        modulation_source: ModulationSource = "hidden",
        alpha_shape: str = "full",
        **rule_kwargs,
    ):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rule = _build_rule(rule, hidden_size, hidden_size, alpha_shape, rule_kwargs)
        if modulation == "auto":
            modulation = "scalar" if self.rule.modulation == "required" else None
        n = self.gates * hidden_size
        self.input = nn.Linear(input_size, n)
        self.w = nn.Parameter(_uniform_(torch.empty(hidden_size, n), hidden_size))
        self._build_modulator(self.rule, modulation, modulation_source)


class PlasticRNNCell(_RecurrentPlasticCell):
    """Plastic Elman RNN (Miconi et al. 2018, 2019): only the recurrent matrix is plastic.

    ``h_t = tanh(W_in x_t + b + h_{t-1} (w + alpha ⊙ F))``; then ``M(t)`` from the modulator head, then
    ``F`` follows ``rule.update(pre=h_{t-1}, post=h_t, M(t))``.

    Args:
        input_size: features per step.
        hidden_size: N, the number of recurrent neurons.
        rule: a registered rule name (``"neuromod"``, ``"retroactive"``, ``"hebbian"``, ...) or a built rule.
        modulation: ``"scalar"`` | ``"fanout"`` | ``None``; default: ``"scalar"`` when the rule needs one.
        modulation_source: ``"hidden"`` (learned head on ``h_t``) or ``"external"`` (given to ``scan``).
        alpha_shape: ``"full"`` | ``"neuron"`` | ``"scalar"`` (see :class:`PlasticityRule`).
        **rule_kwargs: passed to the rule (``clip``, ``eta``, ``eta_e``, ``soft_clip``, ...).
    """


    def initial_state(self, batch: int, device=None, dtype=None) -> PlasticState:
        device = device or self.w.device
        dtype = dtype or self.w.dtype
        return PlasticState(
            h=torch.zeros(batch, self.hidden_size, device=device, dtype=dtype),
            **self.rule.init_traces(batch, device, dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        return self.input(x)

    def step(self, xp: Tensor, state: PlasticState, modulation: Tensor | None = None):
        h_prev = state.h
        recurrent = h_prev @ self.w + torch.bmm(h_prev.unsqueeze(1), self.rule.weight_term(state)).squeeze(1)
        h = torch.tanh(xp + recurrent)
        m = self._modulate(h, modulation)
        state = self.rule.update(state, pre=h_prev, post=h, modulation=m).replace(h=h)
        return h, m, state


class PlasticLSTMCell(_RecurrentPlasticCell):
    """Plastic LSTM (Miconi et al. 2019, §4.3): the plastic matrix replaces the hidden-to-candidate weight.

    Gates ``i, f, o`` are ordinary; the candidate is ``g_t = tanh(W_g x_t + h_{t-1}(w_g + alpha ⊙ F))``;
    ``c_t = f c_{t-1} + i g_t``, ``h_t = o tanh(c_t)``; the trace follows
    ``rule.update(pre=h_{t-1}, post=g_t, M(t))``. The paper uses the fan-out modulator with clip 2 and
    per-neuron alpha: ``PlasticLSTMCell(I, N, modulation="fanout", alpha_shape="neuron", clip=2.0)``.
    Arguments as :class:`PlasticRNNCell`. ``w`` holds the recurrent weights of the gates ``i, f, o``
    and the slow part ``w_g`` of the candidate, side by side.
    """

    gates = 4


    def initial_state(self, batch: int, device=None, dtype=None) -> PlasticState:
        device = device or self.w.device
        dtype = dtype or self.w.dtype
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return PlasticState(h=zeros, c=zeros.clone(), **self.rule.init_traces(batch, device, dtype))

    def project_input(self, x: Tensor) -> Tensor:
        return self.input(x)

    def step(self, xp: Tensor, state: PlasticState, modulation: Tensor | None = None):
        h_prev = state.h
        i, f, g_slow, o = (xp + h_prev @ self.w).chunk(4, dim=-1)
        g = torch.tanh(g_slow + torch.bmm(h_prev.unsqueeze(1), self.rule.weight_term(state)).squeeze(1))
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * g
        h = torch.sigmoid(o) * torch.tanh(c)
        m = self._modulate(h, modulation)
        state = self.rule.update(state, pre=h_prev, post=g, modulation=m).replace(h=h, c=c)
        return h, m, state


class PlasticLinear(nn.Module):
    """A feed-forward plastic layer: ``y = act(x (w + alpha ⊙ F) + b)``, then ``F`` follows ``rule(pre=x, post=y)``.

    The building block of ABCD-style plastic MLPs (Najarro & Risi 2020: ``slow_weights=False``,
    ``bias=False``, ``rule="abcd"`` -- the weights are the trace alone).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rule: str | PlasticityRule = "abcd",
        slow_weights: bool = True,
        bias: bool = True,
        activation: str = "tanh",
        alpha_shape: str | None = None,
        **rule_kwargs,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {sorted(_ACTIVATIONS)}")
        self.rule = _build_rule(rule, in_features, out_features, alpha_shape, rule_kwargs)
        self.in_features, self.out_features = in_features, out_features
        self.w = nn.Parameter(_uniform_(torch.empty(in_features, out_features), in_features)) if slow_weights else None
        self.b = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.activation = _ACTIVATIONS[activation]

    def output(self, x: Tensor, traces: PlasticState) -> Tensor:
        """``act(x (w + alpha ⊙ F) + b)`` at the current traces."""
        a = torch.bmm(x.unsqueeze(1), self.rule.weight_term(traces)).squeeze(1)
        if self.w is not None:
            a = a + x @ self.w
        if self.b is not None:
            a = a + self.b
        return self.activation(a)

    def forward(self, x: Tensor, traces: PlasticState, modulation: Tensor | None = None):
        """``(y, updated traces)`` for one step; ``traces`` holds this layer's rule fields (``F``, ...)."""
        y = self.output(x, traces)
        return y, self.rule.update(traces, pre=x, post=y, modulation=modulation)


_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda a: a}


class PlasticMLPCell(PlasticCell):
    """A stack of :class:`PlasticLinear` layers: feed-forward within a step, plastic across steps.

    State fields are the rule traces of each layer, suffixed by the layer index (``F0``, ``F1``, ...).
    With modulation, ``M(t)`` comes from the last layer's output (or the caller) and is shared by all
    layers.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        n_layers: int = 2,
        rule: str = "abcd",
        modulation: Modulation | Literal["auto"] = "auto",
        modulation_source: ModulationSource = "hidden",
        slow_weights: bool = True,
        activation: str = "tanh",
        **rule_kwargs,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.input_size, self.hidden_size = input_size, hidden_size
        sizes = [input_size] + [hidden_size] * n_layers
        self.layers = nn.ModuleList(
            PlasticLinear(a, b, rule=rule, slow_weights=slow_weights, activation=activation, **rule_kwargs)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.rule = self.layers[-1].rule
        if modulation == "auto":
            modulation = "scalar" if self.rule.modulation == "required" else None
        self._build_modulator(self.rule, modulation, modulation_source)
        if modulation == "fanout" and n_layers > 1:
            raise ValueError("modulation='fanout' is defined per postsynaptic neuron of one layer; use 'scalar' here")

    def initial_state(self, batch: int, device=None, dtype=None) -> PlasticState:
        ref = self.layers[0].rule.alpha if self.layers[0].w is None else self.layers[0].w
        device = device or (ref.device if ref is not None else None)
        dtype = dtype or (ref.dtype if ref is not None else None)
        fields = {}
        for l, layer in enumerate(self.layers):
            for k, v in layer.rule.init_traces(batch, device, dtype).items():
                fields[f"{k}{l}"] = v
        return PlasticState(**fields)

    def project_input(self, x: Tensor) -> Tensor:
        return x

    def step(self, xp: Tensor, state: PlasticState, modulation: Tensor | None = None):
        # M(t) depends on this step's output, so all layers run first, then every trace updates with it.
        inputs, outputs, traces, y = [], [], [], xp
        for l, layer in enumerate(self.layers):
            tr = PlasticState(**{k: state[f"{k}{l}"] for k in layer.rule.trace_names})
            inputs.append(y)
            y = layer.output(y, tr)
            outputs.append(y)
            traces.append(tr)
        m = self._modulate(y, modulation)
        fields = {}
        for l, layer in enumerate(self.layers):
            new = layer.rule.update(traces[l], pre=inputs[l], post=outputs[l], modulation=m)
            fields.update({f"{k}{l}": v for k, v in new.items()})
        return y, m, PlasticState(**fields)
