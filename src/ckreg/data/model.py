"""What the data layer hands the trainer: a `Dataset` and a `Split` (issue #3, "Data").

Both are plain dataclasses around numpy arrays; numpy is imported lazily so
`import ckreg.data` stays cheap on the audit path (house style).
"""

from __future__ import annotations

import hashlib
import math
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ckreg.errors import CkregError, DataError
from ckreg.fsutil import write_with

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

HASH_VERSION = b"ckreg-data-v1"


def nfc(text: str) -> str:
    """Unicode NFC: macOS hands out NFD names (Korean jamo decompose), Linux keeps what was written."""
    return unicodedata.normalize("NFC", text)


def compute_data_hash(X, y, mask, ids: Sequence[str], class_names: Sequence[str],
                      channel_names: Sequence[str]) -> str:
    """sha256 over what a model sees: ids, labels, class and channel names, raw values and mask.

    Computed from the parsed arrays (float32 little-endian), not the file bytes, so it is
    stable across machines (line endings, file order, NFC/NFD names) and the same dataset
    exported to `.npz` and loaded back hashes the same.
    """
    import numpy as np

    h = hashlib.sha256(HASH_VERSION)

    def text_list(tag: bytes, items: Sequence[str]) -> None:
        h.update(tag + len(items).to_bytes(8, "little"))
        for item in items:
            b = nfc(str(item)).encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)

    text_list(b"classes", list(class_names))
    text_list(b"channels", list(channel_names))
    text_list(b"ids", list(ids))
    h.update(b"shape" + np.asarray(X.shape, dtype="<i8").tobytes())
    h.update(b"y" + np.ascontiguousarray(y, dtype="<i8").tobytes())
    h.update(b"mask" + np.ascontiguousarray(mask, dtype="u1").tobytes())
    h.update(b"X" + np.ascontiguousarray(X, dtype="<f4").tobytes())
    return h.hexdigest()


