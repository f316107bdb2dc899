"""Factories for the trainer tests (used by conftest.py and the tests): tiny SignGlove-like
trees and .npz files in tmp dirs.

The signals are class-dependent (a per-class offset and frequency on every
channel) so a hidden-8 model learns something in a few epochs, but the tests
never depend on how much: they check files, formats, determinism and errors.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

CHANNELS = ("flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw")
TINY_GRU = {"hidden_size": 8}


def make_glove_tree(root: Path, classes=("a", "b", "c"), per_class: int = 7, rows: int = 12,
                    seed: int = 0) -> Path:
    """{class}/{session}/episode_*.csv with the SignGlove columns (plus timestamp, like the real files)."""
    rng = np.random.default_rng(seed)
    for ci, name in enumerate(classes):
        for e in range(per_class):
            session = root / name / str(1 + e % 2)
            session.mkdir(parents=True, exist_ok=True)
            n = rows - (e % 3)          # ragged lengths: padding differs per episode
            with open(session / f"episode_{ci:02d}{e:03d}_{name}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp_ms", "pitch", "roll", "yaw", "flex1", "flex2", "flex3", "flex4", "flex5"])
                for t in range(n):
                    base = [800 + 40 * ci + 10 * math.sin((ci + 1) * t / 3.0) + rng.normal(0, 2) for _ in range(5)]
                    angles = [-20 + 15 * ci + rng.normal(0, 1), 30 - 10 * ci + rng.normal(0, 1), 5 * ci]
                    w.writerow([t * 30, *[f"{v:.2f}" for v in angles], *[f"{v:.1f}" for v in base]])
    return root


def make_npz(path: Path, n: int = 18, T: int = 10, C: int = 6, k: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = (rng.normal(size=(n, T, C)) + y[:, None, None]).astype(np.float32)
    np.savez(path, X=X, y=y.astype(np.int64),
             class_names=np.asarray([f"c{i}" for i in range(k)]),
             channel_names=np.asarray([f"ch{i}" for i in range(C)]))
    return path
