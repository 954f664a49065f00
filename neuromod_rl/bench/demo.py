"""``neuromod-rl demo``: the learned-rule core on its own, no RL -- one-shot associative memory.

Each episode shows K random key->value pairs of ±1 patterns (the key, then its value, one pattern
per step), then queries every key in a new order; the network must output the value. The pairs
are new in every episode, so slow weights cannot store them: the network must write them into its
fast weights while it sees them (Miconi et al. 2018 used the same kind of task). We meta-train by
backpropagation through whole episodes with the ``fused`` engine, once with plasticity and once
with ``alpha`` frozen at 0 (the same network, non-plastic), and print both recall accuracies
(chance: 50%).

    neuromod-rl demo                     # or: python -m neuromod_rl.bench.demo
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn
from tqdm import tqdm

from neuromod_rl.bench.harness import Column, print_table
from neuromod_rl.plasticity import PlasticRNNCell, freeze_plasticity, scan


def make_episodes(batch: int, pairs: int, bits: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs ``[T, B, bits+1]``, targets ``[T, B, bits]`` and the query mask ``[T, B]`` (T = 4K).

    Study: key_1, value_1, ..., key_K, value_K, one pattern per step. Query: for each key in a new
    order, the key, then a blank step whose target is its value. The last input unit flags the
    query phase. A Hebbian trace of consecutive hidden states is exactly a key->value store.
    """
    keys = torch.randint(0, 2, (batch, pairs, bits), generator=generator).float() * 2 - 1
    values = torch.randint(0, 2, (batch, pairs, bits), generator=generator).float() * 2 - 1
    order = torch.argsort(torch.rand(batch, pairs, generator=generator), dim=1)
    q_keys = torch.gather(keys, 1, order.unsqueeze(-1).expand(-1, -1, bits))
    q_values = torch.gather(values, 1, order.unsqueeze(-1).expand(-1, -1, bits))
    study = torch.stack([keys, values], dim=2).reshape(batch, 2 * pairs, bits)
    query = torch.stack([q_keys, torch.zeros_like(q_keys)], dim=2).reshape(batch, 2 * pairs, bits)
    flag = torch.cat([torch.zeros(batch, 2 * pairs, 1), torch.ones(batch, 2 * pairs, 1)], dim=1)
    x = torch.cat([torch.cat([study, query], dim=1), flag], dim=-1).transpose(0, 1)
    target = torch.stack([torch.zeros_like(q_values), q_values], dim=2).reshape(batch, 2 * pairs, bits)
    target = torch.cat([torch.zeros(batch, 2 * pairs, bits), target], dim=1).transpose(0, 1)
    mask = torch.zeros(batch, 4 * pairs)
    mask[:, 2 * pairs + 1 :: 2] = 1
    return x, target, mask.transpose(0, 1)


class Recaller(nn.Module):
    """Plastic RNN core + a linear readout."""

    def __init__(self, bits: int, hidden: int, rule: str, plastic: bool):
        super().__init__()
        self.core = PlasticRNNCell(bits + 1, hidden, rule=rule)
        self.readout = nn.Linear(hidden, bits)
        if not plastic:
            freeze_plasticity(self.core)

    def forward(self, x: Tensor) -> Tensor:
        y, _, _ = scan(self.core, x)
        return self.readout(y)


def train(
    plastic: bool,
    rule: str = "neuromod",
    iterations: int = 600,
    pairs: int = 6,
    bits: int = 8,
    hidden: int = 32,
    batch: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Meta-train one network; returns its final recall accuracy on fresh episodes."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Recaller(bits, hidden, rule, plastic)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    label = f"{'plastic' if plastic else 'non-plastic'} ({rule})"
    bar = tqdm(range(iterations), desc=label, disable=not progress, unit="it")
    for it in bar:
        x, target, mask = make_episodes(batch, pairs, bits, gen)
        out = model(x)
        loss = (((out - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 4.0)
        opt.step()
        if it % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    with torch.no_grad():
        x, target, mask = make_episodes(1024, pairs, bits, torch.Generator().manual_seed(seed + 10_000))
        correct = ((torch.sign(model(x)) == target).float().mean(-1) * mask).sum() / mask.sum()
    return {"label": label, "plastic": plastic, "accuracy": correct.item()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromod-rl demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=600, help="meta-training iterations per network")
    parser.add_argument("--pairs", type=int, default=6, help="key->value pairs shown per episode")
    parser.add_argument("--rule", default="neuromod", help="plasticity rule (neuromod, retroactive, clipped, hebbian)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"one-shot associative memory: {args.pairs} random 8-bit pairs per episode, then recall; chance = 50%")
    results = [
        train(plastic, rule=args.rule, iterations=args.iterations, pairs=args.pairs, seed=args.seed,
              progress=not args.no_progress)
        for plastic in (True, False)
    ]
    columns = (Column("network", 28, "label", align="<"),
               Column("recall accuracy", 15, lambda r: 100 * r["accuracy"], "{:.1f}%"))  # fmt: skip
    print_table(None, columns, results)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
