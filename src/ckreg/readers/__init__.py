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
from ckreg.readers.model import DTYPE_SIZES, ReadResult, StorageRef, TensorRecord

__all__ = [
    "read_checkpoint", "read_scaler_summary", "ScalerSummary",
    "ReadResult", "TensorRecord", "StorageRef", "DTYPE_SIZES",
    "DEFAULT_TIERS", "WEIGHTS_ONLY", "TIERS", "tier_of",
]

# imported on first use: a module of this package (fileio, folder) is used without the readers
# themselves (a warm audit that reads no file), and `import ckreg.readers` stays minimal
_LAZY = {"read_checkpoint": "core", "read_scaler_summary": "scaler", "ScalerSummary": "scaler"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"ckreg.readers.{_LAZY[name]}"), name)
    raise AttributeError(name)
