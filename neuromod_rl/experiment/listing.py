"""``neuromod-rl envs``: the table of registered tasks, straight from ``neuromod_rl.envs.ENV_SPECS``."""

from __future__ import annotations

from neuromod_rl.envs.registration import ENV_SPECS


def env_table() -> str:
    """A Markdown table (readable in a terminal, pasteable into docs) of every registered task."""
    rows = [("id", "episode", "MuJoCo", "task changes", "switches", "description")]
    for s in ENV_SPECS:
        rows.append((s.id, s.episode_length, "yes" if s.mujoco else "no", s.changes, s.switches, s.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    lines = [fmt(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(r) for r in rows[1:]]
    return "\n".join(lines)
