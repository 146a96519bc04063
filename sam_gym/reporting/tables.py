"""Markdown tables and the cells that carry a figure with its confidence interval."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["estimate_cell", "markdown_table"]


def markdown_table(rows: Sequence[Sequence[object]], columns: Sequence[str], right: Collection[str] = ()) -> str:
    """Render rows as a GitHub Markdown table (header, separator, one line per row; no final newline).

    Cells are written with ``str``, as they are (format numbers before).

    Args:
        rows: One sequence of ``len(columns)`` cells per row.
        columns: The header cells.
        right: Names of the columns to right-align (``---:``); the others get the default ``---``.

    Raises:
        ValueError: If a row has another number of cells than ``columns``, or ``right`` names an
            unknown column.

    >>> print(markdown_table([["random", 3.5], ["grid", 2.0]], ["policy", "NoC"], right={"NoC"}))
    | policy | NoC |
    |---|---:|
    | random | 3.5 |
    | grid | 2.0 |
    """
    unknown = sorted(set(right) - set(columns))
    if unknown:
        raise ValueError(f"Expected right-aligned columns among {list(columns)}, got {unknown}")
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"Expected {len(columns)} cells in every row, got {len(row)} in row {i}: {list(row)!r}")
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def estimate_cell(value: float, interval: Sequence[float] | None, digits: int, scale: float = 1.0,
                  suffix: str = "") -> str:
    """A table cell ``value [low, high]`` (the value alone when there is no interval).

    Args:
        value: The figure.
        interval: Its ``[low, high]`` interval, or ``None``.
        digits: Decimals of every number.
        scale: Factor applied to every number (100 for percentages).
        suffix: Written after the value (e.g. ``"%"``).

    >>> estimate_cell(0.5, [0.25, 0.75], 1, scale=100, suffix="%")
    '50.0% [25.0, 75.0]'
    >>> estimate_cell(3.0, None, 2)
    '3.00'
    """
    text = f"{scale * value:.{digits}f}{suffix}"
    if interval is None:
        return text
    low, high = interval
    return f"{text} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
