"""`Table`: gradlens's tables (a list of rows: dicts as `paths.horizon_table` gives them, or the typed rows of an audit
report's sections, `gradlens.analysis.rows`) printed as a terminal-sized summary: columns equal in every row on one
line above, then the other scalar columns, the first and last rows, and the list-valued columns named only.
`pandas.DataFrame(table)` has every column (pandas reads dataclass rows as it reads dicts)."""
from __future__ import annotations

from typing import Mapping

MAX_ROWS = 12  # more rows print as the first and last MAX_ROWS // 2
WIDTH = 120  # columns that do not fit are named, not drawn
FIRST = ("method", "model_class", "estimator", "kind", "horizon")  # the columns that say what a row is, leftmost


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        digits = str(abs(value))
        return str(value) if len(digits) <= 12 else f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:4]}e+" \
                                                    f"{len(digits) - 1}"  # exact ints past float64 (3^700 paths)
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def summary(rows) -> str:
    """The compact text of a list of rows, dicts or typed rows with `as_dict()` (what `Table` prints)."""
    rows = [row if isinstance(row, Mapping) else row.as_dict() for row in rows]
    if not rows:
        return "Table: 0 rows"
    columns = sorted(dict.fromkeys(k for row in rows for k in row), key=lambda c: FIRST.index(c) if c in FIRST
                     else len(FIRST))
    scalar = [c for c in columns if all(_scalar(row.get(c)) for row in rows)]
    same = [c for c in scalar if len(rows) > 1 and len({_cell(row.get(c)) for row in rows}) == 1]
    shown = [c for c in scalar if c not in same]
    lines = [f"Table: {len(rows)} rows × {len(columns)} columns"]
    if same:
        lines.append("every row: " + ", ".join(f"{c}={_cell(rows[0].get(c))}" for c in same))
    picked = list(rows) if len(rows) <= MAX_ROWS else rows[:MAX_ROWS // 2] + rows[-(MAX_ROWS // 2):]
    cells = [[_cell(row.get(c)) for c in shown] for row in picked]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(shown)]
    fit = next((i for i in range(len(shown)) if sum(widths[:i + 1]) + 2 * i > WIDTH), len(shown))
    text = [all(isinstance(row.get(c), str) for row in rows) for c in shown]  # left-aligned, numbers right
    grid = [[c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row[:fit], widths, text)]
            for row in [shown, *cells]]
    body = ["  ".join(row) for row in grid]
    if len(rows) > MAX_ROWS:
        body.insert(1 + MAX_ROWS // 2, f"… {len(rows) - MAX_ROWS} more rows")
    hidden = shown[fit:] + [c for c in columns if c not in scalar]
    tail = [f"not shown: {', '.join(hidden)} (pandas.DataFrame(table) has every column)"] if hidden else []
    return "\n".join(lines + body + tail)


class Table(list):
    """A list of rows (dicts or typed rows) whose repr is `summary` (a terminal-sized summary, not every number)."""

    def __repr__(self) -> str:
        return summary(self)
