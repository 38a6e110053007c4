"""Plain text tables for the console (a run's results, a sweep's summary)."""

from __future__ import annotations

from typing import Any


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    """``rows`` under ``header``, aligned: the first column to the left, the others to the right;
    floats to 4 significant digits, a missing value (None) as ``-``."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    table = [[str(h) for h in header], *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            [line[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(line[1:], widths[1:], strict=True))]
        )
        for line in table
    )
