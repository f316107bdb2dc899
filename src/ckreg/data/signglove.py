"""The SignGlove folder format, as `../shared/spec/families.md` ("Data ...") describes it.

`{root}/{class}/{session}/episode_*.csv`; class index in the spec's order (14
consonants, then 10 vowels: not sorted order); columns flex1..flex5, pitch,
roll, yaw in that order; each episode cut or padded to T rows, padding rows
holding the raw value 1.0 on every channel and marked 1 in the mask (the
upstream preprocessing the existing checkpoints were trained on).

Degenerate episodes never crash the load: they are listed in
`Dataset.problems` with their path and skipped, or kept with
`keep_degenerate=True` (issue #3, "Data").
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

from ckreg.data.model import Dataset, nfc
from ckreg.errors import DataError

# Spec, "Data the SignGlove families were trained on": class index in this order.
SIGNGLOVE_CLASSES: tuple[str, ...] = (
    "ㄱ", "ㄴ", "ㄷ", "ㄹ", "ㅁ", "ㅂ", "ㅅ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ", "ㅍ", "ㅎ",
    "ㅏ", "ㅑ", "ㅓ", "ㅕ", "ㅗ", "ㅛ", "ㅜ", "ㅠ", "ㅡ", "ㅣ",
)
SIGNGLOVE_CHANNELS: tuple[str, ...] = ("flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw")
PAD_VALUE = 1.0          # raw value of a padding row (spec; upstream np.pad constant_values=1.0)
DEFAULT_T = 87
EPISODE_GLOB = "episode_*.csv"


def _discover(root: Path) -> dict[str, list[Path]]:
    """class folder name (NFC) -> episode files under it (any depth; spec layout is class/session/file)."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir(), key=lambda p: nfc(p.name)):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        files = [p for p in entry.rglob(EPISODE_GLOB) if p.is_file()]
        if files:
            found.setdefault(nfc(entry.name), []).extend(files)
    return found


def _parse_episode(path: Path, T: int, channels: Sequence[str]) -> tuple[list[list[float]] | None, list[str]]:
    """Rows (first T, float) and reasons this episode is degenerate; rows is None when unusable.

    Missing columns and non-numeric or non-finite cells become NaN (reported);
    a file with no data rows yields None. A well-formed file takes the fast
    path (one numpy conversion); anything odd is re-parsed cell by cell so the
    reason can name the column and line.
    """
    import numpy as np

    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as fh:
            records = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, [f"unreadable: {type(exc).__name__}: {exc}"]
    if not records:
        return None, ["empty file (no header, no rows)"]
    names = [h.strip().lower() for h in records[0]]
    idx = [names.index(n) if n in names else None for n in channels]
    body = [(line_no, rec) for line_no, rec in enumerate(records[1:], start=2)
            if rec and any(cell.strip() for cell in rec)]
    n_rows = len(body)
    if n_rows and None not in idx:
        try:
            arr = np.array([[rec[i] for i in idx] for _, rec in body[:T]], dtype=np.float64)
            if np.isfinite(arr).all():
                return arr.tolist(), (["only one row"] if n_rows == 1 else [])
        except (ValueError, IndexError):
            pass
    reasons: list[str] = []
    missing = [n for n, i in zip(channels, idx) if i is None]
    if missing:
        reasons.append(f"missing columns: {', '.join(missing)}")
    rows: list[list[float]] = []
    bad_cells = 0
    first_bad = ""
    for line_no, rec in body[:T]:
        vals = []
        for name, i in zip(channels, idx):
            if i is None:
                vals.append(math.nan)
                continue
            cell = rec[i].strip() if i < len(rec) else ""
            try:
                v = float(cell)
                if not math.isfinite(v):
                    raise ValueError
            except ValueError:
                v = math.nan
                bad_cells += 1
                if not first_bad:
                    first_bad = f"{cell!r} in column {name}, line {line_no}"
            vals.append(v)
        rows.append(vals)
    if bad_cells:
        reasons.append(f"{bad_cells} non-numeric or non-finite cell(s), first {first_bad}")
    if n_rows == 0:
        return None, reasons + ["no data rows"]
    if n_rows == 1:
        reasons.append("only one row")
    return rows, reasons


