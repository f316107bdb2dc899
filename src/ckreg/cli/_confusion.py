"""The confusion matrix in a terminal, for `verify` and `eval` alike (one renderer).

Rows are true classes, columns predicted. Cells are separated by a space and
right-aligned, so counts stay readable without colour (logs, CI); colour only
adds emphasis (diagonal green, confusions red). A matrix wider than the
terminal is split into blocks of columns, as numpy prints wide arrays, so an
80-column terminal shows all 24 SignGlove classes with counts of any size.
Column headers are the class names when they are as narrow as the counts
(Hangul letters are two cells wide), else the class indices, with the names
in the row labels.
"""

from __future__ import annotations

from typing import Sequence


def _style(n: int, total: int, diagonal: bool) -> str:
    frac = n / total if total else 0.0
    if diagonal:
        return "bold green" if frac >= 0.95 else ("green" if frac >= 0.8 else "yellow")
    return "bold red" if frac >= 0.05 else "red"


def confusion_blocks(cm: Sequence[Sequence[int]], class_names: Sequence[str] | None, width: int = 80):
    """rich Tables (one per block of columns) that together show `cm` within `width` cells."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    k = len(cm)
    if k == 0:
        return []
    names = [str(n) for n in (class_names or [])] + [str(i) for i in range(len(class_names or []), k)]
    digits = max(len(str(v)) for row in cm for v in row) if any(cm) else 1
    name_w = max(cell_len(n) for n in names)
    by_name = name_w <= max(digits, 2)
    cell_w = max(digits, name_w if by_name else len(str(k - 1)), 1)
    headers = names if by_name else [str(i) for i in range(k)]
    labels = names if by_name else [f"{i} {n}" for i, n in enumerate(names)]
    label_w = max(cell_len(x) for x in labels)
    per_block = max(1, (width - label_w) // (cell_w + 1))
    n_blocks = -(-k // per_block)
    per_block = -(-k // n_blocks)            # balanced: 12 + 12 columns, not 19 + 5
    tables = []
    for start in range(0, k, per_block):
        cols = range(start, min(k, start + per_block))
        t = Table(box=None, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False, header_style="bold")
        t.add_column("", justify="right", no_wrap=True, style="bold")
        for j in cols:
            t.add_column(headers[j], justify="right", no_wrap=True, min_width=cell_w)
        for i, row in enumerate(cm):
            total = sum(row)
            cells = [Text("·", style="dim") if row[j] == 0 else Text(str(row[j]), style=_style(row[j], total, i == j))
                     for j in cols]
            t.add_row(labels[i], *cells)
        tables.append((start, cols.stop, t))
    return tables


def print_confusion(con, cm: Sequence[Sequence[int]], class_names: Sequence[str] | None,
                    title: str = "confusion matrix") -> None:
    """Print the title line and the block(s) on the rich console `con`, within its width."""
    blocks = confusion_blocks(cm, class_names, width=con.width)
    if not blocks:
        return
    con.print(f"{title} (rows: true, columns: predicted)", highlight=False)
    for start, stop, table in blocks:
        if len(blocks) > 1:
            con.print(f"columns {start + 1}-{stop} of {len(cm)}", style="dim", highlight=False)
        con.print(table)


__all__ = ["confusion_blocks", "print_confusion"]
