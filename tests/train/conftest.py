"""Fixtures for the trainer tests; the factories live in train_factories.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from train_factories import TINY_GRU, make_glove_tree  # noqa: E402


@pytest.fixture(scope="session")
def glove_tree(tmp_path_factory) -> Path:
    return make_glove_tree(tmp_path_factory.mktemp("glove"))


@pytest.fixture(scope="session")
def tiny_run(glove_tree, tmp_path_factory):
    """One tiny GRU run shared by the read-only tests: (TrainResult, out dir)."""
    from ckreg.train import train

    out = tmp_path_factory.mktemp("run") / "out"
    result = train("GRU", glove_tree, out, overrides=TINY_GRU, seed=3, epochs=3, batch_size=8)
    return result, out
