"""Wrapping for narrow terminals: break at spaces, and long paths after a `/`, never inside a word.

rich folds a word that does not fit at an arbitrary character; an audit
message is mostly paths (`archive/checkpoints_backup/GRU_best-v1.ckpt`), and
a path cut at a random letter reads as two names. These helpers pre-wrap text
so the terminal never has to.
"""

from __future__ import annotations

import re

_BREAK_AFTER = re.compile(r"(?<=[/\\])|(?<=, )")


def fold_token(token: str, width: int) -> list[str]:
    """Split one overlong token after path separators; hard-split only a segment that alone exceeds `width`."""
    width = max(1, width)
    if len(token) <= width:
        return [token]
    parts = [p for p in _BREAK_AFTER.split(token) if p]
    out: list[str] = []
    cur = ""
    for part in parts:
        while len(part) > width:            # one segment longer than a line: nothing better than a hard cut
            if cur:
                out.append(cur)
                cur = ""
            out.append(part[:width])
            part = part[width:]
        if len(cur) + len(part) > width:
            out.append(cur)
            cur = part
        else:
            cur += part
    if cur:
        out.append(cur)
    return out


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap to `width` columns (explicit newlines kept); overlong words fold after `/`."""
    width = max(1, width)
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        cur = ""
        for word in paragraph.split():
            pieces = fold_token(word, width)
            for k, piece in enumerate(pieces):
                glue = "" if (not cur or k > 0) else " "
                if k > 0 or len(cur) + len(glue) + len(piece) > width:
                    if cur:
                        lines.append(cur)
                    cur = piece
                else:
                    cur += glue + piece
        lines.append(cur)
    return lines


__all__ = ["wrap", "fold_token"]
