"""Reproduce Andrychowicz et al. (2016), "Learning to learn by gradient descent by gradient descent".

Claim (the paper's): a coordinatewise LSTM optimizer meta-trained on a problem class beats
hand-designed optimizers (SGD, RMSprop, Adam, NAG with tuned learning rates) on new problems of
that class. Two problem classes, as in the paper:

* 10-d quadratics ``f(θ) = ||W θ - y||²``, ``W, y ~ N(0, 1)``, 128 problems per meta-batch,
  100 steps in unrolls of 20, Adam lr 1e-3 as meta-optimizer;
* a one-hidden-layer MLP (20 sigmoid units) on scikit-learn's 8x8 digits (MNIST in the paper).

Baseline learning rates are tuned on training problems (a log grid), the comparison runs on
held-out problems (other seeds; for digits, held-out examples and fresh initialisations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm.auto import tqdm

from neuromod_rl.experiment.markdown import markdown_table
from neuromod_rl.experiment.plots.figures import new_figure
from neuromod_rl.plasticity.learned_optimizer import L2LOptimizer
from neuromod_rl.studies.registry import Study
from neuromod_rl.studies.scaffold.multiseed import StudyOptions, run_seeds
from neuromod_rl.studies.scaffold.report import load_digits_split, save_figure


@dataclass(frozen=True)
class Settings:
    meta_iters: int = 300  # quadratics: meta-batches of 128 problems
    mlp_meta_iters: int = 100  # digits MLP: meta-iterations (one network trajectory of `steps` each)
    problems: int = 128
    dim: int = 10
    steps: int = 100
    unroll: int = 20
    meta_lr: float = 1e-3
    mlp_meta_lr: float = 3e-3
    eval_problems: int = 256
    mlp_nets: int = 1  # networks trained in parallel per meta-iteration (the paper: 1)
    mlp_eval_nets: int = 16
    mlp_hidden: int = 20
    mlp_batch: int = 128
    validate_every: int = 25
    lr_grid: tuple[float, ...] = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0)


SCALES = {
    "smoke": Settings(meta_iters=3, mlp_meta_iters=2, problems=16, steps=20, unroll=10, eval_problems=16,
                      mlp_nets=1, mlp_eval_nets=2, mlp_batch=32, validate_every=2, lr_grid=(1e-2, 1e-1)),
    "default": Settings(),
    "paper": Settings(meta_iters=2000, mlp_meta_iters=500, mlp_nets=4, eval_problems=1024, mlp_eval_nets=64),
}  # fmt: skip

BASELINES = ("SGD", "RMSprop", "Adam", "NAG")


# -- problems -----------------------------------------------------------------------------------------
def sample_quadratics(n: int, dim: int, generator: torch.Generator):
    """``(loss_fn, θ0)`` for ``n`` problems ``||W θ - y||²``; ``loss_fn(θ [n, dim]) -> [n]``."""
    W = torch.randn(n, dim, dim, generator=generator)
    y = torch.randn(n, dim, generator=generator)
    theta0 = torch.randn(n, dim, generator=generator)

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        return ((torch.einsum("nij,nj->ni", W, theta) - y) ** 2).sum(-1)

    return loss_fn, theta0


class DigitsMLP:
    """``n`` independent MLPs 64 -> hidden (sigmoid) -> 10, parameters as one flat row each, every
    call drawing a fresh minibatch for every network (a stochastic optimizee, as in the paper)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, hidden: int, batch: int, generator: torch.Generator):
        self.x, self.y, self.hidden, self.batch, self.gen = x[:, :64], y, hidden, batch, generator
        self.shapes = [(64, hidden), (hidden,), (hidden, 10), (10,)]
        self.n_params = sum(torch.Size(s).numel() for s in self.shapes)

    def init(self, n: int) -> torch.Tensor:
        parts = []
        for s in self.shapes:
            fan_in = s[0] if len(s) == 2 else (64 if s[0] == self.hidden else self.hidden)
            bound = fan_in**-0.5
            parts.append(bound * (2 * torch.rand(n, torch.Size(s).numel(), generator=self.gen) - 1))
        return torch.cat(parts, dim=1)

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        i, ps = 0, []
        for s in self.shapes:
            k = torch.Size(s).numel()
            ps.append(theta[:, i : i + k].reshape(theta.shape[0], *s))
            i += k
        W1, b1, W2, b2 = ps
        h = torch.sigmoid(torch.bmm(x, W1) + b1.unsqueeze(1))
        return torch.bmm(h, W2) + b2.unsqueeze(1)

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(0, self.x.shape[0], (theta.shape[0], self.batch), generator=self.gen)
        logits = self.logits(theta, self.x[idx])
        return (
            Fn.cross_entropy(logits.reshape(-1, 10), self.y[idx].reshape(-1), reduction="none")
            .view(theta.shape[0], -1)
            .mean(1)
        )

    def accuracy(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.logits(theta, x[:, :64].expand(theta.shape[0], -1, -1))
        return (logits.argmax(-1) == y).float().mean(1)


# -- optimizers ---------------------------------------------------------------------------------------
def make_baseline(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr)
    if name == "NAG":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if name == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown baseline optimizer {name!r}; valid: {BASELINES}")


def run_baseline(name: str, lr: float, loss_fn, theta0: torch.Tensor, steps: int) -> torch.Tensor:
    """Mean loss over problems at each step ``0..steps`` (``[steps + 1]``); diverged runs give inf."""
    theta = theta0.clone().requires_grad_()
    opt = make_baseline(name, [theta], lr)
    curve = []
    for _ in range(steps):
        loss = loss_fn(theta)
        curve.append(loss.mean().item())
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        curve.append(loss_fn(theta).mean().item())
    out = torch.tensor(curve)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, float("inf")))


