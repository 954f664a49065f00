"""Fixtures of the SB3 integration tests; the tiny envs live in plastic_test_envs.py."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
