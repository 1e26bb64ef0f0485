"""Printing the CLI's rows: an aligned table for people, or JSON for programs."""

from __future__ import annotations

import json
from typing import Any


def emit_rows(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> int:
    """Print `rows` as JSON or as a table of `columns`; the exit status (0)."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print_table(rows, columns)
    return 0


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    print(
        "  ".join(
            column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)
        )
    )
    for row_cells in cells:
        print("  ".join(c.ljust(width) for c, width in zip(row_cells, widths, strict=True)))


def cell(value: Any) -> str:
    """One value on one line of at most 60 characters; "-" for nothing."""
    text = "-" if value is None or value == "" else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
