"""safetensors, checked as the reference loader checks it, plus duplicate keys (issue #2).

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON (an
object: tensor name -> {dtype, shape, data_offsets}, optional `__metadata__`
string map), then the data section. The reference loader (`safetensors`
Rust crate, `Metadata::validate`) requires: N within the file, valid UTF-8
JSON object, known dtypes, non-negative integer shapes, offsets that are
contiguous, non-overlapping and exactly fill the data section, each tensor's
byte length = numel * itemsize. serde silently keeps the last of duplicate
keys; we flag them (two tools reading one file must agree on its content).
No `safetensors` import: only stdlib.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ckreg.errors import FormatError
from ckreg.findings import Finding
from ckreg.readers.fileio import RandomAccessFile
from ckreg.readers.model import StorageRef, TensorRecord

MAX_HEADER = 100_000_000  # the reference loader's cap

# safetensors dtype -> (torch dtype name, bits per element)
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8), "F8_E8M0": ("float8_e8m0fnu", 8), "I16": ("int16", 16),
    "U16": ("uint16", 16), "F16": ("float16", 16), "BF16": ("bfloat16", 16), "I32": ("int32", 32),
    "U32": ("uint32", 32), "F32": ("float32", 32), "C64": ("complex64", 64), "F64": ("float64", 64),
    "I64": ("int64", 64), "U64": ("uint64", 64), "F4": ("float4_e2m1fn_x2", 4),
    "F6_E2M3": ("float6_e2m3", 6), "F6_E3M2": ("float6_e3m2", 6),
}


def looks_like_safetensors(head: bytes, size: int) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _dup_hook(dups: list[str]):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                dups.append(k)
            out[k] = v
        return out
    return hook


def read_safetensors(f: RandomAccessFile, path: str) -> tuple[dict[str, TensorRecord], dict[str, Any], list[Finding]]:
    """(tensors in header order, {"__metadata__": ...}, findings). Raises FormatError when nothing usable remains."""
    findings: list[Finding] = []

    def bad(msg: str, **kw) -> None:
        findings.append(Finding.make("safetensors-invalid", f"{path}: {msg}", path=path, **kw))

    def fail(msg: str) -> FormatError:
        bad(msg)
        err = FormatError(f"invalid safetensors file: {msg}", path=path)
        err.findings = list(findings)  # type: ignore[attr-defined]
        return err

    size = f.size
    head = f.pread(0, 8)
    if len(head) < 8:
        raise fail("file shorter than the 8-byte header length")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER:
        raise fail(f"header length {n} exceeds the reference loader's {MAX_HEADER}-byte limit")
    if 8 + n > size:
        raise fail(f"header length {n} runs past the end of the file ({size} bytes): truncated")
    raw = f.pread(8, n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("{"):
        raise fail("header does not start with '{'")
    dups: list[str] = []
    try:
        header = json.loads(text, object_pairs_hook=_dup_hook(dups))
    except json.JSONDecodeError as exc:
        raise fail(f"header is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(header, dict):
        raise fail("header is not a JSON object")
    for k in dict.fromkeys(dups):
        bad(f"duplicate key {k!r} in the header (loaders keep only one of them)", actual=k)
    meta: dict[str, Any] = {}
    if "__metadata__" in header:
        m = header.pop("__metadata__")
        if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
            bad("__metadata__ is not a map of strings to strings",
                actual=type(m).__name__ if not isinstance(m, dict) else "non-string values")
            if isinstance(m, dict):
                meta["__metadata__"] = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in m.items()}
        else:
            meta["__metadata__"] = dict(m)
    data_start = 8 + n
    data_len = size - data_start
    entries: list[tuple[int, int, str, str, tuple[int, ...], int]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            bad(f"entry {name!r} is not an object")
            continue
        dt = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dt not in DTYPES:
            bad(f"tensor {name!r}: unknown dtype {dt!r}", actual=dt)
            continue
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            bad(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers", actual=shape)
            continue
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)):
            bad(f"tensor {name!r}: data_offsets {offs!r} is not [begin, end]", actual=offs)
            continue
        begin, end = offs
        torch_dtype, bits = DTYPES[dt]
        numel = math.prod(shape) if shape else 1
        nbits = numel * bits
        if end < begin:
            bad(f"tensor {name!r}: data_offsets end {end} < begin {begin}", actual=offs)
            continue
        if nbits % 8 or nbits // 8 != end - begin:
            bad(f"tensor {name!r}: {dt} {shape} needs {nbits / 8:g} bytes but data_offsets span {end - begin}",
                expected=nbits // 8, actual=end - begin)
            continue
        if end > data_len:
            bad(f"tensor {name!r}: data_offsets end {end} is past the data section ({data_len} bytes)",
                expected=data_len, actual=end)
            continue
        entries.append((begin, end, name, torch_dtype, tuple(shape), numel))
    # contiguous, non-overlapping, exactly filling the data section
    cursor = 0
    for begin, end, name, *_ in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin < cursor:
            bad(f"tensor {name!r}: bytes {begin}..{end} overlap the previous tensor (ends at {cursor})")
        elif begin > cursor:
            bad(f"tensor {name!r}: gap of {begin - cursor} byte(s) before it (offsets must be contiguous)")
        cursor = max(cursor, end)
    if cursor != data_len and entries:
        bad(f"tensors fill {cursor} bytes but the data section holds {data_len}", expected=data_len, actual=cursor)
    elif not entries and data_len:
        bad(f"no tensors but {data_len} data byte(s)")
    tensors: dict[str, TensorRecord] = {}
    order = {name: i for i, name in enumerate(header)}
    for begin, end, name, torch_dtype, shape, numel in sorted(entries, key=lambda e: order[e[2]]):
        strides = []
        acc = 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= max(s, 1)
        tensors[name] = TensorRecord(
            name=name, dtype=torch_dtype, shape=shape, stride=tuple(reversed(strides)),
            storage=StorageRef(key=name, dtype=torch_dtype, numel=numel, offset=data_start + begin),
            storage_offset=0)
    if not tensors and header:
        raise fail("no usable tensor entries")
    return tensors, meta, findings