@dataclass
class Dataset:
    """Episodes as arrays: raw (unscaled) values, labels, padding mask and where they came from.

    `X` float32 [N, T, C]; `y` int64 [N]; `mask` uint8 [N, T] (1 = padding row);
    `ids` episode ids (paths relative to the dataset root, or `file.npz#i`);
    `problems` lists (path, reason) for every degenerate or skipped episode.
    """

    X: "np.ndarray"
    y: "np.ndarray"
    mask: "np.ndarray"
    ids: list[str]
    class_names: list[str]
    channel_names: list[str]
    data_hash: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    format: str = ""                      # "signglove" | "npz"
    degenerate: list[str] = field(default_factory=list)   # ids kept although degenerate (keep_degenerate=True)

    def __post_init__(self) -> None:
        if not self.data_hash:
            self.data_hash = compute_data_hash(self.X, self.y, self.mask, self.ids,
                                               self.class_names, self.channel_names)

    # -- shape helpers ---------------------------------------------------
    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def T(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.X.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_valid(self) -> "np.ndarray":
        """Unpadded rows per episode (mask == 0), as the valid-step readout counts them."""
        import numpy as np

        return (np.asarray(self.mask) == 0).sum(axis=1).astype(np.int64)

    def class_counts(self) -> dict[str, int]:
        import numpy as np

        counts = np.bincount(self.y, minlength=len(self.class_names)) if len(self) else [0] * len(self.class_names)
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def subset(self, indices) -> "Dataset":
        """A new Dataset with these episodes (its own data_hash); problems are kept for the record."""
        import numpy as np

        idx = np.asarray(indices, dtype=np.int64)
        chosen = {self.ids[i] for i in idx}
        return Dataset(
            X=self.X[idx], y=self.y[idx], mask=self.mask[idx], ids=[self.ids[i] for i in idx],
            class_names=list(self.class_names), channel_names=list(self.channel_names),
            problems=list(self.problems), source=self.source, format=self.format,
            degenerate=[d for d in self.degenerate if d in chosen],
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able description (for metrics.json and `--json` outputs)."""
        return {
            "source": self.source, "format": self.format, "n_episodes": len(self),
            "T": self.T, "channels": list(self.channel_names), "classes": list(self.class_names),
            "class_counts": self.class_counts(), "data_hash": self.data_hash,
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "degenerate_kept": list(self.degenerate),
        }

    def save_npz(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the generic format (temp file + rename; refuses to clobber unless told)."""
        import numpy as np

        out = Path(path)
        if out.exists() and not overwrite:
            raise DataError("refusing to overwrite an existing file", path=str(out),
                            hint="choose another name or pass overwrite=True")
        out.parent.mkdir(parents=True, exist_ok=True)

        def _write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:   # a file object: np.savez would append ".npz" to a bare name
                np.savez(fh, X=self.X.astype(np.float32), y=self.y.astype(np.int64),
                         mask=self.mask.astype(np.uint8), ids=np.asarray(self.ids, dtype=str),
                         class_names=np.asarray(self.class_names, dtype=str),
                         channel_names=np.asarray(self.channel_names, dtype=str))

        write_with(out, _write, overwrite=overwrite)
        return out


@dataclass
class Split:
    """Train/val/test indices into a Dataset plus the episode ids, recorded with every run."""

    train: "np.ndarray"
    val: "np.ndarray"
    test: "np.ndarray"
    train_ids: list[str]
    val_ids: list[str]
    test_ids: list[str]
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    data_hash: str = ""
    method: str = "stratified-sha256"

    def indices(self, part: str) -> "np.ndarray":
        if part not in ("train", "val", "test"):
            raise CkregError(f"unknown split part {part!r}", hint="use train, val or test")
        return getattr(self, part)

    def ids(self, part: str) -> list[str]:
        self.indices(part)
        return getattr(self, f"{part}_ids")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (ids, not indices: indices depend on load order, ids do not)."""
        return {
            "method": self.method, "seed": self.seed, "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction, "data_hash": self.data_hash,
            "sizes": {"train": len(self.train_ids), "val": len(self.val_ids), "test": len(self.test_ids)},
            "train": list(self.train_ids), "val": list(self.val_ids), "test": list(self.test_ids),
        }


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split(dataset: Dataset, seed: int = 0, val: float = 0.15, test: float = 0.15) -> Split:
    """Deterministic stratified split: per class, episodes ordered by sha256(seed, id).

    Ordering by a hash of the episode id (not a numpy RNG over indices) makes the
    split independent of load order, numpy version and machine, and adding an
    episode never moves the others. Per class: round(n*test) to test,
    round(n*val) to val, the rest (at least one when the class has any) to train.
    """
    import numpy as np

    for name, frac in (("val", val), ("test", test)):
        if not (0.0 <= float(frac) < 1.0):
            raise DataError(f"split fraction {name}={frac} must be in [0, 1)")
    if val + test >= 1.0:
        raise DataError(f"val + test = {val + test} leaves nothing to train on", hint="use smaller fractions")
    if len(dataset) == 0:
        raise DataError("cannot split an empty dataset", path=dataset.source or None)

    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    y = np.asarray(dataset.y)
    for c in np.unique(y):
        members = [int(i) for i in np.flatnonzero(y == c)]
        members.sort(key=lambda i: hashlib.sha256(f"{seed}\0{nfc(dataset.ids[i])}".encode("utf-8")).hexdigest())
        n = len(members)
        n_test = _round_half_up(n * test)
        n_val = _round_half_up(n * val)
        while n_test + n_val > n - 1 and (n_test or n_val):   # keep one for training
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        parts["test"] += members[:n_test]
        parts["val"] += members[n_test:n_test + n_val]
        parts["train"] += members[n_test + n_val:]
    arrays = {k: np.asarray(sorted(v), dtype=np.int64) for k, v in parts.items()}
    return Split(
        train=arrays["train"], val=arrays["val"], test=arrays["test"],
        train_ids=[dataset.ids[i] for i in arrays["train"]],
        val_ids=[dataset.ids[i] for i in arrays["val"]],
        test_ids=[dataset.ids[i] for i in arrays["test"]],
        seed=int(seed), val_fraction=float(val), test_fraction=float(test), data_hash=dataset.data_hash,
    )
