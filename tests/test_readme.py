"""The README's quickstart runs as printed, without a single warning."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_without_warnings():
    text = README.read_text()
    quickstart = text[text.index("## Quickstart"):]
    code = re.search(r"```python\n(.*?)```", quickstart, re.S).group(1)
    assert len(code.strip().splitlines()) <= 5
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102  (the project's own README)
    assert namespace["model"].num_timesteps >= 11_200
