"""`.npy` arrays (alone or inside `.npz` zips): numeric ones hold no code; object arrays hold a pickle.

`numpy.load(allow_pickle=True)` unpickles an object array's data, so its globals are
judged like any other pickle. The header is a Python literal, read with `ast.literal_eval`
(no code runs). Standard library only.
"""

from __future__ import annotations

import ast
import struct
from typing import Any

from ckreg.readers.pickle_vm import numpy_dtype_info

MAGIC = b"\x93NUMPY"


class NpyHeader:
    __slots__ = ("descr", "shape", "fortran", "data_offset", "error")

    def __init__(self) -> None:
        self.descr: Any = None
        self.shape: Any = None
        self.fortran = False
        self.data_offset = 0
        self.error: str | None = None

    @property
    def has_object(self) -> bool | None:
        """True for object arrays, False for plain data, None when the dtype is not understood."""
        return _has_object(self.descr)


def _has_object(descr: Any) -> bool | None:
    if isinstance(descr, str):
        info = numpy_dtype_info(descr)
        return None if info is None else info[0] == "O"
    if isinstance(descr, list):
        seen = False
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                return None
            sub = _has_object(field[1])
            if sub is None or sub:
                return sub
            seen = True
        return False if seen else None
    return None


def parse_header(data: bytes) -> NpyHeader:
    h = NpyHeader()
    if data[:6] != MAGIC or len(data) < 10:
        h.error = "not an .npy file"
        return h
    major = data[6]
    if major == 1:
        (n,) = struct.unpack_from("<H", data, 8)
        start = 10
    elif major in (2, 3) and len(data) >= 12:
        (n,) = struct.unpack_from("<I", data, 8)
        start = 12
    else:
        h.error = f".npy format version {major} is not known"
        return h
    raw = data[start:start + n]
    if len(raw) < n:
        h.error = ".npy header truncated"
        return h
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        d = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        h.error = f".npy header is not a literal ({type(exc).__name__})"
        return h
    if not isinstance(d, dict) or "descr" not in d:
        h.error = ".npy header has no 'descr'"
        return h
    h.descr, h.shape, h.fortran = d.get("descr"), d.get("shape"), bool(d.get("fortran_order"))
    h.data_offset = start + n
    return h
