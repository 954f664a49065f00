"""A policy's observation and action spaces as JSON metadata of an export, and back: the loader of an
export builds the policy from the spaces the file records instead of making the env. The file may be
anyone's, so every field read back is checked (kinds, dtypes, shapes, and no space larger than the
file's weights)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from neuromod_rl.experiment.errors import UserError

_SPACE_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                 "float64")
_SPACE_ERRORS = (ValueError, TypeError, AssertionError, OverflowError, RecursionError)


def space_metadata(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, str]:
    """The policy's spaces as JSON metadata, so that a loader builds the policy without making the env.
    A kind of space not recorded here is left out, and the loader then asks the caller for the env."""
    out = {}
    for key, space in (("observation_space", observation_space), ("action_space", action_space)):
        data = _space_to_json(space)
        if data is not None:
            out[key] = json.dumps(data)
    return out


def _bound(values: np.ndarray) -> Any:
    flat = values.reshape(-1)
    # one number when all are equal (the usual case), so an image space does not record every pixel
    return flat[0].item() if flat.size and bool((flat == flat[0]).all()) else values.tolist()


def _space_to_json(space: spaces.Space) -> dict[str, Any] | None:
    if isinstance(space, spaces.Box) and str(space.dtype) in _SPACE_DTYPES:
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Dict):
        parts = {key: _space_to_json(sub) for key, sub in space.spaces.items()}
        if all(part is not None for part in parts.values()):
            return {"type": "Dict", "spaces": parts}
    return None


def recorded_spaces(path: str | Path, metadata: dict[str, str],
                     tensors: dict[str, torch.Tensor]) -> tuple[spaces.Space, spaces.Space]:
    """The spaces the file records. Neither may have more elements than the file has weights: a policy
    reads each observation element and scores each action, so a larger space is not this policy's."""
    if "observation_space" not in metadata or "action_space" not in metadata:
        raise UserError(
            f"{path} records no observation_space/action_space (exported by an older neuromod-rl, or spaces of a "
            "kind it cannot record), so the policy's spaces must come from you: load_exported_model(path, "
            "observation_space=..., action_space=...) or load_exported_model(path, env=my_env). "
            "env=make_exported_env(path) makes the env the file's config names, running its code with the file's "
            "env_kwargs: only for files you trust."
        )
    limit = sum(t.numel() for t in tensors.values())
    out = []
    for key in ("observation_space", "action_space"):
        try:
            out.append(_space_from_json(json.loads(metadata[key]), limit))
        except _SPACE_ERRORS as err:
            raise UserError(f"{path}: the recorded {key} is not valid ({err}); export the run again, or pass the "
                            "env: load_exported_model(path, env=my_env).") from None
    return out[0], out[1]


def _int(value: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**62:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def _ints(value: Any, what: str, minimum: int | None = None) -> list[int]:
    if not isinstance(value, list) or len(value) > 32:
        raise ValueError(f"{what} must be a list of at most 32 integers, got {value!r:.80}")
    return [_int(v, what, minimum) for v in value]


def _within(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ValueError(f"{what} gives {size:,} elements, more than the {limit:,} weights of the file")


def _bounds(value: Any, shape: list[int], dtype: str, what: str) -> Any:
    array = np.array(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numbers, got {value!r:.80}")
    if array.shape not in ((), tuple(shape)):
        raise ValueError(f"{what} has shape {list(array.shape)}; expected a number or shape {shape}")
    return array.item() if array.shape == () else array.astype(dtype)


def _space_from_json(data: Any, limit: int) -> spaces.Space:
    """The space :func:`_space_to_json` described, every field checked (the file may be anyone's)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "Box":
        shape = _ints(data.get("shape"), "shape", 0)
        _within(math.prod(shape), limit, f"shape {shape}")
        dtype = data.get("dtype")
        if dtype not in _SPACE_DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {list(_SPACE_DTYPES)}")
        low, high = (_bounds(data.get(k), shape, dtype, k) for k in ("low", "high"))
        return spaces.Box(low, high, tuple(shape), np.dtype(dtype))
    if kind == "Discrete":
        n = _int(data.get("n"), "n", 1)
        _within(n, limit, f"n={n}")
        return spaces.Discrete(n, start=_int(data.get("start", 0), "start"))
    if kind == "Dict" and isinstance(data.get("spaces"), dict):
        return spaces.Dict({str(key): _space_from_json(sub, limit) for key, sub in data["spaces"].items()})
    raise ValueError(f"not a space this loader rebuilds (Box, Discrete, Dict): {data!r:.80}")
