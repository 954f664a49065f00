"""The one Markdown table writer of run reports, comparisons and study reports."""

from __future__ import annotations

from collections.abc import Sequence


def fmt_value(value: object) -> str:
    """A table cell: floats to 4 significant digits, anything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` under ``header``."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt_value(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