def load_episode_csv(path: str | os.PathLike, *, channels: Sequence[str] = SIGNGLOVE_CHANNELS,
                     T: int | None = None) -> "np.ndarray":
    """One episode CSV as a float32 `[t, C]` array, columns taken by their header names in `channels`
    order (any column order in the file; extra columns such as a timestamp are ignored).

    The same parser the dataset loader uses, so `ckreg.load(ref).predict([load_episode_csv(p)])`
    sees exactly what verification saw. `T` keeps the first T rows (default: all). Raises
    DataError naming the file for a missing column, a non-numeric cell or an empty file.
    """
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise DataError("no such episode file", path=str(p))
    rows, reasons = _parse_episode(p, T if T is not None else 10**9, [c.lower() for c in channels])
    bad = [r for r in reasons if r != "only one row"]
    if rows is None or bad:
        raise DataError("; ".join(reasons) or "no data rows", path=str(p),
                        hint=f"the episode needs the columns {', '.join(channels)}")
    return np.asarray(rows, dtype=np.float32)


def load_signglove(
    dir: str | os.PathLike,
    *,
    T: int = DEFAULT_T,
    keep_degenerate: bool = False,
    classes: Sequence[str] | None = None,
    channels: Sequence[str] = SIGNGLOVE_CHANNELS,
) -> Dataset:
    """Load `{dir}/{class}/{session}/episode_*.csv` into a Dataset (raw values, padding mask).

    Class order: the spec's 24 SignGlove letters when every class folder is one
    of them (all 24 names kept, so indices match the checkpoints even for a
    subset); otherwise the folder names in sorted order; or `classes` if given.
    Degenerate episodes (empty, one row, missing columns, non-numeric cells)
    are reported in `problems` and skipped, or kept with `keep_degenerate=True`
    (NaN where a cell is missing or not a number; files without any data row
    are always skipped, there is nothing to keep). Raises DataError for a
    folder with no episodes.
    """
    import numpy as np

    root = Path(dir)
    if not root.is_dir():
        raise DataError("not a directory", path=str(root), hint="pass a SignGlove folder or a .npz file")
    if T < 1:
        raise DataError(f"T must be positive, got {T}")
    found = _discover(root)
    if not found:
        raise DataError(f"no episodes found (expected {{class}}/{{session}}/{EPISODE_GLOB})", path=str(root),
                        hint="point --data at the folder that holds the class folders")

    if classes is not None:
        class_names = [nfc(c) for c in classes]
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise DataError(f"class folders not in the given class list: {', '.join(unknown)}", path=str(root))
    elif set(found) <= set(SIGNGLOVE_CLASSES):
        class_names = list(SIGNGLOVE_CLASSES)
    else:
        class_names = sorted(found)
    class_index = {c: i for i, c in enumerate(class_names)}

    C = len(channels)
    episodes: list[tuple[int, str, Path]] = []
    for cname, files in found.items():
        for p in files:
            rel = nfc(p.relative_to(root).as_posix())
            episodes.append((class_index[cname], rel, p))
    episodes.sort(key=lambda e: (e[0], e[1]))

    X = np.full((len(episodes), T, C), PAD_VALUE, dtype=np.float32)
    mask = np.ones((len(episodes), T), dtype=np.uint8)
    y = np.empty(len(episodes), dtype=np.int64)
    keep = np.zeros(len(episodes), dtype=bool)
    ids: list[str] = []
    problems: list[tuple[str, str]] = []
    degenerate: list[str] = []
    for n, (label, rel, path) in enumerate(episodes):
        rows, reasons = _parse_episode(path, T, channels)
        if reasons:
            action = "kept (keep_degenerate)" if (rows is not None and keep_degenerate) else "skipped"
            problems.append((str(path), "; ".join(reasons) + f" [{action}]"))
        if rows is None or (reasons and not keep_degenerate):
            continue
        if reasons:
            degenerate.append(rel)
        L = len(rows)
        X[n, :L] = np.asarray(rows, dtype=np.float32)
        mask[n, :L] = 0
        y[n] = label
        keep[n] = True
        ids.append(rel)

    if not keep.any():
        raise DataError(f"no usable episodes: all {len(episodes)} are degenerate", path=str(root),
                        hint="see the problems listed; pass keep_degenerate=True to keep them")
    return Dataset(
        X=X[keep], y=y[keep], mask=mask[keep], ids=ids, class_names=class_names,
        channel_names=list(channels), problems=problems, source=str(root), format="signglove",
        degenerate=degenerate,
    )
