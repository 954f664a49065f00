"""``neuromod-rl bench NAME``: benchmarks, one module per family in this package.

Every benchmark measures its peer in the same run, prints ratios against it, and writes JSON under
``benchmarks/results/`` (each machine writes its own). Speed is measured here, never asserted in
the test suite. What several benchmarks share (a measurement in a fresh process, the thread limit,
peak memory, the JSON report) is in :mod:`.harness`.
"""

from __future__ import annotations

#: ``neuromod-rl bench NAME`` -> module in this package (each has ``main(argv) -> int``)
BENCHES = {"core": "core", "sb3": "sb3", "envs": "envs", "offpolicy": "offpolicy", "es": "es", "pipeline": "pipeline"}
