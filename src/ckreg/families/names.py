"""Rendering helpers shared by evidence, leftovers and descriptions.

Key lists collapse the way people write them (issue #2: leftovers collapsed as
`layers.{0..11}.x`), so a 300-key transformer reads as a handful of lines.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def fmt_shape(shape: Sequence[int]) -> str:
    """`[192, 64]`; a 0-d tensor is `[]`."""
    return "[" + ", ".join(str(int(v)) for v in shape) + "]"


def fmt_kernel(kernel: Sequence[int]) -> str:
    """`5x5x5`, or `3` for a 1-D kernel."""
    return "x".join(str(int(v)) for v in kernel)


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


def braces(values: Iterable[int]) -> str:
    """`5`, `{0,1}`, `{0..11}`, `{0..3,7,9..12}`: runs of 3 or more use `..`."""
    vals = sorted(set(int(v) for v in values))
    if len(vals) == 1:
        return str(vals[0])
    runs: list[list[int]] = []
    for v in vals:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{run[0]}..{run[-1]}")
        else:
            parts.extend(str(v) for v in run)
    return "{" + ",".join(parts) + "}"


def _is_index(token: str) -> bool:
    return token.isdigit() and (token == "0" or not token.startswith("0"))


def collapse_names(names: Iterable[str]) -> list[str]:
    """Collapse numbered siblings: `layers.0.x ... layers.11.x` -> `layers.{0..11}.x`.

    Groups keep the order of their first member. A group collapses to one line
    only when its indices form a full grid; otherwise it splits on the first
    index and tries again, so the result never claims a key that is absent.
    """
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for name in names:
        parts = name.split(".")
        template = tuple("#" if _is_index(p) else p for p in parts)
        groups.setdefault(template, []).append(parts)
    out: list[str] = []
    for template, members in groups.items():
        out.extend(_collapse(list(template), members))
    return out


def _collapse(template: list[str], members: list[list[str]]) -> list[str]:
    slots = [i for i, t in enumerate(template) if t == "#"]
    if not slots:
        return [".".join(template)]
    if len(members) == 1:
        return [".".join(members[0])]
    values = [sorted({int(m[i]) for m in members}) for i in slots]
    if math.prod(len(v) for v in values) == len({tuple(m) for m in members}):
        parts = list(template)
        for i, v in zip(slots, values):
            parts[i] = braces(v)
        return [".".join(parts)]
    first = slots[0]
    by_value: dict[int, list[list[str]]] = {}
    for m in members:
        by_value.setdefault(int(m[first]), []).append(m)
    out: list[str] = []
    for value in sorted(by_value):
        sub = list(template)
        sub[first] = str(value)
        out.extend(_collapse(sub, by_value[value]))
    return out
