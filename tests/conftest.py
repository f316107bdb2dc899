"""Shared fixtures. Area-specific factories live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCHIVE = SHARED / "checkpoints" / "klp-archive"
SIGNGLOVE = SHARED / "data" / "signglove"
SPEC = SHARED / "spec" / "families.md"


@pytest.fixture(scope="session")
def archive_dir() -> Path:
    """The real messy archive; tests using it skip cleanly where ../shared is absent."""
    if not ARCHIVE.is_dir():
        pytest.skip("../shared/checkpoints/klp-archive not present")
    return ARCHIVE


@pytest.fixture(scope="session")
def signglove_dir() -> Path:
    if not SIGNGLOVE.is_dir():
        pytest.skip("../shared/data/signglove not present")
    return SIGNGLOVE


@pytest.fixture(scope="session")
def torch_mod():
    """torch, or a clean skip where the [train] extra is not installed."""
    return pytest.importorskip("torch")
