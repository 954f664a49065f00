"""Triton's interpreter for the triton backend's CPU tests.

Triton decides at import whether its kernels are compiled or interpreted, so the switch is set here,
before any test imports it. A process started with ``TRITON_INTERPRET=0`` keeps compiled kernels:
``make gpu-check`` runs the CUDA cases that way.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
