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

# Families tried first (fast path); any other installed font that has the glyphs is found by its cmap.
_PREFERRED_FONTS = ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "AppleGothic",
                    "Noto Sans CJK JP", "Noto Sans CJK SC", "UnDotum", "DejaVu Sans")
FONT_HINT = "install a font with these glyphs (Debian: fonts-nanum or fonts-noto-cjk)"
_FONT_CACHE: dict[frozenset, str | None] = {}


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


def _covers(path: str, chars: set[str]) -> bool:
    try:
        from matplotlib.ft2font import FT2Font

        cmap = FT2Font(path).get_charmap()
    except Exception:  # an unreadable font file is not a candidate
        return False
    return all(ord(c) in cmap for c in chars)


def _fc_list(chars: set[str]) -> list[str]:
    """Font files fontconfig says cover `chars` (catches fonts installed after matplotlib built its cache)."""
    import shutil
    import subprocess

    if not shutil.which("fc-list"):
        return []
    charset = " ".join(f"{ord(c):x}" for c in sorted(chars))
    try:
        proc = subprocess.run(["fc-list", f":charset={charset}", "file"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":")[0].strip() for line in proc.stdout.splitlines() if line.strip()]


def font_for(names: Sequence[str]) -> str | None:
    """The file of an installed font that has a glyph for every character of `names`, or None."""
    chars = {c for n in names for c in str(n) if not c.isspace()}
    key = frozenset(chars)
    if key in _FONT_CACHE:
        return _FONT_CACHE[key]
    from matplotlib import font_manager

    fonts = sorted(font_manager.fontManager.ttflist,
                   key=lambda f: (_PREFERRED_FONTS.index(f.name) if f.name in _PREFERRED_FONTS else 99, f.name))
    # "Last Resort" maps every code point to a placeholder box: it covers everything and draws nothing
    fonts = [f for f in fonts if "last resort" not in f.name.lower() and "lastresort" not in f.fname.lower()]
    found = next((f.fname for f in fonts if _covers(f.fname, chars)), None)
    if found is None:
        found = next((p for p in _fc_list(chars) if p.lower().endswith((".ttf", ".otf", ".ttc"))
                      and "lastresort" not in p.lower() and _covers(p, chars)), None)
    _FONT_CACHE[key] = found
    return found


def _fallback_label(name: str, index: int) -> str:
    """A drawable stand-in for a name no font can draw: its Unicode name ("KIYEOK" for ㄱ), else the index."""
    import unicodedata

    try:
        words = [unicodedata.name(c) for c in name]
    except ValueError:
        return str(index)
    short = [w.removeprefix("HANGUL LETTER ").removeprefix("HANGUL SYLLABLE ") for w in words]
    return f"{index} {'-'.join(short)}" if sum(map(len, short)) <= 14 else str(index)


def labels_for(class_names: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """(tick labels, font file or None, a note for the picture or None).

    Class names are drawn as they are when an installed font has every glyph
    (DejaVu Sans covers Latin; Hangul needs e.g. NanumGothic). Otherwise the
    labels are the index and the Unicode name of the letter, and the note says
    so in the picture, with the fix.
    """
    names = [str(n) for n in class_names]
    if not names:
        return [], None, None
    font = font_for(names)
    if font is not None:
        return names, font, None
    labels = [_fallback_label(n, i) for i, n in enumerate(names)]
    return labels, None, f"class names shown by index and Unicode name: no installed font has their glyphs; {FONT_HINT}"


def write_confusion_png(path: str | Path, cm: Sequence[Sequence[int]], class_names: Sequence[str],
                        title: str = "", notes: list[str] | None = None, *, overwrite: bool = False) -> str:
    """Write the picture atomically (never over an existing file unless `overwrite`); returns the
    renderer used ("matplotlib" or "plain").

    Axes carry the class names (rows true, columns predicted), a colour bar gives
    the fraction of each true class, and every non-zero cell shows its count in a
    size that stays readable for 24 classes. `notes` collects what the reader
    should know (e.g. that no font could draw the class names; also printed in
    the picture).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.figure  # noqa: F401
    except Exception:  # not installed or broken: never fail a training run over a picture
        write_bytes(path, plain_png(cm), overwrite=overwrite)
        if notes is not None:
            notes.append("confusion_matrix.png drawn without text (matplotlib is not installed)")
        return "plain"

    fig, note = confusion_figure(cm, class_names, title)
    if note and notes is not None:
        notes.append(note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyph warnings cannot happen with a covering font; keep logs clean
        write_with(path, lambda tmp: fig.savefig(tmp, format="png"), overwrite=overwrite)
    return "matplotlib"


def confusion_figure(cm: Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""):
    """(matplotlib Figure, note or None): the heatmap with named axes, colour bar and counts."""
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    labels, font, note = labels_for(class_names or [str(i) for i in range(len(cm))])
    k = len(cm)
    side = max(4.5, 0.36 * k + 2.2)
    fig = Figure(figsize=(side + 1.2, side + (0.5 if note else 0.0)), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(_normalised(cm), cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    tick = {"fontproperties": FontProperties(fname=font, size=11 if k <= 30 else 8)} if font else {"fontsize": 8}
    ax.set_xticklabels(labels, rotation=90 if any(len(x) > 3 for x in labels) else 0, **tick)
    ax.set_yticklabels(labels, **tick)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    count_size = 8 if k <= 12 else (7 if k <= 26 else 5)
    for i, row in enumerate(cm):
        total = sum(row)
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=count_size,
                        color="white" if total and v / total > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="darkred", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    return fig, note
