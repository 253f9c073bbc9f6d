"""How the command prints: its tables (one function for every table it shows) and its values (times, ages,
figures)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True)
class Column:
    """A table's column: its title, its width (a cell wider than it pushes the rest of its row right, as a
    title wider than it does) and its alignment."""

    title: str
    width: int = 0
    align: Literal["<", ">"] = "<"


def table(
    columns: Sequence[Column], rows: Iterable[Sequence[str]], *, gap: str = "  ", indent: str = "", header: bool = True
) -> list[str]:
    """The title line (unless `header` is false), then one line per row. Every cell is padded to its column's
    width, except a left-aligned last column's, so that no line ends in spaces."""
    lines = [[c.title for c in columns]] if header else []
    lines += [list(row) for row in rows]
    last = len(columns) - 1
    return [
        indent
        + gap.join(
            cell if i == last and column.align == "<" else f"{cell:{column.align}{column.width}}"
            for i, (column, cell) in enumerate(zip(columns, cells, strict=True))
        )
        for cells in lines
    ]


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float) -> str:
    """`35s`, `4m`, `2h05m`, `3d04h`: how long a state has held, at a glance."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def number(value: float) -> str:
    """A count without decimals, anything else with two: `1,200`, `2.50`."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
