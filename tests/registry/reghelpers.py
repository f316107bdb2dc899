"""Helpers shared by the registry tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ckreg.arch import ArchSpec
from ckreg.inspect.model import Inspection
from ckreg.registry import Registry

TINY = dict(hidden_size=8, num_classes=4)


def tiny_spec(family: str = "GRU") -> ArchSpec:
    return ArchSpec.for_family(family, **TINY)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stub_inspection(path: Path, spec: ArchSpec | None = None) -> Inspection:
    """What the inspector would say about a GRU file (sha256 is the real one)."""
    spec = spec or tiny_spec()
    return Inspection(path=str(path), format="stub", family=spec.family, hyperparameters=spec.weight_hparams(),
                      sha256=sha256_of(path),
                      weights_sha256=hashlib.sha256(b"weights:" + Path(path).read_bytes()).hexdigest())


def stub_add(reg: Registry, path: Path, name: str = "GRU", spec: ArchSpec | None = None, **kw):
    """Register arbitrary bytes as a GRU version (no torch, no inspector)."""
    spec = spec or tiny_spec()
    return reg.add(path, name=name, spec=spec, inspection=stub_inspection(path, spec), **kw)


def flip_byte(path: Path, offset: int = 100) -> None:
    """Corrupt one byte in place (blobs are read-only: make it writable first)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
