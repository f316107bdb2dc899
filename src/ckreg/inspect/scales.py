"""Scale importance of the scale-aware families, from the weights alone (no torch).

The scale-aware GRU cell splits its input into three chunks, one per
convolution tower (kernel 3, 5, 7), and gives each chunk its own input
matrices `W_{z,r,h}{3,5,7}` (spec, "Scale-aware cell"). How large those
matrices are is a first, data-free look at which scale a model relies on:
per gate, the Frobenius norm ||W_gk||_F; per scale k, the sum over the gates
z, r, h (the design notes' "Scale 3: 6.52, Scale 5: 6.55, Scale 7: 6.60" figure).

Only those tensors' bytes are read, streamed through
`ReadResult.iter_tensor_bytes` and decoded with the standard library
(float32, float64, float16, bfloat16), so `ckreg inspect` stays torch-free
and its cost grows with these few matrices only, not the whole checkpoint.

The second cell of the two-cell families (`gru2`) receives gru1's output as
each of its three chunks (spec), so its chunks are not convolution scales;
its norms are reported, labelled as such, and the headline figure is the
first cell's.
"""

from __future__ import annotations

import array
import math
import re
import struct
import sys
from typing import Iterable, Iterator

from ckreg.errors import ReadError
from ckreg.inspect.model import ScaleCell, ScaleImportance
from ckreg.readers.model import ReadResult, TensorRecord

SCALE_FAMILIES = ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware")
GATES = ("z", "r", "h")
SCALES = ("3", "5", "7")
METHOD = "Frobenius norm of W_{gate}{scale} per gate; per scale, the sum over gates z, r, h"

_KEY = re.compile(r"^(?P<cell>.+)\.cell\.W_(?P<gate>[zrh])(?P<scale>[357])\.weight$")
_FORMATS = {"float32": ("f", 4), "float64": ("d", 8)}


def applies(family: str, ambiguous_between: Iterable[str] = ()) -> bool:
    """True for a scale-aware family, or a tie only between scale-aware families (ScaleAware vs ScaleHard)."""
    if family in SCALE_FAMILIES:
        return True
    tied = list(ambiguous_between)
    return family == "ambiguous" and bool(tied) and all(f in SCALE_FAMILIES for f in tied)


def _squares(chunks: Iterator[bytes], dtype: str, numel: int, where: str) -> float:
    """Sum of squares of `numel` little-endian elements streamed in arbitrary chunks."""
    if dtype in _FORMATS:
        code, size = _FORMATS[dtype]
    elif dtype in ("float16", "bfloat16"):
        code, size = dtype, 2
    else:
        raise ReadError(f"{where}: cannot decode dtype {dtype} (float32/64, float16, bfloat16 only)")
    total = 0.0
    seen = 0
    rest = b""
    for chunk in chunks:
        buf = rest + bytes(chunk)
        cut = len(buf) - len(buf) % size
        rest = buf[cut:]
        body = buf[:cut]
        if not body:
            continue
        seen += len(body) // size
        if code == "float16":
            values: Iterable[float] = (v[0] for v in struct.iter_unpack("<e", body))
        elif code == "bfloat16":
            halves = array.array("H")
            halves.frombytes(body)
            if sys.byteorder == "big":
                halves.byteswap()
            widened = array.array("I", (h << 16 for h in halves))
            values = array.array("f", widened.tobytes())
        else:
            values = array.array(code)
            values.frombytes(body)
            if sys.byteorder == "big":
                values.byteswap()
        total += math.fsum(v * v for v in values)
    if rest or seen != numel:
        raise ReadError(f"{where}: read {seen} elements, expected {numel}")
    if not math.isfinite(total):
        raise ReadError(f"{where}: weights are not finite")
    return total


def frobenius(result: ReadResult, record: TensorRecord) -> float:
    """||W||_F of one tensor, from its streamed bytes."""
    where = f"{result.path}: {record.name}"
    return math.sqrt(_squares(result.iter_tensor_bytes(record), record.dtype, record.numel, where))


def scale_importance(result: ReadResult) -> ScaleImportance | None:
    """Per-cell, per-gate, per-scale weight norms, or None when the file has no scale-aware cell.

    Raises ReadError (or NotImplementedError for a reader without tensor
    bytes) when the bytes cannot be read or decoded.
    """
    found: dict[str, dict[tuple[str, str], TensorRecord]] = {}
    for name, rec in result.tensors.items():
        m = _KEY.match(name)
        if m:
            found.setdefault(m["cell"], {})[(m["gate"], m["scale"])] = rec
    cells = []
    for i, cell in enumerate(sorted(found)):
        recs = found[cell]
        missing = [f"W_{g}{k}" for g in GATES for k in SCALES if (g, k) not in recs]
        if missing:
            raise ReadError(f"{result.path}: {cell}.cell lacks {', '.join(missing)}")
        gates = {g: {k: round(frobenius(result, recs[(g, k)]), 6) for k in SCALES} for g in GATES}
        per_scale = {k: round(sum(gates[g][k] for g in GATES), 6) for k in SCALES}
        total = sum(per_scale.values())
        share = {k: round(per_scale[k] / total, 6) if total else 0.0 for k in SCALES}
        first = i == 0
        cells.append(ScaleCell(
            cell=cell,
            input="convolution towers (kernel 3, 5, 7)" if first else "previous cell's output, repeated",
            gates=gates, per_scale=per_scale, share=share))
    if not cells:
        return None
    return ScaleImportance(method=METHOD, cells=cells)


__all__ = ["SCALE_FAMILIES", "applies", "scale_importance", "frobenius", "METHOD"]
