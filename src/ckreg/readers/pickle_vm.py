"""A symbolic pickle machine: it reads every opcode and calls nothing (issue #2).

`pickle.load` resolves GLOBALs by importing modules and runs REDUCE/BUILD by
calling whatever the stream names; that is exactly what a malicious checkpoint
abuses. This machine simulates the same stack, MARK stack and memo as
CPython's `pickle._Unpickler` (protocols 0-5, FRAME, MEMOIZE, STACK_GLOBAL,
PERSID/BINPERSID, EXT1/2/4), but:

- GLOBAL / STACK_GLOBAL / INST push an inert `Global(module, name)`;
- REDUCE / NEWOBJ / NEWOBJ_EX / INST / OBJ push an inert `Call`, BUILD records
  the state on it (`Call.state`);
- a small table of *recognised* reconstructors (`collections.OrderedDict`,
  `torch._utils._rebuild_tensor_v2`, numpy's `_reconstruct`/`scalar`/`dtype`,
  ...) is interpreted symbolically into plain values or records
  (`TensorRef`, `NumpyArray`, ...). The table never calls the named object.

Anything a real unpickler would reject (unknown opcode, stack underflow, memo
miss, FRAME mismatch, absurd lengths, truncation) stops the run with
`PickleRun.error` set: "not clean" (the scanners' bug trackers show that a
scanner which tolerates what the loader rejects, or the reverse, is bypassable).
"""

from __future__ import annotations

import codecs
import math
import struct
from typing import Any, Callable

# --------------------------------------------------------------------------- records


class Global:
    """A reference to `module.name` (never imported)."""

    __slots__ = ("module", "name", "pos")

    def __init__(self, module: str, name: str, pos: int = -1):
        self.module, self.name, self.pos = module, name, pos

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"Global({self.full})"


class Call:
    """`func(*args, **kwargs)` as the stream asks for it, never performed.

    `kind` is the opcode family (reduce, newobj, newobj_ex, inst, obj);
    `state` is what BUILD would pass to `__setstate__`; `items`/`setitems`
    collect APPEND(S)/SETITEM(S) applied to the (unknown) result.
    """

    __slots__ = ("func", "args", "kind", "kwargs", "state", "items", "setitems", "pos")

    def __init__(self, func: Any, args: Any, kind: str = "reduce", kwargs: Any = None, state: Any = None,
                 pos: int = -1):
        self.func, self.args, self.kind, self.kwargs, self.state, self.pos = func, args, kind, kwargs, state, pos
        self.items: list = []
        self.setitems: list = []

    @property
    def func_name(self) -> str:
        return self.func.full if isinstance(self.func, Global) else type(self.func).__name__

    def __repr__(self) -> str:
        return f"Call({self.func_name}, ...)"


class PersistentRef:
    """A persistent id the stream asked `persistent_load` to resolve."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any):
        self.pid = pid


class ExtRef:
    """EXT1/2/4: an extension-registry code (resolves to a global through copyreg)."""

    __slots__ = ("code",)

    def __init__(self, code: int):
        self.code = code


class Unhashable:
    """A dict key or set member that is a list/dict/set (kept, never hashed)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"Unhashable({type(self.value).__name__})"


class StorageRec:
    """A torch storage named by a persistent id (bytes not read)."""

    __slots__ = ("dtype", "key", "location", "numel", "type_name", "view_offset", "view_numel")

    def __init__(self, dtype: str, key: str, location: str = "cpu", numel: int | None = None, type_name: str = "",
                 view_offset: int = 0, view_numel: int | None = None):
        self.dtype, self.key, self.location, self.numel = dtype, key, location, numel
        self.type_name, self.view_offset, self.view_numel = type_name, view_offset, view_numel  # legacy views

    def __repr__(self) -> str:
        return f"StorageRec({self.key!r}, {self.dtype}, numel={self.numel})"


class TensorRef:
    """What `torch._utils._rebuild_tensor*` would build, described, not built."""

    __slots__ = ("storage", "storage_offset", "shape", "stride", "requires_grad", "is_parameter", "rebuild")

    def __init__(self, storage: Any, storage_offset: int, shape: tuple, stride: tuple | None,
                 requires_grad: bool = False, is_parameter: bool = False, rebuild: str = ""):
        self.storage, self.storage_offset, self.shape, self.stride = storage, storage_offset, shape, stride
        self.requires_grad, self.is_parameter, self.rebuild = requires_grad, is_parameter, rebuild

    @property
    def dtype(self) -> str:
        return self.storage.dtype if isinstance(self.storage, StorageRec) else "unknown"

    def __repr__(self) -> str:
        return f"TensorRef({self.dtype}, {list(self.shape)})"


class NumpyDtype:
    """numpy.dtype(spec) plus the byte order (and, for flexible kinds, the size) BUILD gives it.

    `kind`/`itemsize` follow numpy's own parsing of the spec (`numpy_dtype_info`):
    'float64', 'f8', '<f8' and 'd' are all 8 bytes. None means "not understood": a reader
    that must skip this many bytes refuses instead of guessing.
    """

    __slots__ = ("spec", "byteorder", "structured", "state_elsize")

    def __init__(self, spec: str, byteorder: str = "=", structured: bool = False):
        self.spec, self.byteorder, self.structured = spec, byteorder, structured
        self.state_elsize: int | None = None

    @property
    def info(self) -> tuple[str, int] | None:
        got = numpy_dtype_info(self.spec)
        if got is None or self.structured:
            return None
        kind, size = got
        if kind in _FLEXIBLE_KINDS and self.state_elsize is not None and self.state_elsize >= 0 \
                and self.state_elsize != size:
            return None  # numpy lets BUILD resize flexible dtypes; refuse rather than model it
        return got

    @property
    def kind(self) -> str:
        got = self.info
        return got[0] if got else ""

    @property
    def itemsize(self) -> int | None:
        got = self.info
        return got[1] if got else None

    @property
    def name(self) -> str:
        names = {"f": "float", "i": "int", "u": "uint", "c": "complex", "b": "bool"}
        size = self.itemsize
        if self.kind == "b":
            return "bool"
        if self.kind in names and size:
            bits = size * 8
            return f"{names[self.kind]}{bits}"
        return self.spec


