"""The generic dataset format: one `.npz` (issue #3, "a generic format too").

Arrays: `X` [N, T, C] (raw, unscaled), `y` [N] integer labels; optional
`mask` [N, T] (1 = padding; default: no padding), `class_names` [K],
`channel_names` [C], `ids` [N]. Read with `allow_pickle=False`: an `.npz`
holding object arrays is refused, never unpickled.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ckreg.data.model import Dataset
from ckreg.errors import DataError


def load_npz(path: str | os.PathLike) -> Dataset:
    """Load and validate a `.npz` dataset; DataError naming the file and the array on any mismatch."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", path=str(p))
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:   # object arrays need pickle: refused
        raise DataError(f"cannot read without unpickling ({exc})", path=str(p),
                        hint="store strings as fixed-width unicode arrays (np.asarray(names, dtype=str))") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable .npz file: {exc}", path=str(p)) from exc

    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(f"missing array {key!r} (have: {', '.join(sorted(arrays)) or 'none'})", path=str(p))
    X = arrays["X"]
    y = arrays["y"]
    if X.ndim != 3:
        raise DataError(f"X must be [N, T, C], got shape {list(X.shape)}", path=str(p))
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"X must be numeric, got dtype {X.dtype}", path=str(p))
    N, T, C = X.shape
    if N == 0:
        raise DataError("no episodes (X has N = 0)", path=str(p))
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y must be integers of shape [{N}], got {y.dtype} {list(y.shape)}", path=str(p))
    if (y < 0).any():
        raise DataError("y holds negative labels", path=str(p))

    if "mask" in arrays:
        mask = arrays["mask"]
        if mask.shape != (N, T):
            raise DataError(f"mask must be [{N}, {T}], got {list(mask.shape)}", path=str(p))
        mask = (mask != 0).astype(np.uint8)
    else:
        mask = np.zeros((N, T), dtype=np.uint8)

    def names(key: str, n: int | None, default: list[str]) -> list[str]:
        if key not in arrays:
            return default
        arr = arrays[key]
        if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
            raise DataError(f"{key} must be 1-D" + (f" with {n} entries" if n is not None else "")
                            + f", got shape {list(arr.shape)}", path=str(p))
        return [str(v) for v in arr.tolist()]

    K = int(y.max()) + 1
    class_names = names("class_names", None, [str(i) for i in range(K)])
    if len(class_names) < K:
        raise DataError(f"y uses label {K - 1} but class_names has only {len(class_names)} entries", path=str(p))
    channel_names = names("channel_names", C, [f"ch{i}" for i in range(C)])
    ids = names("ids", N, [f"{p.name}#{i}" for i in range(N)])
    if len(set(ids)) != len(ids):
        raise DataError("ids are not unique", path=str(p))
    return Dataset(
        X=np.ascontiguousarray(X, dtype=np.float32), y=y.astype(np.int64), mask=mask, ids=ids,
        class_names=class_names, channel_names=channel_names, source=str(p), format="npz",
    )
