"""ONNX models: initializers (names, dtypes, shapes), operator sets, graph summary.

Parsed with the `onnx` package (`pip install 'ckreg[onnx]'`): an ONNX file is a
protobuf message, and parsing it runs no code from the file. External data
files are never opened (`load_external_data=False`); their tensors are
described from the declared shape alone. In a base install without `onnx`,
the file is still recognised as ONNX and a `format-needs-extra` finding says
which extra to install, instead of calling it unreadable.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

from ckreg.errors import FormatError, ReadError
from ckreg.findings import Finding
from ckreg.readers.model import ReadResult, StorageRef, TensorRecord

EXTRA = "onnx"
ONNX_CAP = 2 << 30     # protobuf's own limit; bigger models keep their weights as external data

# onnx.TensorProto.DataType -> ckreg dtype names
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
               15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 19: "float8_e5m2"}
# first-field tags a ModelProto starts with: ir_version (1, varint) then producer/domain/graph/opset fields
_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x62, 0x72}


def looks_like_onnx(head: bytes) -> bool:
    """ModelProto bytes: field 1 (ir_version, a small varint) followed by another ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _NEXT_TAGS


def onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def read_onnx(path: str, size: int, findings: list[Finding], source: Any = None) -> ReadResult:
    """One ONNX file -> ReadResult (format "onnx"); raises FormatError for bytes onnx cannot parse.

    A protobuf message has no index: the whole file is parsed. A remote `source`
    (`ckreg.readers.remote`) is read whole only up to `WHOLE_FILE_LIMIT`; a larger
    remote ONNX model is refused with that reason instead of downloaded silently.
    """
    remote = bool(getattr(source, "remote", False))
    if not onnx_available():
        findings.append(Finding.make(
            "format-needs-extra", f"{path}: an ONNX model; reading its initializers needs the onnx extra: "
                                  f"pip install 'ckreg[{EXTRA}]'", path=path, expected=f"ckreg[{EXTRA}]"))
        return ReadResult(path=path, format="onnx", size=size, findings=findings,
                          unwrap=["ONNX model (not read: the onnx package is not installed)"],
                          metadata={"onnx": {"read": False, "extra": f"ckreg[{EXTRA}]"}})
    if size > ONNX_CAP:
        raise FormatError(f"ONNX file of {size} bytes is over protobuf's 2 GiB limit", path=path)
    if remote:
        from ckreg.readers.remote import WHOLE_FILE_LIMIT

        if size > WHOLE_FILE_LIMIT:
            raise FormatError(f"an ONNX model is parsed whole and this one is {size:,} bytes, over the "
                              f"{WHOLE_FILE_LIMIT:,}-byte limit for reading a remote file whole", path=path,
                              hint="download it and inspect the local copy")
    import onnx

    try:
        if remote:
            model = onnx.load_model_from_string(source.pread(0, size))
        else:
            model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends for bad bytes
        raise FormatError(f"not a valid ONNX model ({type(exc).__name__}: {exc})", path=path) from None
    graph = model.graph
    tensors: dict[str, TensorRecord] = {}
    protos: dict[str, Any] = {}
    external = 0
    for init in graph.initializer:
        name = init.name
        if name in tensors:
            findings.append(Finding.make("tensor-implausible", f"{path}: initializer {name!r} appears twice",
                                         path=path, severity="warning"))
            continue
        dtype = ONNX_DTYPES.get(init.data_type, f"onnx-type-{init.data_type}")
        ext = init.data_location == 1
        external += ext
        tensors[name] = TensorRecord(name=name, dtype=dtype, shape=tuple(int(d) for d in init.dims),
                                     storage=StorageRef(key=name, dtype=dtype))
        protos[name] = init
    ops = Counter(n.op_type for n in graph.node)
    meta: dict[str, Any] = {"onnx": {
        "read": True, "ir_version": model.ir_version,
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph": graph.name, "nodes": len(graph.node), "ops": dict(ops.most_common(12)),
        "inputs": [i.name for i in graph.input if i.name not in tensors][:8],
        "outputs": [o.name for o in graph.output][:8], "external_initializers": external,
    }}
    unwrap = [f"ONNX model: {len(tensors)} initializers, {len(graph.node)} nodes, opset "
              + ", ".join(f"{d} {v}" for d, v in meta["onnx"]["opset"].items())]
    if external:
        unwrap.append(f"{external} initializers keep their bytes in external data files (not opened)")
    res = ReadResult(path=path, format="onnx", size=size, tensors=tensors, unwrap=unwrap, metadata=meta,
                     findings=findings)
    res.bytes_read = 0 if remote else size   # a remote source counted its own bytes

    def source(rec: TensorRecord) -> Iterator[bytes]:
        init = protos[rec.name]
        if init.data_location == 1:
            raise ReadError(f"initializer {rec.name!r} lives in an external data file (not read)", path=path)
        if init.raw_data:
            yield bytes(init.raw_data)
            return
        from onnx import numpy_helper

        yield numpy_helper.to_array(init).tobytes()

    res._byte_source = source
    return res
