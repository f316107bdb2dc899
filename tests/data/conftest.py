"""Factories for tiny SignGlove trees in tmp dirs (real layout, synthetic numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

HEADER = ("timestamp_ms,recv_timestamp_ms,pitch,roll,yaw,flex1,flex2,flex3,flex4,flex5,"
          "sampling_hz,accel_x,accel_y,accel_z")


def episode_rows(n: int, seed: float = 0.0) -> list[str]:
    """n rows in the recorder's column order; flex_i = 100*i + row + seed, pitch/roll/yaw = -row etc."""
    rows = []
    for r in range(n):
        flex = [100 * (i + 1) + r + seed for i in range(5)]
        pitch, roll, yaw = -r - seed, 2 * r + seed, 0.5 * r
        rows.append(",".join(str(v) for v in [30 * r, 1000 + r, pitch, roll, yaw, *flex, 33.3, 0.1, 0.2, 0.3]))
    return rows


def write_episode(path: Path, n_rows: int, seed: float = 0.0, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *episode_rows(n_rows, seed)]) + "\n", encoding="utf-8")
    return path


def make_tree(root: Path, classes=("ㄱ", "ㄴ", "ㅏ"), sessions=2, per_session=3, rows=10) -> Path:
    """root/{class}/{session}/episode_*.csv with distinct values per episode."""
    k = 0
    for c in classes:
        for s in range(1, sessions + 1):
            for e in range(per_session):
                write_episode(root / c / str(s) / f"episode_2025_{k:04d}_{c}_{s}.csv", rows, seed=float(k))
                k += 1
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "glove")


@pytest.fixture
def glove():
    """The factories, for tests: glove.make_tree(root), glove.write_episode(path, n), glove.HEADER."""

    class Glove:
        pass

    g = Glove()
    g.make_tree, g.write_episode, g.episode_rows, g.HEADER = make_tree, write_episode, episode_rows, HEADER
    return g