class NumpyArray:
    """numpy's `_reconstruct(ndarray, (0,), b'b')` + BUILD state, decoded lazily."""

    __slots__ = ("cls", "shape", "dtype", "fortran", "raw", "built")

    def __init__(self, cls: Any = None, shape: tuple = (), dtype: Any = None, fortran: bool = False, raw: Any = None,
                 built: bool = False):
        self.cls, self.shape, self.dtype, self.fortran, self.raw, self.built = cls, shape, dtype, fortran, raw, built

    def values(self, limit: int = 1 << 20) -> list | None:
        """Flat list of the elements (C order as stored), or None when not decodable cheaply."""
        if not self.built or not isinstance(self.dtype, NumpyDtype):
            return None
        if isinstance(self.raw, list):
            return list(self.raw)
        if not isinstance(self.raw, (bytes, bytearray)) or len(self.raw) > limit:
            return None
        return decode_numbers(bytes(self.raw), self.dtype)

    def tolist(self, limit: int = 1 << 20) -> Any:
        """Nested lists following `shape` (as numpy's tolist), or None."""
        flat = self.values(limit)
        if flat is None:
            return None
        shape = tuple(self.shape)
        if not shape:
            return flat[0] if flat else None
        if math.prod(shape) != len(flat):
            return None
        if self.fortran and len(shape) > 1:
            return None

        def nest(items: list, dims: tuple) -> list:
            if len(dims) == 1:
                return items
            step = math.prod(dims[1:])
            return [nest(items[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]

        return nest(flat, shape)


class NumpyScalar:
    """numpy's `scalar(dtype, raw_bytes)`."""

    __slots__ = ("dtype", "raw")

    def __init__(self, dtype: Any, raw: Any):
        self.dtype, self.raw = dtype, raw

    @property
    def value(self) -> Any:
        if isinstance(self.dtype, NumpyDtype) and isinstance(self.raw, (bytes, bytearray)):
            vals = decode_numbers(bytes(self.raw), self.dtype)
            if vals and len(vals) == 1:
                return vals[0]
        return None


_FLEXIBLE_KINDS = frozenset("SUV")
# numpy type names and one-letter codes whose size is the same on every platform numpy 2 supports
# ('l', 'long', 'g', 'p' ... differ between platforms: not understood, so a reader refuses them).
_NP_NAMES: dict[str, tuple[str, int]] = {
    **{f"float{b}": ("f", b // 8) for b in (16, 32, 64)},
    **{f"int{b}": ("i", b // 8) for b in (8, 16, 32, 64)},
    **{f"uint{b}": ("u", b // 8) for b in (8, 16, 32, 64)},
    "complex64": ("c", 8), "complex128": ("c", 16), "complex": ("c", 16),
    "bool": ("b", 1), "bool_": ("b", 1), "float": ("f", 8), "double": ("f", 8), "single": ("f", 4),
    "half": ("f", 2), "csingle": ("c", 8), "cdouble": ("c", 16), "byte": ("i", 1), "ubyte": ("u", 1),
    "short": ("i", 2), "ushort": ("u", 2), "intc": ("i", 4), "uintc": ("u", 4), "longlong": ("i", 8),
    "ulonglong": ("u", 8), "int": ("i", 8), "int_": ("i", 8), "uint": ("u", 8),
    "object": ("O", 8), "object_": ("O", 8), "datetime64": ("M", 8), "timedelta64": ("m", 8),
}
_NP_CHARS: dict[str, tuple[str, int]] = {
    "b": ("i", 1), "B": ("u", 1), "h": ("i", 2), "H": ("u", 2), "i": ("i", 4), "I": ("u", 4),
    "q": ("i", 8), "Q": ("u", 8), "e": ("f", 2), "f": ("f", 4), "d": ("f", 8), "F": ("c", 8),
    "D": ("c", 16), "?": ("b", 1), "O": ("O", 8), "c": ("S", 1), "M": ("M", 8), "m": ("m", 8),
}
_NP_SIZED = {"i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 16), "c": (8, 16, 32), "b": (1,), "O": (8,),
             "M": (8,), "m": (8,)}


def numpy_dtype_info(spec: Any) -> tuple[str, int] | None:
    """(kind, itemsize) numpy gives `numpy.dtype(spec)` for a simple spec, or None when not understood.

    Follows numpy's parser for the spellings real files use: a byte-order mark ('<', '>', '=',
    '|') then a kind letter and a byte count ('f8', 'U10' = 40 bytes, 'S5', 'M8[ns]'), a
    one-letter code ('d'), or a type name without byte order ('float64', 'int32', 'bool').
    Anything else (structured specs, platform-dependent names) is None: fail closed.
    """
    if not isinstance(spec, str) or not spec or not spec.isascii():
        return None
    if spec in _NP_NAMES:
        return _NP_NAMES[spec]
    for base in ("datetime64", "timedelta64"):
        if spec.startswith(base + "[") and spec.endswith("]") and spec[len(base) + 1:-1].isalpha():
            return _NP_NAMES[base]
    body = spec[1:] if spec[0] in "<>=|" else spec
    if len(body) >= 2 and body[0] in "Mm" and body[1:2] == "8":
        unit = body[2:]
        if unit == "" or (unit.startswith("[") and unit.endswith("]") and unit[1:-1].isalpha()):
            return (body[0], 8)
        return None
    if len(body) == 1 and body in _NP_CHARS:
        return _NP_CHARS[body]
    kind, digits = body[:1], body[1:]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    n = int(digits)
    if kind in _NP_SIZED:
        return (kind, n) if n in _NP_SIZED[kind] else None
    if kind in ("S", "a"):
        return ("S", n) if n > 0 else None
    if kind == "U":
        return ("U", 4 * n) if n > 0 else None
    if kind == "V":
        return ("V", n) if n > 0 else None
    return None


_STRUCT_CODES = {
    ("f", 2): "e", ("f", 4): "f", ("f", 8): "d",
    ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
    ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
    ("b", 1): "?",
}


def decode_numbers(raw: bytes, dtype: NumpyDtype) -> list | None:
    """Decode numeric numpy bytes with `struct` (no numpy needed)."""
    size = dtype.itemsize
    kind = dtype.kind
    order = {"<": "<", ">": ">", "|": "<", "=": "<"}.get(dtype.byteorder, "<")
    if dtype.spec and dtype.spec[0] in "<>|=":
        order = {"<": "<", ">": ">", "|": "<", "=": "<"}[dtype.spec[0]]
    if not size or len(raw) % size:
        return None
    n = len(raw) // size
    if kind == "c" and size in (8, 16):
        code = "f" if size == 8 else "d"
        parts = struct.unpack(f"{order}{2 * n}{code}", raw)
        return [complex(parts[2 * i], parts[2 * i + 1]) for i in range(n)]
    code = _STRUCT_CODES.get((kind, size))
    if code is None:
        return None
    return list(struct.unpack(f"{order}{n}{code}", raw))


# --------------------------------------------------------------------------- the run


class Malformed(Exception):
    """Internal: the stream is not a clean pickle.

    `recoverable`: the opcode boundaries are still known, so the rest of the stream can be
    scanned for globals (`_scan_rest`); False for an unknown opcode or protocol, where the
    real loader stops and no byte after it can be framed as an opcode.
    """

    def __init__(self, message: str, pos: int, recoverable: bool = True):
        super().__init__(message)
        self.pos = pos
        self.recoverable = recoverable


class Truncated(Malformed):
    """Internal: the stream ended before STOP."""

    def __init__(self, message: str, pos: int):
        super().__init__(message, pos, recoverable=False)


class PickleRun:
    """The result of one symbolic run (one pickle, from PROTO/first opcode to STOP)."""

    __slots__ = ("value", "start", "end", "proto", "globals", "ext_codes", "error", "error_pos", "truncated",
                 "warnings", "ops", "partial")

    def __init__(self, start: int = 0):
        self.value: Any = None
        self.start = start
        self.end = 0                      # offset after STOP (or where it failed)
        self.proto = 0
        self.globals: list[Global] = []
        self.ext_codes: list[int] = []
        self.error: str | None = None
        self.error_pos: int | None = None
        self.truncated = False
        self.warnings: list[str] = []
        self.ops = 0
        self.partial: Any = None          # bottom of the stack when the run failed

    @property
    def clean(self) -> bool:
        return self.error is None


# (module, name) -> interpreter(args) -> value or NotImplemented; never calls the named object
Reducer = Callable[[tuple], Any]

def canonical(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names (`__builtin__.long` -> `builtins.int`) exactly as pickle's `fix_imports` does.

    Uses the stdlib's own tables (`_compat_pickle`, pure data), so a name is judged as the
    loader would resolve it.
    """
    import _compat_pickle

    key = (module, name)
    if key in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[key]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


_C_SPACE = frozenset(b" \t\n\v\f\r")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _strtol(s: bytes) -> tuple[int | None, int]:
    """C `strtol(s, &end, 0)` on an LP64 platform: (value, end index); value None on overflow."""
    n, i = len(s), 0
    while i < n and s[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and s[i] in b"+-":
        neg = s[i] == 0x2D
        i += 1
    base, digits = 10, b"0123456789"
    if i < n and s[i] == 0x30:
        if i + 2 < n and s[i + 1] in b"xX" and s[i + 2] in b"0123456789abcdefABCDEF":
            base, digits = 16, b"0123456789abcdefABCDEF"
            i += 2
        else:
            base, digits = 8, b"01234567"
    start = i
    while i < n and s[i] in digits:
        i += 1
    if i == start:
        return 0, 0            # no conversion: end = the start of the string
    value = int(s[start:i], base)
    value = -value if neg else value
    return (value if _LONG_MIN <= value <= _LONG_MAX else None), i


def _c_string_int(line: bytes) -> int | None:
    """`PyLong_FromString(s, NULL, 0)`: the C string (up to a NUL), Python's base-0 int rules."""
    try:
        return int(line.split(b"\0", 1)[0], 0)
    except ValueError:
        return None


def c_int_line(line: bytes) -> int | bool | None:
    """The INT opcode's argument as `_pickle.c:load_int` reads it (line includes its newline).

    strtol with base 0 ('I0x10' is 16, 'I010' is 8), falling back to Python's base-0 int
    ('I1_000', big values); exactly 'I00'/'I01' style 2-character lines are booleans.
    """
    if len(line) < 2:
        return None
    value, end = _strtol(line)
    if value is not None and end == len(line) - 1:
        if len(line) == 3 and value in (0, 1):
            return bool(value)
        return value
    return _c_string_int(line)


def c_long_line(line: bytes) -> int | None:
    """The LONG opcode's argument as `_pickle.c:load_long` reads it: one trailing 'L' dropped, base 0."""
    if len(line) < 2:
        return None
    if line[-2:-1] == b"L":
        line = line[:-2]
    return _c_string_int(line)


MAX_BYTES_DEFAULT = 64 << 20
# Memory budget: a 64 MiB stream of 1-byte EMPTY_DICT opcodes would otherwise allocate ~4 GB.
# Real checkpoints use a few thousand objects per MB of pickle (the archive's: ~300 per 13 KB).
MAX_OPS_DEFAULT = 20_000_000
MAX_OBJECTS_DEFAULT = 2_000_000
_ALLOCATING = frozenset(b"(}]\x8ftld\x91\x85\x86\x87R\x81\x92io")  # opcodes that create a container/record


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict, set, bytearray)):
        return Unhashable(value)
    try:
        hash(value)
    except TypeError:
        return Unhashable(value)
    return value


def _ensure_tuple(args: Any) -> tuple | None:
    if isinstance(args, tuple):
        return args
    if isinstance(args, list):
        return tuple(args)
    return None


class _VM:
    def __init__(self, data, start: int, persistent_load, reducers, build_hook, max_bytes: int,
                 max_ops: int = MAX_OPS_DEFAULT, max_objects: int = MAX_OBJECTS_DEFAULT):
        self.max_ops = max_ops
        self.max_objects = max_objects
        self.raw = data if isinstance(data, bytes) else bytes(data)
        self.data = memoryview(self.raw)
        self.n = len(self.data)
        self.pos = start
        self.start = start
        self.frame_end: int | None = None
        self.persistent_load = persistent_load
        self.reducers = reducers
        self.build_hook = build_hook
        self.max_bytes = max_bytes
        self.stack: list = []
        self.metastack: list = []
        self.memo: dict[int, Any] = {}
        self.run = PickleRun(start=start)

    # -- raw reads ----------------------------------------------------------------------
    # CPython's C unpickler (what pickle.load and torch.load run) treats FRAME only as a
    # read-ahead hint: it checks that the frame's bytes exist and never enforces its end.
    # So an opcode may straddle a frame end, frames may nest or be empty, STOP may come
    # mid-frame: all accepted there, so all followed here (recorded as warnings, since
    # pickle.dump never writes them). Text arguments have no length limit there either.
    def read(self, k: int) -> memoryview:
        pos = self.pos
        if k < 0:
            raise Malformed("negative length", pos)
        end = pos + k
        if end > self.n:
            raise Truncated("pickle data truncated", pos)
        if self.frame_end is not None and end > self.frame_end:
            self.note("opcode data crosses the end of a FRAME")
            self.frame_end = None
        self.pos = end
        return self.data[pos:end]

    def readline(self) -> bytes:
        i = self.pos
        j = self.raw.find(b"\n", i)
        if j < 0:
            raise Truncated("pickle data truncated (no newline)", i)
        if self.frame_end is not None and j >= self.frame_end:
            self.note("text argument crosses the end of a FRAME")
            self.frame_end = None
        self.pos = j + 1
        return self.raw[i:j + 1]

    def note(self, warning: str) -> None:
        if warning not in self.run.warnings:
            self.run.warnings.append(warning)

    def length(self, k: int, what: str) -> int:
        if k > self.max_bytes:
            raise Malformed(f"{what} claims {k} bytes (over the {self.max_bytes}-byte cap)", self.pos,
                            recoverable=False)
        if k > self.n - self.pos:
            raise Truncated(f"{what} claims {k} bytes but only {self.n - self.pos} remain", self.pos)
        return k

    # -- stack ------------------------------------------------------------------------
    def pop(self) -> Any:
        if not self.stack:
            raise Malformed("stack underflow", self.pos)
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise Malformed("stack underflow", self.pos)
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            raise Malformed("MARK stack underflow (no MARK to pop to)", self.pos)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    # -- semantics --------------------------------------------------------------------
    def global_(self, module: str, name: str, pos: int) -> Global:
        g = Global(module, name, pos)
        self.run.globals.append(g)
        return g

    def reduce(self, func: Any, args: Any, kind: str, kwargs: Any = None, pos: int = -1) -> Any:
        if isinstance(func, Global):
            key = canonical(func.module, func.name)
            interp = self.reducers.get(key)
            targs = _ensure_tuple(args)
            if interp is not None and targs is not None and not kwargs:
                try:
                    value = interp(targs)
                except Exception:  # an interpreter must never crash the run; fall back to a record
                    value = NotImplemented
                if value is not NotImplemented:
                    return value
        return Call(func, args, kind=kind, kwargs=kwargs, pos=pos)

    def build(self, inst: Any, state: Any) -> None:
        if self.build_hook is not None and self.build_hook(self, inst, state):
            return
        if isinstance(inst, NumpyDtype):
            if isinstance(state, tuple) and len(state) >= 2 and isinstance(state[1], str):
                inst.byteorder = state[1]
                if len(state) >= 4 and state[3] is not None:
                    inst.structured = True
                if len(state) >= 6 and _is_int(state[5]):
                    inst.state_elsize = state[5]
            elif state is not None:
                inst.structured = True  # a state numpy would read some other way: not understood
            return
        if isinstance(inst, NumpyArray):
            if isinstance(state, tuple) and len(state) == 5:
                _, shape, dtype, fortran, raw = state
                if isinstance(shape, tuple):
                    inst.shape, inst.dtype, inst.fortran, inst.raw, inst.built = shape, dtype, bool(fortran), raw, True
                    return
            inst.raw, inst.built = state, False
            return
        if isinstance(inst, Call):
            if inst.state is None:
                inst.state = state
            else:  # a second BUILD (legal: __setstate__ called twice); keep both
                inst.state = (inst.state, state)
            return
        if isinstance(inst, TensorRef):
            return  # legacy tensors may carry BUILD state (hooks); nothing to describe
        # dict/list/other plain values: pickle would set attributes; nothing to record

    def setitem(self, target: Any, key: Any, value: Any) -> None:
        """SETITEM(S): `target[key] = value`, as the C unpickler calls `__setitem__` on non-dicts."""
        if isinstance(target, dict):
            target[_hashable(key)] = value
        elif isinstance(target, Call):
            target.setitems.append((key, value))
        elif isinstance(target, (list, bytearray)) and isinstance(key, int):
            try:
                target[key] = value
            except (IndexError, TypeError, ValueError) as exc:
                raise Malformed(f"SETITEM on a {type(target).__name__}: {exc}", self.pos) from None
            self.note(f"SETITEM on a {type(target).__name__}")
        else:
            raise Malformed(f"SETITEM on a {type(target).__name__}", self.pos)

    def extend(self, target: Any, items: list) -> None:
        """APPEND(S): the C unpickler calls `.append`/`.extend` on anything that has them."""
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Call):
            target.items.extend(items)
        elif isinstance(target, bytearray):
            try:
                target.extend(items)
            except (TypeError, ValueError) as exc:
                raise Malformed(f"APPEND on a bytearray: {exc}", self.pos) from None
            self.note("APPEND on a bytearray")
        else:
            raise Malformed(f"APPEND on a {type(target).__name__}", self.pos)

    def execute(self) -> PickleRun:
        run = self.run
        resume: int | None = None
        try:
            self._loop()
        except Malformed as exc:
            run.error = str(exc)
            run.error_pos = exc.pos
            run.truncated = isinstance(exc, Truncated)
            run.partial = self.metastack[0][0] if self.metastack and self.metastack[0] else (
                self.stack[0] if self.stack else None)
            resume = self.pos if exc.recoverable else None
        except (RecursionError, MemoryError, ValueError, OverflowError, UnicodeDecodeError, struct.error) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            run.error_pos = self.pos
            run.partial = self.stack[0] if self.stack else None
            resume = self.pos
        if resume is not None:
            # Keep recording globals past the oddity (issue: "name the payload where the VM
            # stops"): the rest of the stream is walked opcode by opcode, strings tracked.
            end, truncated = _scan_rest(self, resume)
            self.pos = max(self.pos, end)
            run.truncated = run.truncated or truncated
        run.end = self.pos
        return run

    def _loop(self) -> None:  # noqa: C901 - one branch per opcode, as in pickle.py
        run = self.run
        read = self.read
        push = None
        unpack = struct.unpack
        allocating = _ALLOCATING
        objects = 0
        max_ops, max_objects = self.max_ops, self.max_objects
        data, n = self.data, self.n
        while True:
            op_pos = self.pos
            if self.frame_end is not None and op_pos == self.frame_end:
                self.frame_end = None  # the frame ended exactly at an opcode boundary, as pickle writes it
            if op_pos >= n:
                raise Truncated("pickle data truncated (no STOP)", op_pos)
            b = data[op_pos]  # the opcode byte (inside the frame, if any: op_pos < frame_end here)
            self.pos = op_pos + 1
            run.ops += 1
            if b in allocating:
                objects += 1
                if objects > max_objects:
                    self.pos = op_pos  # the scan resumes at this opcode
                    raise Malformed(f"more than {max_objects} objects: modelled no further (memory budget); "
                                    f"the rest is scanned for globals", op_pos)
            if run.ops > max_ops:
                self.pos = op_pos
                raise Malformed(f"more than {max_ops} opcodes: modelled no further; the rest is scanned for "
                                f"globals", op_pos)
            stack = self.stack
            push = stack.append
            # ---- the opcodes torch.save writes most, first (one comparison each on the way down;
            # the branches are exclusive, so their order changes nothing else)
            if b == 0x71:  # BINPUT 'q'
                self.memo[read(1)[0]] = self.top()
            elif b == 0x68:  # BINGET 'h'
                idx = read(1)[0]
                try:
                    push(self.memo[idx])
                except KeyError:
                    raise Malformed(f"memo miss: index {idx} was never stored", op_pos) from None
            elif b == 0x4B:  # BININT1 'K'
                push(read(1)[0])
            elif b == 0x58:  # BINUNICODE 'X'
                (k,) = unpack("<I", read(4))
                push(str(read(self.length(k, "BINUNICODE")), "utf-8", "surrogatepass"))
            elif b == 0x28:  # MARK '('
                self.metastack.append(stack)
                self.stack = []
            elif b == 0x74:  # TUPLE 't'
                items = self.pop_mark()
                self.stack.append(tuple(items))
            elif b == 0x52:  # REDUCE 'R'
                args = self.pop()
                func = self.pop()
                self.stack.append(self.reduce(func, args, "reduce", pos=op_pos))
            elif b == 0x85:  # TUPLE1
                stack.append((self.pop(),))
            elif b == 0x29:  # EMPTY_TUPLE ')'
                push(())
            elif b == 0x89:  # NEWFALSE
                push(False)
            elif b == 0x51:  # BINPERSID 'Q'
                pid = self.pop()
                self.stack.append(self.persistent_load(pid))
            elif b == 0x86:  # TUPLE2
                b2 = self.pop()
                a2 = self.pop()
                stack.append((a2, b2))
            elif b == 0x94:  # MEMOIZE
                self.memo[len(self.memo)] = self.top()
            elif b == 0x4D:  # BININT2 'M'
                push(unpack("<H", read(2))[0])
            elif b == 0x72:  # LONG_BINPUT 'r'
                (idx,) = unpack("<I", read(4))
                self.memo[idx] = self.top()
            elif b == 0x8C:  # SHORT_BINUNICODE
                push(str(read(read(1)[0]), "utf-8", "surrogatepass"))
            # ---- framing and protocol
            elif b == 0x80:  # PROTO
                proto = read(1)[0]
                if proto > 5:
                    raise Malformed(f"unsupported pickle protocol {proto}", op_pos, recoverable=False)
                run.proto = proto
            elif b == 0x95:  # FRAME
                if self.frame_end is not None and op_pos < self.frame_end:
                    self.note("FRAME begins before the previous frame ended")
                (size,) = unpack("<Q", read(8))
                self.length(size, "FRAME")
                if size == 0:
                    self.note("empty FRAME")
                self.frame_end = self.pos + size if size else None
            elif b == 0x2E:  # STOP '.'
                value = self.pop()
                if self.frame_end is not None and self.pos < self.frame_end:
                    self.note("STOP inside a FRAME that has unread bytes")
                self.frame_end = None
                if self.stack or self.metastack:
                    run.warnings.append(
                        f"{len(self.stack) + sum(len(s) for s in self.metastack)} object(s) and "
                        f"{len(self.metastack)} MARK(s) left on the stack at STOP")
                run.value = value
                return
            elif b == 0x30:  # POP '0'
                if stack:
                    stack.pop()
                else:
                    self.pop_mark()
            elif b == 0x31:  # POP_MARK '1'
                self.pop_mark()
            elif b == 0x32:  # DUP '2'
                push(self.top())
            # ---- memo
            elif b == 0x70:  # PUT 'p'
                line = self.readline()[:-1]
                try:
                    idx = int(line)
                except ValueError:
                    raise Malformed("PUT with a non-integer index", op_pos) from None
                if idx < 0:
                    raise Malformed("negative PUT index", op_pos)
                self.memo[idx] = self.top()
            elif b in (0x67, 0x6A):  # GET 'g', LONG_BINGET 'j'
                if b == 0x67:
                    try:
                        idx = int(self.readline()[:-1])
                    except ValueError:
                        raise Malformed("GET with a non-integer index", op_pos) from None
                else:
                    (idx,) = unpack("<I", read(4))
                try:
                    push(self.memo[idx])
                except KeyError:
                    raise Malformed(f"memo miss: index {idx} was never stored", op_pos) from None
            # ---- atoms
            elif b == 0x4E:  # NONE 'N'
                push(None)
            elif b == 0x88:  # NEWTRUE
                push(True)
            elif b == 0x49:  # INT 'I'
                value = c_int_line(self.readline())
                if value is None:
                    raise Malformed("INT with a non-integer value", op_pos)
                push(value)
            elif b == 0x4A:  # BININT 'J'
                push(unpack("<i", read(4))[0])
            elif b == 0x4C:  # LONG 'L'
                value = c_long_line(self.readline())
                if value is None:
                    raise Malformed("LONG with a non-integer value", op_pos)
                push(value)
            elif b == 0x8A:  # LONG1
                k = read(1)[0]
                push(int.from_bytes(read(k), "little", signed=True))
            elif b == 0x8B:  # LONG4
                (k,) = unpack("<i", read(4))
                if k < 0:
                    raise Malformed("LONG4 with a negative byte count", op_pos, recoverable=False)
                self.length(k, "LONG4")
                push(int.from_bytes(read(k), "little", signed=True))
            elif b == 0x46:  # FLOAT 'F'
                try:
                    push(float(self.readline()[:-1]))
                except ValueError:
                    raise Malformed("FLOAT with a non-float value", op_pos) from None
            elif b == 0x47:  # BINFLOAT 'G'
                push(unpack(">d", read(8))[0])
            # ---- strings and bytes
            elif b == 0x53:  # STRING 'S'
                line = self.readline()[:-1]
                if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
                    line = line[1:-1]
                else:
                    raise Malformed("STRING argument is not quoted", op_pos)
                raw = codecs.escape_decode(line)[0]
                push(raw.decode("ascii", "replace") if raw.isascii() else raw)
            elif b == 0x54:  # BINSTRING 'T'
                (k,) = unpack("<i", read(4))
                if k < 0:
                    raise Malformed("BINSTRING with a negative length", op_pos, recoverable=False)
                raw = bytes(read(self.length(k, "BINSTRING")))
                push(raw.decode("ascii") if raw.isascii() else raw)
            elif b == 0x55:  # SHORT_BINSTRING 'U'
                raw = bytes(read(read(1)[0]))
                push(raw.decode("ascii") if raw.isascii() else raw)
            elif b == 0x56:  # UNICODE 'V'
                push(str(self.readline()[:-1], "raw-unicode-escape"))
            elif b == 0x8D:  # BINUNICODE8
                (k,) = unpack("<Q", read(8))
                push(str(read(self.length(k, "BINUNICODE8")), "utf-8", "surrogatepass"))
            elif b == 0x42:  # BINBYTES 'B'
                (k,) = unpack("<I", read(4))
                push(bytes(read(self.length(k, "BINBYTES"))))
            elif b == 0x43:  # SHORT_BINBYTES 'C'
                push(bytes(read(read(1)[0])))
            elif b == 0x8E:  # BINBYTES8
                (k,) = unpack("<Q", read(8))
                push(bytes(read(self.length(k, "BINBYTES8"))))
            elif b == 0x96:  # BYTEARRAY8
                (k,) = unpack("<Q", read(8))
                push(bytearray(read(self.length(k, "BYTEARRAY8"))))
            elif b == 0x97:  # NEXT_BUFFER
                raise Malformed("NEXT_BUFFER: out-of-band buffer that a file cannot supply", op_pos)
            elif b == 0x98:  # READONLY_BUFFER
                self.top()
            elif b == 0x5D:  # EMPTY_LIST ']'
                push([])
            elif b == 0x7D:  # EMPTY_DICT '}'
                push({})
            elif b == 0x8F:  # EMPTY_SET
                push(set())
            elif b == 0x87:  # TUPLE3
                c3 = self.pop()
                b3 = self.pop()
                a3 = self.pop()
                stack.append((a3, b3, c3))
            elif b == 0x6C:  # LIST 'l'
                items = self.pop_mark()
                self.stack.append(list(items))
            elif b == 0x64:  # DICT 'd'
                items = self.pop_mark()
                if len(items) % 2:
                    raise Malformed("DICT with an odd number of items", op_pos)
                self.stack.append({_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)})
            elif b == 0x91:  # FROZENSET
                items = self.pop_mark()
                self.stack.append(frozenset(_hashable(x) for x in items))
            elif b == 0x61:  # APPEND 'a'
                value = self.pop()
                self.extend(self.top(), [value])
            elif b == 0x65:  # APPENDS 'e'
                items = self.pop_mark()
                self.extend(self.top(), items)
            elif b == 0x73:  # SETITEM 's'
                value = self.pop()
                key = self.pop()
                self.setitem(self.top(), key, value)
            elif b == 0x75:  # SETITEMS 'u'
                items = self.pop_mark()
                if len(items) % 2:
                    raise Malformed("SETITEMS with an odd number of items", op_pos)
                target = self.top()
                for i in range(0, len(items), 2):
                    self.setitem(target, items[i], items[i + 1])
            elif b == 0x90:  # ADDITEMS
                items = self.pop_mark()
                target = self.top()
                if isinstance(target, set):
                    target.update(_hashable(x) for x in items)
                elif isinstance(target, Call):
                    target.items.extend(items)
                else:
                    raise Malformed(f"ADDITEMS on a {type(target).__name__}", op_pos)
            # ---- globals and calls (inert)
            elif b == 0x63:  # GLOBAL 'c'
                module = self.readline()[:-1].decode("utf-8")
                name = self.readline()[:-1].decode("utf-8")
                push(self.global_(module, name, op_pos))
            elif b == 0x93:  # STACK_GLOBAL
                name = self.pop()
                module = self.pop()
                if isinstance(module, (bytes, bytearray)) or isinstance(name, (bytes, bytearray)):
                    # a loader with encoding='bytes' refuses this, one with 'latin1'/'utf-8' may not: judge it
                    self.note("STACK_GLOBAL with byte strings")
                    module, name = _text(module), _text(name)
                if not isinstance(module, str) or not isinstance(name, str):
                    raise Malformed("STACK_GLOBAL needs two strings", op_pos)
                self.stack.append(self.global_(module, name, op_pos))
            elif b in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                if b == 0x82:
                    code = read(1)[0]
                elif b == 0x83:
                    (code,) = unpack("<H", read(2))
                else:
                    (code,) = unpack("<i", read(4))
                if code <= 0:
                    raise Malformed(f"EXT code {code} is not positive", op_pos)
                run.ext_codes.append(code)
                push(ExtRef(code))
            elif b == 0x81:  # NEWOBJ
                args = self.pop()
                cls = self.pop()
                self.stack.append(self.reduce(cls, args, "newobj", pos=op_pos))
            elif b == 0x92:  # NEWOBJ_EX
                kwargs = self.pop()
                args = self.pop()
                cls = self.pop()
                self.stack.append(self.reduce(cls, args, "newobj_ex", kwargs=kwargs or None, pos=op_pos))
            elif b == 0x69:  # INST 'i'
                module = self.readline()[:-1].decode("utf-8")
                name = self.readline()[:-1].decode("utf-8")
                args = tuple(self.pop_mark())
                g = self.global_(module, name, op_pos)
                self.stack.append(self.reduce(g, args, "inst", pos=op_pos))
            elif b == 0x6F:  # OBJ 'o'
                items = self.pop_mark()
                if not items:
                    raise Malformed("OBJ without a class", op_pos)
                self.stack.append(self.reduce(items[0], tuple(items[1:]), "obj", pos=op_pos))
            elif b == 0x62:  # BUILD 'b'
                state = self.pop()
                self.build(self.top(), state)
            elif b == 0x50:  # PERSID 'P'
                pid = self.readline()[:-1].decode("ascii")
                push(self.persistent_load(pid))
            else:
                raise Malformed(f"unknown opcode 0x{b:02x}", op_pos, recoverable=False)


def _text(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(v).decode("latin-1")
    return v


_UNK = object()          # a value the scan does not model
_MARK = object()
_SCAN_STACK_MAX = 1 << 20


def _scan_rest(vm: "_VM", pos: int) -> tuple[int, bool]:
    """Walk the opcodes from `pos` to STOP without modelling objects; record every global.

    Used where the full machine stops on something it cannot model (a type oddity, the
    object budget): the real unpickler may go on and import what follows. Only strings are
    tracked (stack and memo), so STACK_GLOBAL names resolve; one that does not resolve is
    recorded as the global `<unresolved>.STACK_GLOBAL`, which no allowlist holds (fail closed).
    Stack effects come from the standard library's opcode table (`pickletools`).
    Returns (end offset, truncated).
    """
    import pickletools

    data, n, run = vm.raw, vm.n, vm.run
    stack: list = []
    for i, seg in enumerate(vm.metastack + [vm.stack]):
        if i:
            stack.append(_MARK)
        stack.extend(v if isinstance(v, str) else _UNK for v in seg[-_SCAN_STACK_MAX:])
    memo: dict[int, str] = {k: v for k, v in vm.memo.items() if isinstance(v, str)}
    memo_len = len(vm.memo)
    code2op = pickletools.code2op
    unpack = struct.unpack_from

    def pop_n(k: int) -> list:
        out = []
        for _ in range(k):
            if stack and stack[-1] is not _MARK:
                out.append(stack.pop())
            else:
                out.append(_UNK)
        return out[::-1]

    def pop_mark() -> None:
        while stack:
            if stack.pop() is _MARK:
                return

    while pos < n:
        op_pos = pos
        code = data[pos]
        op = code2op.get(chr(code))
        if op is None:
            return op_pos, False
        pos += 1
        arg: Any = None
        try:
            if code in (0x63, 0x69):          # GLOBAL, INST: two lines
                j = data.index(b"\n", pos)
                k = data.index(b"\n", j + 1)
                arg = (data[pos:j].decode("utf-8", "replace"), data[j + 1:k].decode("utf-8", "replace"))
                pos = k + 1
            elif op.arg is not None:
                width = op.arg.n
                if width >= 0:
                    raw = data[pos:pos + width]
                    if len(raw) < width:
                        return n, True
                    pos += width
                    arg = raw
                elif width == -1:             # up to newline
                    j = data.index(b"\n", pos)
                    arg = data[pos:j]
                    pos = j + 1
                else:
                    size_w = {-2: 1, -3: 4, -4: 4, -5: 8}[width]
                    if pos + size_w > n:
                        return n, True
                    fmt = {1: "<B", 4: "<i" if width == -3 else "<I", 8: "<Q"}[size_w]
                    (k,) = unpack(fmt, data, pos)
                    if k < 0:
                        return op_pos, False
                    pos += size_w
                    if pos + k > n:
                        return n, True
                    arg = data[pos:pos + k]
                    pos += k
        except ValueError:                    # no newline: truncated
            return n, True
        name = op.name
        if name == "STOP":
            return pos, False
        if name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            if stack:
                stack.pop()
        elif name == "DUP":
            stack.append(stack[-1] if stack and stack[-1] is not _MARK else _UNK)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if name == "MEMOIZE":
                idx = memo_len
            elif name == "PUT":
                idx = _c_string_int(arg + b"\n")
            else:
                idx = int.from_bytes(arg, "little")
            if idx is not None:
                top = stack[-1] if stack and stack[-1] is not _MARK else _UNK
                if isinstance(top, str):
                    memo[idx] = top
                else:
                    memo.pop(idx, None)
                memo_len += 1
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            idx = _c_string_int(arg + b"\n") if name == "GET" else int.from_bytes(arg, "little")
            stack.append(memo.get(idx, _UNK) if idx is not None else _UNK)
        elif name in ("GLOBAL", "INST"):
            run.globals.append(Global(arg[0], arg[1], op_pos))
            if name == "INST":
                pop_mark()
            stack.append(_UNK)
        elif name == "STACK_GLOBAL":
            mod, nm = (_text(v) for v in pop_n(2))
            if isinstance(mod, str) and isinstance(nm, str):
                run.globals.append(Global(mod, nm, op_pos))
            else:
                run.globals.append(Global("<unresolved>", "STACK_GLOBAL", op_pos))
            stack.append(_UNK)
        elif name in ("EXT1", "EXT2", "EXT4"):
            run.ext_codes.append(int.from_bytes(arg, "little", signed=(name == "EXT4")))
            stack.append(_UNK)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                      "SHORT_BINSTRING"):
            if name == "UNICODE":
                text = bytes(arg).decode("raw-unicode-escape", "replace")
            elif name == "STRING":
                raw = bytes(arg)
                try:
                    text = _text(codecs.escape_decode(raw[1:-1])[0]) if len(raw) >= 2 else _UNK
                except ValueError:
                    text = _UNK
            else:
                text = _text(arg) if name.endswith("BINSTRING") else bytes(arg).decode("utf-8", "replace")
            stack.append(text)
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            stack.append(bytes(arg))
        else:
            before, after = op.stack_before, op.stack_after
            if pickletools.markobject in before:
                k = before.index(pickletools.markobject)
                pop_mark()
                pop_n(k)
            else:
                pop_n(len(before))
            stack.extend(_UNK for _ in after)
        if len(stack) > _SCAN_STACK_MAX:
            del stack[: len(stack) // 2]
    return n, True


def _default_persistent_load(pid: Any) -> Any:
    return PersistentRef(pid)


def run_pickle(data, start: int = 0, *, persistent_load: Callable[[Any], Any] | None = None,
               reducers: dict | None = None, build_hook=None, max_bytes: int = MAX_BYTES_DEFAULT,
               max_ops: int = MAX_OPS_DEFAULT, max_objects: int = MAX_OBJECTS_DEFAULT) -> PickleRun:
    """Run one pickle from `start` to its STOP, symbolically. Never raises for bad data."""
    vm = _VM(data, start, persistent_load or _default_persistent_load,
             DEFAULT_REDUCERS if reducers is None else reducers, build_hook, max_bytes, max_ops, max_objects)
    return vm.execute()


def run_all(data, *, persistent_load=None, reducers=None, build_hook=None,
            max_bytes: int = MAX_BYTES_DEFAULT, max_pickles: int = 1 << 16) -> list[PickleRun]:
    """Run every pickle in `data` back to back (legacy torch files and hiding tricks)."""
    runs = []
    pos = 0
    n = len(data)
    while pos < n and len(runs) < max_pickles:
        run = run_pickle(data, pos, persistent_load=persistent_load, reducers=reducers,
                         build_hook=build_hook, max_bytes=max_bytes)
        runs.append(run)
        if not run.clean or run.end <= pos:
            break
        pos = run.end
    return runs


# --------------------------------------------------------------------------- interpreters

# torch storage class name -> dtype
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8", "TypedStorage": "uint8",
}

# torch dtype global name (torch.float32 ...) -> dtype
TORCH_DTYPE_NAMES = {
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
    "float8_e5m2fnuz", "uint16", "uint32", "uint64", "qint8", "quint8", "qint32",
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_tuple(x: Any) -> tuple | None:
    if isinstance(x, (tuple, list)) and all(_is_int(v) for v in x):
        return tuple(x)
    return None


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, how: str = "") -> Any:
    shape = _int_tuple(size)
    strides = _int_tuple(stride) if stride is not None else None
    if shape is None or not _is_int(offset) or (stride is not None and strides is None):
        return NotImplemented
    if isinstance(storage, StorageRec) and storage.view_offset:
        offset = offset + storage.view_offset
    return TensorRef(storage, offset, shape, strides, bool(requires_grad), False, how)


def _rebuild_tensor_v2(args: tuple) -> Any:
    if len(args) < 4:
        return NotImplemented
    storage, offset, size, stride = args[:4]
    rg = args[4] if len(args) > 4 else False
    return _tensor(storage, offset, size, stride, rg, "_rebuild_tensor_v2")


def _rebuild_tensor(args: tuple) -> Any:
    if len(args) != 4:
        return NotImplemented
    return _tensor(*args, how="_rebuild_tensor")


def _rebuild_tensor_v3(args: tuple) -> Any:
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None)
    if len(args) < 7:
        return NotImplemented
    t = _tensor(args[0], args[1], args[2], args[3], args[4], "_rebuild_tensor_v3")
    if isinstance(t, TensorRef) and isinstance(args[6], Global) and args[6].module == "torch" and isinstance(t.storage, StorageRec):
        t.storage.dtype = args[6].name
    return t


def _rebuild_parameter(args: tuple) -> Any:
    if len(args) < 2 or not isinstance(args[0], TensorRef):
        return NotImplemented
    t = args[0]
    return TensorRef(t.storage, t.storage_offset, t.shape, t.stride, bool(args[1]), True, t.rebuild)


def _rebuild_from_type_v2(args: tuple) -> Any:
    # (func, new_type, args, state): tensor subclasses / tensors with python attributes
    if len(args) != 4 or not isinstance(args[0], Global):
        return NotImplemented
    inner = DEFAULT_REDUCERS.get(canonical(args[0].module, args[0].name))
    inner_args = _ensure_tuple(args[2])
    if inner is None or inner_args is None or args[0].full == "torch._tensor._rebuild_from_type_v2":
        return NotImplemented
    value = inner(inner_args)
    if isinstance(value, TensorRef) and isinstance(args[1], Global) and args[1].full == "torch.nn.parameter.Parameter":
        value.is_parameter = True
    return value


def _ordered_dict(args: tuple) -> Any:
    if not args:
        return {}
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        out = {}
        for pair in args[0]:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return NotImplemented
            out[_hashable(pair[0])] = pair[1]
        return out
    if len(args) == 1 and isinstance(args[0], dict):
        return dict(args[0])
    return NotImplemented


def _defaultdict(args: tuple) -> Any:
    # collections.defaultdict(factory): a dict; the factory (a global, judged on its own) is never called
    if len(args) <= 1:
        return {}
    return NotImplemented


def _set(args: tuple) -> Any:
    if not args:
        return set()
    if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset)):
        return {_hashable(x) for x in args[0]}
    return NotImplemented


def _frozenset(args: tuple) -> Any:
    value = _set(args)
    return frozenset(value) if isinstance(value, set) else value


def _bytearray(args: tuple) -> Any:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    return NotImplemented


def _bytes(args: tuple) -> Any:
    # protocol 0/1 bytes: builtins.bytes() or bytes([ints])
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and all(_is_int(x) and 0 <= x < 256 for x in args[0]):
        return bytes(args[0])
    return NotImplemented


def _codecs_encode(args: tuple) -> Any:
    # protocol-2 bytes written by Python 3: _codecs.encode('\xab...', 'latin1')
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    return NotImplemented


def _complex(args: tuple) -> Any:
    if 1 <= len(args) <= 2 and all(isinstance(a, (int, float)) for a in args):
        return complex(*args)
    return NotImplemented


def _torch_size(args: tuple) -> Any:
    if not args:
        return ()
    if len(args) == 1 and _int_tuple(args[0]) is not None:
        return tuple(args[0])
    return NotImplemented


def _torch_device(args: tuple) -> Any:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    if len(args) == 2 and isinstance(args[0], str) and (args[1] is None or _is_int(args[1])):
        return args[0] if args[1] is None else f"{args[0]}:{args[1]}"
    return NotImplemented


def _np_dtype(args: tuple) -> Any:
    if args and isinstance(args[0], str):
        return NumpyDtype(args[0])
    return NotImplemented


def _np_reconstruct(args: tuple) -> Any:
    if len(args) == 3 and isinstance(args[0], Global) and args[0].name in ("ndarray", "matrix"):
        return NumpyArray(cls=args[0])
    return NotImplemented


def _np_scalar(args: tuple) -> Any:
    if len(args) in (1, 2) and isinstance(args[0], NumpyDtype):
        return NumpyScalar(args[0], args[1] if len(args) == 2 else None)
    return NotImplemented


def _np_frombuffer(args: tuple) -> Any:
    # protocol 5 arrays: numpy's _frombuffer(buffer, dtype, shape, order)
    if len(args) == 4 and isinstance(args[0], (bytes, bytearray)) and isinstance(args[1], NumpyDtype) \
            and isinstance(args[2], tuple):
        return NumpyArray(cls=None, shape=args[2], dtype=args[1], fortran=args[3] == "F", raw=args[0], built=True)
    return NotImplemented


def _path(args: tuple) -> Any:
    if all(isinstance(a, str) for a in args):
        if not args:
            return "."
        parts = [a for a in args if a]
        if not parts:
            return "."
        out = parts[0]
        for p in parts[1:]:
            out = p if p.startswith("/") else (out.rstrip("/") + "/" + p)
        return out
    return NotImplemented


DEFAULT_REDUCERS: dict[tuple[str, str], Reducer] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("collections", "Counter"): _ordered_dict,
    ("collections", "defaultdict"): _defaultdict,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "bytes"): _bytes,
    ("builtins", "complex"): _complex,
    ("_codecs", "encode"): _codecs_encode,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
}
for _mod in ("pathlib", "pathlib._local"):
    for _cls in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"):
        DEFAULT_REDUCERS[(_mod, _cls)] = _path


# --------------------------------------------------------------------------- sniffing


def could_be_pickle(head: bytes) -> bool:
    """Whether bytes may start a pickle: PROTO 0-5, or any other opcode (pickle needs no header)."""
    import pickletools

    if not head:
        return False
    if head[0] == 0x80:
        return len(head) > 1 and head[1] <= 5
    return head[0] != 0x2E and chr(head[0]) in pickletools.code2op


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def pickle_like(runs: list[PickleRun]) -> bool:
    """Whether a sniffed stream is a pickle rather than text or bytes that happen to parse a little.

    A stream starting with PROTO is one; otherwise it must reach STOP cleanly after real work,
    or name a global spelled like one (`module.name` identifiers) or an extension code: what
    `pickle.load` of those bytes would import.
    """
    if not runs:
        return False
    r = runs[0]
    if r.proto and r.ops >= 2 and r.start == 0:
        return True
    if r.clean and r.ops >= 3:
        return True
    return bool(r.ext_codes) or any(_dotted(g.module) and _dotted(g.name) for g in r.globals)
