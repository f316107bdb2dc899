"""Stream exactly one tensor's bytes (for `weights_sha256`), never a whole storage in memory.

A tensor is `numel` elements of its storage, at `storage_offset + sum(i_k * stride_k)`.
Contiguous tensors are one byte range (fast path). Otherwise the innermost
contiguous run is found and runs are gathered in C order, from one in-memory
copy of the touched span when that span is small, else run by run.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterator

from ckreg.errors import ReadError

CHUNK = 1 << 20
SPAN_IN_MEMORY = 64 << 20

# (start_byte, length) -> chunks
RangeReader = Callable[[int, int], Iterator[bytes]]


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    acc = 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...] | None) -> bool:
    if stride is None:
        return True
    if len(stride) != len(shape):
        return False
    expected = 1
    for s, st in zip(reversed(shape), reversed(stride)):
        if s != 1 and st != expected:
            return False
        expected *= s
    return True


def iter_tensor(read_range: RangeReader, itemsize: int, shape: tuple[int, ...],
                stride: tuple[int, ...] | None, offset: int, where: str) -> Iterator[bytes]:
    numel = math.prod(shape) if shape else 1
    if numel == 0:
        return
    if is_contiguous(shape, stride):
        yield from read_range(offset * itemsize, numel * itemsize)
        return
    assert stride is not None
    if any(st < 0 for st in stride) or len(stride) != len(shape):
        raise ReadError(f"{where}: tensor has negative or mismatched strides {stride}")
    # innermost dims that form one contiguous run
    k = len(shape)
    expected = 1
    while k > 0 and (shape[k - 1] == 1 or stride[k - 1] == expected):
        expected *= shape[k - 1]
        k -= 1
    run = math.prod(shape[k:]) if k < len(shape) else 1
    run_bytes = run * itemsize
    outer = [range(s) for s in shape[:k]]
    outer_strides = stride[:k]
    last = offset + sum((s - 1) * st for s, st in zip(shape, stride))
    span = (last - offset + 1) * itemsize
    out: list[bytes] = []
    size = 0
    if span <= SPAN_IN_MEMORY:
        buf = memoryview(b"".join(read_range(offset * itemsize, span)))
        if len(buf) < span:
            raise ReadError(f"{where}: storage ends before the tensor does")
        for idx in itertools.product(*outer):
            base = sum(i * st for i, st in zip(idx, outer_strides)) * itemsize
            out.append(buf[base:base + run_bytes].tobytes())
            size += run_bytes
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    else:
        for idx in itertools.product(*outer):
            base = (offset + sum(i * st for i, st in zip(idx, outer_strides))) * itemsize
            for piece in read_range(base, run_bytes):
                out.append(piece)
                size += len(piece)
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    if out:
        yield b"".join(out)
