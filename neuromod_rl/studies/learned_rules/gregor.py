"""Reproduce Gregor (2020), "Finding online neural update rules by learning to remember".

Claim (the paper's): learned neuron and synapse update functions, trained to remember with
truncated backpropagation, form memories in the synapses; recall falls with the number of things
to remember and rises with network size, and a plastic network stores more than recurrent
networks of equal parameter count.

Memorisation protocol (the paper leaves it *open*; ours): ``K`` random ±1 patterns of ``D`` bits
are shown one after another (store flag on), each held for ``hold`` steps; then every pattern is cued
once, in random order, by its first ``D/2`` bits (recall flag on, held ``hold`` steps), and the
network must output the other ``D/2`` bits at the cue's last step. Score:
fraction of recalled bits with the right sign (chance 0.5). Training draws ``K`` uniformly from
``1..k_max`` per batch and uses truncated BPTT: the state is detached every ``tbptt`` steps, so
a recall more than ``tbptt`` steps after its storage sends no gradient to the storing step --
what the rule learns on short windows must carry to long ones.

Models: ``PlasticRNNCell(rule="metanet")`` (the registered rule) with a linear read-out; a plain
tanh RNN and an LSTM, each sized to the plastic model's parameter count; same data, loss,
optimizer and truncation for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn
from tqdm.auto import tqdm

from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.plasticity import PlasticRNNCell, scan
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold.multiseed import StudyOptions, run_seeds
from neuromod_rl.studies.scaffold.report import save_figure


@dataclass(frozen=True)
class Settings:
    pattern_bits: int = 16
    k_max: int = 12
    k_eval: tuple[int, ...] = (1, 2, 4, 8, 12)
    sizes: tuple[int, ...] = (8, 16, 32)
    iters: int = 1200
    batch: int = 32
    tbptt: int = 8
    # steps each pattern and each cue is shown. With 2, a cue's activity passes once through the fast
    # weights before the answer is read (a PlasticRNNCell's fast weights act on h_{t-1}, so with 1 the
    # answer at the cue step reaches them only through the previous step), and storing sees pre ≈ post.
    # 2 costs twice the time, so the default scale keeps 1 and the paper scale uses 2.
    hold: int = 1
    lr: float = 3e-3
    eval_batch: int = 256
    synapse_size: int = 4
    neuron_size: int = 4
    meta_hidden: int = 16


SCALES = {
    "smoke": Settings(k_max=2, k_eval=(1, 2), sizes=(4, 6), iters=2, batch=4, eval_batch=8, meta_hidden=4),
    "default": Settings(),
    "paper": Settings(k_max=16, k_eval=(1, 2, 4, 8, 12, 16), sizes=(16, 32, 64), iters=3000, batch=64,
                      tbptt=16, eval_batch=1024, hold=2),
}  # fmt: skip


def memorisation_batch(batch: int, k: int, bits: int, generator: torch.Generator, hold: int = 1):
    """``(x [2 K hold, B, bits + 2], target [K, B, bits/2], read [2 K hold])``: K patterns shown for
    ``hold`` steps each, then K cues of ``hold`` steps each; the answer to a cue is read at its last
    step (``read`` marks those steps)."""
    if bits % 2:
        raise ValueError(f"pattern_bits must be even (half cue, half recalled), got {bits}")
    if hold < 1:
        raise ValueError(f"hold must be >= 1 step, got {hold}")
    p = torch.randint(0, 2, (k, batch, bits), generator=generator).float() * 2 - 1
    order = torch.argsort(torch.rand(k, batch, generator=generator), dim=0)
    recalled = torch.gather(p, 0, order.unsqueeze(-1).expand(-1, -1, bits))
    half = bits // 2
    store = torch.cat([p, torch.ones(k, batch, 1), torch.zeros(k, batch, 1)], -1)
    cue = torch.cat([recalled[..., :half], torch.zeros(k, batch, half + 1), torch.ones(k, batch, 1)], -1)
    x = torch.cat([store, cue]).repeat_interleave(hold, dim=0)
    read = torch.zeros(2 * k * hold, dtype=torch.bool)
    read[k * hold + hold - 1 :: hold] = True
    return x, recalled[..., half:], read


class PlasticMemory(nn.Module):
    """``PlasticRNNCell`` with the ``metanet`` rule and a linear read-out."""

    def __init__(self, n_in: int, hidden: int, n_out: int, s: Settings):
        super().__init__()
        self.cell = PlasticRNNCell(n_in, hidden, rule="metanet", alpha_shape="none", synapse_size=s.synapse_size,
                                   neuron_size=s.neuron_size, meta_hidden=s.meta_hidden)  # fmt: skip
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, state):
        res = scan(self.cell, x, state, backend="reference")
        return self.out(res.y), res.state

    @staticmethod
    def detach(state):
        return state.detach()


class RecurrentMemory(nn.Module):
    """``nn.RNN`` (tanh) or ``nn.LSTM`` with a linear read-out."""

    def __init__(self, kind: str, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.core = (nn.LSTM if kind == "lstm" else nn.RNN)(n_in, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, state):
        y, state = self.core(x, state)
        return self.out(y), state

    @staticmethod
    def detach(state):
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(kind: str, n_in: int, n_out: int, target: int) -> int:
    """Hidden size whose ``kind`` model has the parameter count closest to ``target``.

    Counts: ``g H (I + H + 2) + H O + O`` with ``g = 1`` (RNN) or ``4`` (LSTM), both biases as torch keeps
    them; solved for ``H``, then the neighbours are compared by building the models.
    """
    g = 4 if kind == "lstm" else 1
    # g H² + (g (I + 2) + O) H + O - target = 0
    b = g * (n_in + 2) + n_out
    h = (-b + (b * b - 4 * g * (n_out - target)) ** 0.5) / (2 * g)
    candidates = {max(1, int(h) + d) for d in (-1, 0, 1, 2)}
    return min(candidates, key=lambda k: abs(n_params(RecurrentMemory(kind, n_in, k, n_out)) - target))


def run_sequence(model, x: torch.Tensor, read: torch.Tensor, tbptt: int, target: torch.Tensor | None = None):
    """Logits at the ``read`` steps; with ``target``, also backprop each ``tbptt`` chunk's loss."""
    state, outs, done = None, [], 0
    half = None if target is None else target.shape[-1]
    for start in range(0, x.shape[0], tbptt):
        y, state = model(x[start : start + tbptt], state)
        r = read[start : start + tbptt]
        outs.append(y[r])
        if target is not None and bool(r.any()):
            n = int(r.sum())
            loss = Fn.binary_cross_entropy_with_logits(y[r][..., -half:], (target[done : done + n] > 0).float())
            loss.backward()
            done += n
        state = model.detach(state)  # truncated BPTT boundary
    return torch.cat(outs)


