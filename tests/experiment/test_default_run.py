"""``make run``'s numbers as the docs quote them: the default config is trained at its full budget by the
README's command, and every figure of ``docs/results/default_run.md``'s table and the README's result line
must be what that run prints. (A slow test: about a minute of training.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import only_run

from neuromod_rl.cli import main

ROOT = Path(__file__).resolve().parents[2]
ROWS = {  # the table's row -> (metric, format)
    "reward per step, first 10% of the episode": ("early_reward_per_step", "{:.3f}"),
    "reward per step, last 20% of the episode": ("late_reward_per_step", "{:.3f}"),
    "cumulative regret after 100 pulls": ("mean_cumulative_regret", "{:.2f}"),
}


def _table() -> dict[str, list[str]]:
    rows = {}
    for line in (ROOT / "docs" / "results" / "default_run.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_make_run_prints_the_numbers_the_docs_quote(tmp_path):
    assert main(["train", "--report", "--runs-dir", str(tmp_path), "--no-progress"]) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    test, train = metrics["eval_test"], metrics["eval_train"]
    table = _table()
    for row, (key, fmt) in ROWS.items():
        assert table[row] == [fmt.format(test[key]), fmt.format(train[key])], row
    gain_test, gain_train = table["gain (95% CI)"]
    assert gain_test.startswith(f"+{test['adaptation_gain']:.3f} ") and gain_train == f"+{train['adaptation_gain']:.3f}"
    readme = (ROOT / "README.md").read_text()
    quoted = re.search(r"regret after 100 pulls ([\d.]+) on held-out tasks, ([\d.]+) on training tasks", readme)
    assert quoted and quoted.groups() == (f"{test['mean_cumulative_regret']:.2f}",
                                          f"{train['mean_cumulative_regret']:.2f}")
