"""Confusion-matrix pictures: matplotlib (Agg) when installed, else a tiny PNG writer.

matplotlib is in the `train` extra but the trainer must not fail without it
(issue #3 lists `confusion_matrix.png` as an output, not as a dependency), so
`write_confusion_png` falls back to `plain_png`, a dependency-free heatmap
(zlib + struct) without text.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Sequence

from ckreg.fsutil import write_bytes, write_with

_HANGUL_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Malgun Gothic",
                 "AppleGothic", "Noto Sans CJK JP", "Noto Sans CJK SC", "UnDotum")


def _normalised(cm: Sequence[Sequence[int]]) -> list[list[float]]:
    """Row-normalised (recall) matrix: every class gets the full colour range."""
    out = []
    for row in cm:
        total = sum(row)
        out.append([v / total if total else 0.0 for v in row])
    return out


def _colour(v: float) -> tuple[int, int, int]:
    """White -> dark blue, like matplotlib's 'Blues'."""
    v = min(max(v, 0.0), 1.0)
    lo, hi = (247, 251, 255), (8, 48, 107)
    return tuple(round(lo[i] + (hi[i] - lo[i]) * v) for i in range(3))  # type: ignore[return-value]


def plain_png(cm: Sequence[Sequence[int]], cell: int = 12) -> bytes:
    """A text-free heatmap PNG (rows = true class, columns = predicted), 1-px grey grid."""
    norm = _normalised(cm)
    k = len(norm)
    size = max(k * cell + 1, 1)
    grid = (200, 200, 200)
    rows = []
    for y in range(size):
        line = bytearray(b"\x00")  # filter type 0 for every scanline
        for x in range(size):
            if k == 0 or y % cell == 0 or x % cell == 0:
                line += bytes(grid)
            else:
                line += bytes(_colour(norm[min(y // cell, k - 1)][min(x // cell, k - 1)]))
        rows.append(bytes(line))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def _labels(class_names: Sequence[str]) -> tuple[list[str], str | None]:
    """Class names, or indices where no installed font can draw them (Hangul on a bare machine)."""
    if all(name.isascii() for name in class_names):
        return list(class_names), None
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for family in _HANGUL_FONTS:
        if family in installed:
            return list(class_names), family
    return [str(i) for i in range(len(class_names))], None


def write_confusion_png(path: str | Path, cm: Sequence[Sequence[int]], class_names: Sequence[str],
                        title: str = "", *, overwrite: bool = False) -> str:
    """Write the picture atomically (never over an existing file unless `overwrite`);
    returns the renderer used ("matplotlib" or "plain")."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except Exception:  # not installed or broken: never fail a training run over a picture
        write_bytes(path, plain_png(cm), overwrite=overwrite)
        return "plain"

    labels, font = _labels(class_names)
    k = len(cm)
    fig = Figure(figsize=(max(4.0, 0.32 * k + 2), max(3.5, 0.32 * k + 1.5)), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(_normalised(cm), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    kw = {"fontfamily": font} if font else {}
    ax.set_xticklabels(labels, fontsize=7, **kw)
    ax.set_yticklabels(labels, fontsize=7, **kw)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            if v:
                total = sum(row)
                ax.text(j, i, str(v), ha="center", va="center", fontsize=5,
                        color="white" if total and v / total > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing-glyph warnings must not reach the user
        write_with(path, lambda tmp: fig.savefig(tmp, format="png"), overwrite=overwrite)
    return "matplotlib"
