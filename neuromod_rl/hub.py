"""Share neuromod-rl models on the Hugging Face Hub without pickles.

``load("USER/NAME")`` (or a local folder) rebuilds a model from its ``model.safetensors`` and
``config.yaml``; ``push(RUN_DIR, "USER/NAME")`` writes and uploads those with the ONNX graph, the
evaluation results and a model card. ``make_env`` makes the env a pushed model's config names (it runs
that env's code: for repositories you trust). See ``docs/hub.md``; the work is in
:mod:`neuromod_rl.experiment.hub`.
"""

from __future__ import annotations

from neuromod_rl.experiment.hub import load, make_env, push

__all__ = ["load", "make_env", "push"]