def run_learned(opt: L2LOptimizer, loss_fn, theta0: torch.Tensor, steps: int) -> torch.Tensor:
    losses, theta, _ = opt.unroll(loss_fn, theta0.clone(), steps, track_meta=False)
    with torch.no_grad():
        final = loss_fn(theta).mean()
    return torch.cat([losses, final.view(1)])


def tune(name: str, grid, make_problem, steps: int) -> tuple[float, float]:
    """The grid learning rate with the lowest mean final loss on training problems."""
    best = (float("nan"), float("inf"))
    for lr in grid:
        loss_fn, theta0 = make_problem()
        final = run_baseline(name, lr, loss_fn, theta0, steps)[-1].item()
        if final < best[1]:
            best = (lr, final)
    return best


def meta_train(opt, make_problem, s: Settings, iters: int, lr: float, desc: str, validate) -> list[float]:
    """Truncated-BPTT meta-training (paper §3): unrolls of ``s.unroll`` over ``s.steps`` steps,
    meta-loss = sum of losses in each unroll; keeps the parameters with the best validation loss."""
    meta_opt = torch.optim.Adam(opt.parameters(), lr=lr)
    best, best_state, history = float("inf"), None, []
    for it in tqdm(range(iters), desc=desc, leave=False):
        loss_fn, theta = make_problem()
        state = None
        for _ in range(s.steps // s.unroll):
            losses, theta, state = opt.unroll(loss_fn, theta, s.unroll, state)
            meta_opt.zero_grad()
            losses.sum().backward()
            meta_opt.step()
            theta, state = theta.detach(), (state[0].detach(), state[1].detach())
        if (it + 1) % s.validate_every == 0 or it == iters - 1:
            v = validate()
            history.append(v)
            if v < best:
                best, best_state = v, {k: t.clone() for k, t in opt.state_dict().items()}
    if best_state is not None:
        opt.load_state_dict(best_state)
    return history


def compare(opt, s: Settings, make_train, make_test, steps: int, label: str):
    """Tune baselines on training problems, then run every optimizer on the same test problems."""
    curves, lrs = {}, {}
    for name in tqdm(BASELINES, desc=f"{label}: tune+test baselines", leave=False):
        lr, _ = tune(name, s.lr_grid, make_train, steps)
        lrs[name] = lr
        loss_fn, theta0 = make_test()
        curves[name] = run_baseline(name, lr, loss_fn, theta0, steps)
    loss_fn, theta0 = make_test()
    curves["L2L (LSTM)"] = run_learned(opt, loss_fn, theta0, steps)
    return curves, lrs


VERSION = "l2l-1"  # bump when compute() changes (stored per-seed results are then recomputed)


def compute(_: str, seed: int, scale: str) -> dict:
    """One seed: meta-train the LSTM optimizer on each problem class and compare it with the tuned
    baselines on held-out problems. JSON-able (per-step curves as lists; a diverged run is inf)."""
    s = SCALES[scale]
    torch.manual_seed(seed)
    # Disjoint seed streams: meta-training, tuning, validation and test problems never overlap.
    gens = {k: torch.Generator().manual_seed(seed * 1000 + i) for i, k in enumerate(["meta", "tune", "val", "test"])}

    # -- quadratics -----------------------------------------------------------------------------------
    def quad(which: str, n: int):
        return lambda: sample_quadratics(n, s.dim, gens[which])

    def reset(which: str, offset: int):
        return lambda: gens[which].manual_seed(seed * 1000 + offset)

    opt = L2LOptimizer()
    reset_val = reset("val", 2)

    def validate_quad() -> float:
        reset_val()
        return run_learned(opt, *quad("val", s.problems)(), s.steps)[-1].item()

    history = meta_train(opt, quad("meta", s.problems), s, s.meta_iters, s.meta_lr, "l2l quadratics", validate_quad)
    reset_test = reset("test", 3)

    def make_test():
        reset_test()  # every optimizer sees the very same held-out problems
        return sample_quadratics(s.eval_problems, s.dim, gens["test"])

    def make_tune():
        gens["tune"].manual_seed(seed * 1000 + 1)  # every learning rate sees the same tuning problems
        return sample_quadratics(s.problems, s.dim, gens["tune"])

    curves, lrs = compare(opt, s, make_tune, make_test, s.steps, "quadratics")
    quad_out = {"curves": {n: c.tolist() for n, c in curves.items()}, "lrs": lrs, "history": history}

    # -- MLP on digits ----------------------------------------------------------------------------------
    x, y = load_digits_split(list(range(10)))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_train = int(0.7 * x.shape[0])
    train = DigitsMLP(x[:n_train], y[:n_train], s.mlp_hidden, s.mlp_batch, gens["meta"])
    heldout_x, heldout_y = x[n_train:], y[n_train:]
    mlp_opt = L2LOptimizer()

    def mlp_problem(n):
        return lambda: (train.loss, train.init(n))

    def mlp_tune():
        gens["meta"].manual_seed(seed * 1000 + 13)  # same inits and minibatches for every learning rate
        return train.loss, train.init(s.mlp_nets)

    def validate_mlp() -> float:
        gens["meta"].manual_seed(seed * 1000 + 7)
        return run_learned(mlp_opt, train.loss, train.init(s.mlp_nets), s.steps)[-1].item()

    mlp_history = meta_train(mlp_opt, mlp_problem(s.mlp_nets), s, s.mlp_meta_iters, s.mlp_meta_lr,
                             "l2l digits MLP", validate_mlp)  # fmt: skip

    def make_mlp_test():
        gens["meta"].manual_seed(seed * 1000 + 11)  # same inits and minibatches for every optimizer
        return train.loss, train.init(s.mlp_eval_nets)

    mlp_curves, mlp_lrs, acc = {}, {}, {}
    for name in tqdm(BASELINES, desc="digits: tune+test baselines", leave=False):
        lr, _ = tune(name, s.lr_grid, mlp_tune, s.steps)
        mlp_lrs[name] = lr
        loss_fn, theta0 = make_mlp_test()
        theta = theta0.clone().requires_grad_()
        o = make_baseline(name, [theta], lr)
        c = []
        for _ in range(s.steps):
            loss = loss_fn(theta)
            c.append(loss.mean().item())
            o.zero_grad()
            loss.sum().backward()
            o.step()
        mlp_curves[name] = c
        acc[name] = train.accuracy(theta.detach(), heldout_x, heldout_y).mean().item()
    loss_fn, theta0 = make_mlp_test()
    losses, theta, _ = mlp_opt.unroll(loss_fn, theta0.clone(), s.steps, track_meta=False)
    mlp_curves["L2L (LSTM)"] = losses.tolist()
    acc["L2L (LSTM)"] = train.accuracy(theta.detach(), heldout_x, heldout_y).mean().item()
    mlp_out = {"curves": mlp_curves, "lrs": mlp_lrs, "accuracy": acc, "history": mlp_history}
    return {"quadratics": quad_out, "mlp": mlp_out}


def _median_curves(runs: list[dict], part: str) -> dict[str, np.ndarray]:
    """Per optimizer, the median over seeds of the per-step curve."""
    names = runs[0][part]["curves"]
    return {n: np.median(np.array([r[part]["curves"][n] for r in runs], dtype=np.float64), axis=0) for n in names}


def _miqr(values) -> str:
    m, lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [50, 25, 75])
    return f"{m:.4g} [{lo:.4g}, {hi:.4g}]"


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    s = SCALES[scale]
    done = run_seeds("l2l", "Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016)",
                     scale, seed, out, command, s, VERSION, compute, options or StudyOptions())  # fmt: skip
    report, seeds, runs = done.report, done.seeds, done.runs

    # -- quadratics -----------------------------------------------------------------------------------
    curves = _median_curves(runs, "quadratics")
    fig, (ax,) = new_figure()
    for name, c in curves.items():
        ax.plot(c, label=name, lw=2 if name.startswith("L2L") else 1)
    start_loss = float(curves["L2L (LSTM)"][0])
    # a diverging baseline (SGD at its tuned rate meets a stiffer held-out problem) would flatten the rest
    ax.set(yscale="log", xlabel="step", ylabel=f"mean loss (held-out quadratics), median of {len(seeds)} seeds",
           title="10-d quadratics", ylim=(None, 10 * start_loss))  # fmt: skip
    ax.legend()
    img_q = save_figure(fig, out, "l2l_quadratics.png")
    finals = {n: [r["quadratics"]["curves"][n][-1] for r in runs] for n in curves}
    lr_text = lambda part, n: ", ".join(str(r[part]["lrs"].get(n, "learned")) for r in runs)  # noqa: E731
    rows = [(n, lr_text("quadratics", n), _miqr(v)) for n, v in finals.items()]
    best_adam = float(np.median(finals["Adam"]))
    l2l_final = float(np.median(finals["L2L (LSTM)"]))
    best_hand = min(float(np.median(finals[n])) for n in BASELINES)
    report.claim(
        f"L2L reaches a lower mean final loss than tuned Adam on held-out quadratics after {s.steps} steps "
        "(medians over seeds)",
        l2l_final < best_adam,
        f"L2L {l2l_final:.4g} vs Adam {best_adam:.4g} (best hand-designed {best_hand:.4g})",
    )
    report.add(
        f"## 10-d quadratics ({s.eval_problems} held-out problems, {s.steps} steps, {len(seeds)} seeds)\n\n"
        + markdown_table(["optimizer", "tuned lr (per seed)", f"mean loss at step {s.steps}: median [IQR]"], rows)
        + "\n\nLearning rates were tuned on other problems of the class (lowest mean final loss); a rate "
        "that is stable there can diverge on a stiffer held-out problem, which then dominates that mean."
        + f"\n\nValidation loss of the LSTM during meta-training (every {s.validate_every} iterations), first seed: "
        + ", ".join(f"{v:.3g}" for v in runs[0]["quadratics"]["history"])
        + f"\n\n{img_q}"
    )

    # -- MLP on digits ----------------------------------------------------------------------------------
    mlp_curves = _median_curves(runs, "mlp")
    fig, (ax,) = new_figure()
    window = max(1, s.steps // 20)
    for name, c in mlp_curves.items():
        smooth = np.convolve(c, np.ones(window) / window, mode="valid")
        ax.plot(smooth, label=name, lw=2 if name.startswith("L2L") else 1)
    ax.set(yscale="log", xlabel="step", ylabel=f"minibatch loss (moving mean {window}), median of seeds",
           title="MLP on digits")  # fmt: skip
    ax.legend()
    img_m = save_figure(fig, out, "l2l_digits_mlp.png")
    last = max(1, s.steps // 10)
    tails = {n: [float(np.mean(r["mlp"]["curves"][n][-last:])) for r in runs] for n in mlp_curves}
    accs = {n: [r["mlp"]["accuracy"][n] for r in runs] for n in mlp_curves}
    rows = [(n, lr_text("mlp", n), _miqr(tails[n]), _miqr(accs[n])) for n in mlp_curves]
    l2l_mlp = float(np.median(tails["L2L (LSTM)"]))
    best_mlp = min(float(np.median(tails[n])) for n in BASELINES)
    report.claim(
        "L2L beats every tuned hand-designed optimizer on the digits MLP (training loss, last 10% of steps, "
        "medians over seeds)",
        l2l_mlp < best_mlp,
        f"L2L {l2l_mlp:.4g} vs best baseline {best_mlp:.4g}",
    )
    report.add(
        f"## MLP on digits (64-{s.mlp_hidden}-10 sigmoid, {s.mlp_eval_nets} fresh networks, {s.steps} steps, "
        f"batch {s.mlp_batch}, {len(seeds)} seeds)\n\nMeta-trained on 70% of the digits, accuracy measured on the "
        "other 30%. Median [25%, 75%] over seeds:\n\n"
        + markdown_table(["optimizer", "tuned lr (per seed)", f"mean train loss, last {last} steps",
                          "held-out accuracy"], rows)
        + "\n\nValidation loss during meta-training, first seed: "
        + ", ".join(f"{v:.3g}" for v in runs[0]["mlp"]["history"])
        + f"\n\n{img_m}"
    )
    report.add(done.compute_note())
    return report.write(out)


STUDY = Study(
    "l2l",
    "a learned LSTM optimizer beats hand-designed optimizers on its problem class (Andrychowicz et al. 2016)",
    run,
)
