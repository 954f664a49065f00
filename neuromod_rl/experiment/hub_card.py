"""The model card (``README.md``) of a model shared on the Hugging Face Hub by ``neuromod-rl push``.

The card opens with the YAML metadata the Hub reads: ``library_name: neuromod-rl``, the tags (the
project, reinforcement learning, Stable-Baselines3, the env id) and a ``model-index`` whose results
are the run's evaluation, one entry per evaluated split of tasks, with ``mean_reward`` written as
SB3's models on the Hub write it (``"mean +/- std"``). The text says what was trained, how it scored,
how to load it (``pip install neuromod-rl`` and :func:`neuromod_rl.hub.load`) and which files hold what.
"""

from __future__ import annotations

from typing import Any

import yaml

from neuromod_rl.experiment.config import ExperimentConfig
from neuromod_rl.experiment.markdown import markdown_table

#: the files a pushed folder holds -> what each is, for the card's table
FILES = {
    "model.safetensors": "the policy's weights, with the config that rebuilds it and its spaces as metadata",
    "policy.onnx": "one step of the policy as an ONNX graph, the plastic state an explicit input and output",
    "config.yaml": "the run's resolved config: task, algorithm, policy and hyperparameters",
    "eval_results.json": "the evaluation summaries of `neuromod-rl eval`, per split of tasks",
    "README.md": "this card",
}
#: summary keys reported as extra metrics of the model-index, beside mean_reward
_EXTRA_METRICS = ("adaptation_gain", "mean_cumulative_regret")


def model_card(cfg: ExperimentConfig, results: dict[str, dict[str, Any]], repo_id: str, *, algo_name: str,
               num_timesteps: int, onnx_note: str | None) -> str:
    """The card of a pushed model: YAML metadata, then Markdown.

    Args:
        cfg: the run's config.
        results: evaluation summaries by split (``"test"``, ``"train"``), as ``neuromod-rl eval`` writes them.
        repo_id: the Hub repository, ``USER/NAME``, which the usage snippet loads.
        algo_name: the algorithm's class name (``PlasticPPO``), the model's name in the model-index.
        num_timesteps: the env steps the model was trained for.
        onnx_note: why the folder holds no ONNX graph, or ``None`` when it holds one.
    """
    meta = {
        "library_name": "neuromod-rl",
        "tags": ["neuromod-rl", "reinforcement-learning", "stable-baselines3", cfg.env],
        "model-index": [{"name": algo_name, "results": [_result(cfg.env, split, summary)
                                                        for split, summary in results.items()]}],
    }
    files = [(f"`{name}`", what) for name, what in FILES.items() if name != "policy.onnx" or onnx_note is None]
    parts = [
        "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---",
        f"# {algo_name} on `{cfg.env}`",
        f"A plastic, neuromodulated policy trained with neuromod-rl for {num_timesteps:,} env steps: {algo_name} "
        f"(`{cfg.algo}`) with the `{cfg.policy}` policy on `{cfg.env}`.",
        markdown_table(["setting", "value"], [
            ("env", f"`{cfg.env}`"), ("env_kwargs", _inline(cfg.env_kwargs)), ("wrappers", _inline(cfg.wrappers)),
            ("policy_kwargs", _inline(cfg.policy_kwargs)), ("hyperparameters", _inline(cfg.hyperparameters)),
            ("seed", cfg.seed), ("env steps", f"{num_timesteps:,}"),
        ]),
        "## Evaluation",
        markdown_table(["tasks", "episodes", "mean return", "adaptation gain", "mean cumulative regret", "actions"], [
            (split, s.get("episodes", "–"), f"{s['mean_return']:.3f} ± {s.get('std_return', 0.0):.3f}",
             _number(s.get("adaptation_gain")), _number(s.get("mean_cumulative_regret")),
             "greedy" if s.get("deterministic") else "sampled")
            for split, s in results.items()
        ]),
        "The adaptation gain is the mean reward per step late in an episode minus early in it: what the policy "
        "learns within an episode through its plastic synapses.",
        "## Usage",
        "```bash\npip install neuromod-rl\n```",
        "```python\n" + usage_snippet(repo_id) + "```",
        "`load` rebuilds the model from `model.safetensors` and `config.yaml` alone: nothing is unpickled and "
        "no code named in the files is imported. `make_env` makes the env `config.yaml` names, running that "
        "env's code with its `env_kwargs`: use it for repositories you trust.",
        "## Files",
        markdown_table(["file", "what it holds"], files),
        f"No ONNX graph: {onnx_note}" if onnx_note else "`policy.onnx` runs in onnxruntime with numpy alone: no "
        "torch, no neuromod-rl.",
        "No file here is a pickle: SB3's `.zip` checkpoints run code stored in them when loaded, so they are not "
        "shared.",
    ]
    return "\n\n".join(parts) + "\n"


def usage_snippet(repo_id: str) -> str:
    """The lines of Python that load ``repo_id`` and act in its env (what the card shows).

    Args:
        repo_id: a Hub repository ``USER/NAME`` or a local folder written by ``neuromod-rl push``.
    """
    return (
        "from neuromod_rl.hub import load, make_env\n\n"
        f"model = load({repo_id!r})      # weights + config: nothing is unpickled\n"
        f"env = make_env({repo_id!r})    # the env of config.yaml (runs its code)\n"
        "obs, _ = env.reset(seed=0)\n"
        "action, state = model.predict(obs[None], state=None, episode_start=[True], deterministic=True)\n"
    )


def _result(env: str, split: str, summary: dict[str, Any]) -> dict[str, Any]:
    mean, std = summary["mean_return"], summary.get("std_return", 0.0)
    metrics = [{"type": "mean_reward", "value": f"{mean:.2f} +/- {std:.2f}", "name": "mean_reward", "verified": False}]
    metrics += [{"type": key, "value": round(float(summary[key]), 4), "name": key, "verified": False}
                for key in _EXTRA_METRICS if isinstance(summary.get(key), int | float)]
    return {"task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
            "dataset": {"name": env, "type": env, "split": split}, "metrics": metrics}


def _inline(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"`{text}`" if text not in ("{}", "[]") else "–"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"
