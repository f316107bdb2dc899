"""Datasets for training and evaluation (issue #3, "Data").

`load_signglove(dir)` reads the SignGlove folder layout of the spec,
`load_npz(path)` the generic format, `load_dataset(path)` picks one;
`split(dataset, seed)` gives the deterministic stratified train/val/test split.
Torch-free; numpy is imported inside functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from ckreg.data.model import Dataset, Split, compute_data_hash, split
from ckreg.data.npz import load_npz
from ckreg.data.signglove import SIGNGLOVE_CHANNELS, SIGNGLOVE_CLASSES, load_episode_csv, load_signglove
from ckreg.errors import DataError

__all__ = [
    "Dataset", "Split", "split", "load_signglove", "load_npz", "load_dataset", "load_episode_csv", "compute_data_hash",
    "SIGNGLOVE_CLASSES", "SIGNGLOVE_CHANNELS",
]


def load_dataset(path: str | os.PathLike, **kwargs) -> Dataset:
    """A folder is read as SignGlove, a `.npz` file as the generic format; anything else is a DataError.

    Keyword arguments (`T`, `keep_degenerate`, ...) go to `load_signglove`.
    """
    p = Path(path)
    if p.is_dir():
        return load_signglove(p, **kwargs)
    if p.is_file() and p.suffix.lower() == ".npz":
        if kwargs:
            raise DataError(f"options {', '.join(sorted(kwargs))} apply to SignGlove folders only", path=str(p))
        return load_npz(p)
    if not p.exists():
        raise DataError("no such file or directory", path=str(p))
    raise DataError("unsupported dataset", path=str(p),
                    hint="pass a SignGlove folder ({class}/{session}/episode_*.csv) or a .npz file")
