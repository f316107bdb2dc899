"""Zoo tests need torch (the `train` extra); helpers live in zoo_helpers.py."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