def recall_score(model, s: Settings, k: int, generator: torch.Generator) -> float:
    x, target, read = memorisation_batch(s.eval_batch, k, s.pattern_bits, generator, s.hold)
    with torch.no_grad():
        logits = run_sequence(model, x, read, tbptt=x.shape[0])[..., -target.shape[-1] :]
    return (torch.sign(logits) == target).float().mean().item()


def train(model, s: Settings, seed: int, desc: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    for _ in tqdm(range(s.iters), desc=desc, leave=False):
        k = int(torch.randint(1, s.k_max + 1, (1,), generator=gen))
        x, target, read = memorisation_batch(s.batch, k, s.pattern_bits, gen, s.hold)
        opt.zero_grad()
        run_sequence(model, x, read, s.tbptt, target)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


VERSION = "gregor-1"  # bump when compute() changes (stored per-seed results are then recomputed)
NAMES = ["metanet (plastic)", "RNN", "LSTM"]


def compute(_: str, seed: int, scale: str) -> dict:
    """One seed: train every model of every size group, then recall at each K (the same test
    sequences for every model). JSON-able: ``recall["<name>|<size>"] = [recall at each K]``."""
    s = SCALES[scale]
    n_in, n_out = s.pattern_bits + 2, s.pattern_bits
    recall, hidden, params = {}, {}, {}
    for size in s.sizes:
        torch.manual_seed(seed + size)
        plastic = PlasticMemory(n_in, size, n_out, s)
        budget = n_params(plastic)
        models = {"metanet (plastic)": plastic}
        for kind in ("rnn", "lstm"):
            models[kind.upper()] = RecurrentMemory(kind, n_in, matched_hidden(kind, n_in, n_out, budget), n_out)
        for name, model in models.items():
            train(model, s, seed + 1, desc=f"gregor {name} N={size} seed {seed}")
            eval_gen = torch.Generator().manual_seed(seed + 999)  # the same test sequences for every model
            key = f"{name}|{size}"
            recall[key] = [recall_score(model, s, k, eval_gen) for k in s.k_eval]
            hidden[key] = size if name.startswith("metanet") else model.core.hidden_size
            params[key] = n_params(model)
    return {"recall": recall, "hidden": hidden, "params": params}


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    s = SCALES[scale]
    done = run_seeds("gregor", "Learned neuron and synapse update rules that remember (Gregor 2020)", scale, seed,
                     out, command, s, VERSION, compute, options or StudyOptions())  # fmt: skip
    report, seeds, runs = done.report, done.seeds, done.runs
    # median over seeds of each recall value, and its 25th/75th percentiles
    stats = {key: np.percentile([r["recall"][key] for r in runs], [50, 25, 75], axis=0)
             for key in runs[0]["recall"]}  # fmt: skip
    results = {(name, size): stats[f"{name}|{size}"][0].tolist() for name in NAMES for size in s.sizes}

    fig, axes = new_figure(ncols=2)
    for (name, size), r in results.items():
        style = {"metanet (plastic)": "-", "RNN": ":", "LSTM": "--"}[name]
        q = stats[f"{name}|{size}"]
        line = axes[0].plot(s.k_eval, r, style, marker="o", label=f"{name} N={size}")[0]
        axes[0].fill_between(s.k_eval, q[1], q[2], color=line.get_color(), alpha=0.15, linewidth=0)
    axes[0].set(xlabel="K (patterns to remember)", ylabel="recall (bits correct)",
                title=f"recall vs K (median, IQR over {len(seeds)} seeds)")  # fmt: skip
    axes[0].legend(fontsize=6)
    for name in NAMES:
        axes[1].plot(s.sizes, [results[(name, n)][-1] for n in s.sizes], marker="o", label=name)
    axes[1].set(xlabel="plastic network size N (baselines: equal parameters)", ylabel=f"recall at K={s.k_eval[-1]}",
                xscale="log", title="recall vs size (median over seeds)")  # fmt: skip
    axes[1].legend(fontsize=7)
    img = save_figure(fig, out, "gregor_recall.png")

    rows = [[name, size, runs[0]["hidden"][f"{name}|{size}"], runs[0]["params"][f"{name}|{size}"],
             *[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(*stats[f"{name}|{size}"])]]
            for name in NAMES for size in s.sizes]  # fmt: skip
    plastic = [results[("metanet (plastic)", n)] for n in s.sizes]
    falls = all(all(b <= a + 0.01 for a, b in zip(r[:-1], r[1:])) for r in plastic)
    report.claim(
        "recall falls with K (plastic network, every size; median over seeds; tolerance 0.01)",
        falls,
        "; ".join(f"N={n}: " + " → ".join(f"{v:.3f}" for v in r) for n, r in zip(s.sizes, plastic)),
    )
    mean_by_size = [sum(r) / len(r) for r in plastic]
    report.claim(
        "recall rises with network size (plastic network, mean over K of the medians)",
        all(b > a for a, b in zip(mean_by_size[:-1], mean_by_size[1:])),
        " → ".join(f"N={n}: {v:.3f}" for n, v in zip(s.sizes, mean_by_size)),
    )
    kl = s.k_eval[-1]
    wins = [(n, results[("metanet (plastic)", n)][-1], results[("LSTM", n)][-1]) for n in s.sizes]
    report.claim(
        f"the plastic network beats the equal-parameter LSTM at large K (K={kl}, every size, medians)",
        all(a > b for _, a, b in wins),
        "; ".join(f"N={n}: {a:.3f} vs {b:.3f}" for n, a, b in wins),
    )
    report.add(
        f"## Recall (fraction of recalled bits correct; chance 0.5; {s.eval_batch} test sequences per K; "
        f"median [25%, 75%] over {len(seeds)} seeds)\n\n"
        + markdown_table(["model", "size group N", "hidden units", "parameters", *[f"K={k}" for k in s.k_eval]], rows)
        + f"\n\nTrained with truncated BPTT every {s.tbptt} steps; a sequence has 2·K·{s.hold} steps "
        f"(every pattern and cue is held {s.hold} step(s), the answer read at the cue's last step).\n\n{img}"
    )
    report.add(done.compute_note())
    return report.write(out)


STUDY = Study(
    "gregor",
    "learned neuron and synapse update rules form memories in the synapses (Gregor 2020)",
    run,
)
