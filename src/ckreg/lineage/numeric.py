"""Float tensor bytes to numbers, for distances: numpy, never torch.

Why numpy (an optional dependency, in the `lineage` and `train` extras): a
distance needs every element of two checkpoints decoded and subtracted; in
pure Python (`struct.unpack`) that is about a hundred times slower than
numpy's vectorised decode, i.e. minutes instead of seconds for a 100 MB
model. Byte-identical edges (identical, transplanted) need only hashlib and
work without it. bfloat16 has no numpy dtype: its 16 bits are the high half
of a float32, so they are widened by shifting into a uint32 and viewed as
float32, exactly.
"""

from __future__ import annotations

from typing import Any

from ckreg.errors import ReadError

_NP_CODES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}


def decode(np: Any, block: bytes, dtype: str):
    """Little-endian tensor bytes of a float dtype as a float64 array."""
    if dtype == "bfloat16":
        bits = np.frombuffer(block, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32).astype(np.float64)
    code = _NP_CODES.get(dtype)
    if code is None:
        raise ReadError(f"no numeric decoding for dtype {dtype}")
    return np.frombuffer(block, dtype=code).astype(np.float64)


def diff_squares(np: Any, a_blocks, b_blocks, dtype: str) -> float:
    """Sum of squared differences of two equally long streams of whole-element blocks."""
    total = 0.0
    sentinel = object()
    a_iter, b_iter = iter(a_blocks), iter(b_blocks)
    while True:
        a = next(a_iter, sentinel)
        b = next(b_iter, sentinel)
        if a is sentinel or b is sentinel:
            if a is not b:
                raise ReadError("tensor streams differ in length")
            return total
        if len(a) != len(b):
            raise ReadError("tensor blocks differ in length")
        d = decode(np, a, dtype) - decode(np, b, dtype)
        total += float(np.dot(d, d))
