"""Factories for lineage tests: tiny checkpoints of "runs" that share (or do not share) an origin.

Written without torch (numpy + a minimal safetensors writer) so the torch-free
path is what is tested; `torch_runs` trains real zoo models for a few steps.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_ST = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST[a.dtype.name], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    return path


def init_encoder(rng: np.random.Generator, layers: int = 4, width: int = 16) -> dict[str, np.ndarray]:
    """A transformer-ish encoder: linear weights (random), biases (zero), norm weights (ones)."""
    sd = {"encoder.embed.weight": rng.normal(0, 0.02, (32, width)).astype(np.float32)}
    for i in range(layers):
        p = f"encoder.layers.{i}"
        sd[f"{p}.attn.weight"] = rng.uniform(-1, 1, (width, width)).astype(np.float32) / np.sqrt(width)
        sd[f"{p}.attn.bias"] = np.zeros(width, np.float32)
        sd[f"{p}.ff.weight"] = rng.uniform(-1, 1, (2 * width, width)).astype(np.float32) / np.sqrt(width)
        sd[f"{p}.ff.bias"] = np.zeros(2 * width, np.float32)
        sd[f"{p}.norm.weight"] = np.ones(width, np.float32)
        sd[f"{p}.norm.bias"] = np.zeros(width, np.float32)
    return sd


def init_head(rng: np.random.Generator, name: str = "head", width: int = 16, out: int = 10) -> dict[str, np.ndarray]:
    return {f"{name}.weight": (rng.uniform(-1, 1, (out, width)) / np.sqrt(width)).astype(np.float32),
            f"{name}.bias": np.zeros(out, np.float32),
            f"{name}.num_batches_tracked": np.array(0, dtype=np.int64)}


def train_steps(sd: dict[str, np.ndarray], rng: np.random.Generator, scale: float = 0.03,
                frozen: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A stand-in for a few optimiser steps: every float tensor moves by a few percent of its scale."""
    out = {}
    for name, a in sd.items():
        if any(name.startswith(f) for f in frozen) or a.dtype.kind != "f":
            out[name] = a.copy() if a.dtype.kind == "f" else a + 7
            continue
        ref = float(np.abs(a).mean()) or 0.02
        out[name] = (a + rng.normal(0, scale * ref, a.shape)).astype(a.dtype)
    return out


