"""Readers: checkpoints in, inert records out; nothing is ever executed (issue #2).

Standard library only (no torch, numpy or safetensors), so `ckreg inspect`
works where `import torch` fails and starts fast.

Public API:
- `read_checkpoint(path, *, tiers=DEFAULT_TIERS) -> ReadResult`
- `read_scaler_summary(path) -> ScalerSummary`
- records: `ReadResult`, `TensorRecord`, `StorageRef`, `DTYPE_SIZES`
- allowlist: `DEFAULT_TIERS`, `WEIGHTS_ONLY`, `TIERS`, `tier_of`
"""

from __future__ import annotations

from ckreg.readers.allowlist import DEFAULT_TIERS, TIERS, WEIGHTS_ONLY, tier_of
from ckreg.readers.core import read_checkpoint
from ckreg.readers.model import DTYPE_SIZES, ReadResult, StorageRef, TensorRecord

__all__ = [
    "read_checkpoint", "read_scaler_summary", "ScalerSummary",
    "ReadResult", "TensorRecord", "StorageRef", "DTYPE_SIZES",
    "DEFAULT_TIERS", "WEIGHTS_ONLY", "TIERS", "tier_of",
]


def __getattr__(name: str):
    # the scaler reader is imported on first use (keeps `import ckreg.readers` minimal)
    if name in ("read_scaler_summary", "ScalerSummary"):
        from ckreg.readers import scaler

        return getattr(scaler, name)
    raise AttributeError(name)
