"""What a reader returns: inert records, never live objects.

Readers interpret bytes symbolically (issue #2: "never execute pickle code").
A tensor is described by dtype, shape, stride and where its storage lives;
its bytes are read only on request (`ReadResult.iter_tensor_bytes`), for
`weights_sha256`.
"""

from __future__ import annotations

import math
import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ckreg.findings import Finding

# `ReadResult.holding_source` reads a local file up to this size whole (what the audit hashes inline).
HOLD_IN_MEMORY = 16 * 1024 * 1024

# torch storage/dtype names -> element size in bytes
DTYPE_SIZES: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "complex64": 8, "complex128": 16, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "uint16": 2, "uint32": 4, "uint64": 8,
}


@dataclass(frozen=True, slots=True)
class StorageRef:
    """Where a tensor's bytes live, as declared by the file (not yet read)."""

    key: str                      # storage key (zip: "archive/data/<key>"; legacy: persistent id; safetensors: tensor name)
    dtype: str                    # element dtype of the storage
    numel: int | None = None      # declared storage element count, if any
    device: str = "cpu"
    member: str | None = None     # zip member name holding the bytes
    offset: int | None = None     # absolute byte offset in the file (legacy, safetensors)


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """One tensor of a state_dict, as declared."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    storage: StorageRef | None = None
    storage_offset: int = 0        # in elements
    requires_grad: bool = False
    is_parameter: bool | None = None  # True when saved as nn.Parameter (rare in state_dicts)

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES.get(self.dtype, 4)

    @property
    def tie_key(self) -> tuple | None:
        """Tensors sharing storage, offset, shape and stride are one tensor (tied weights count once)."""
        if self.storage is None:
            return None
        return (self.storage.key, self.storage_offset, self.shape, self.stride)


@dataclass
class ReadResult:
    """Everything a reader learned about one file.

    `sha256` (of the file bytes) is computed on first access: reading a 1 GB
    file to hash it would defeat "inspection cost does not grow with tensor
    bytes", so callers that do not need it never pay for it (issue #2).
    Bytes read for it, and by `iter_tensor_bytes`, are added to `bytes_read`.
    """

    path: str
    format: str                                   # "torch-zip" | "torch-legacy" | "safetensors" | "pickle" | "torchscript" | "onnx"
    size: int
    tensors: dict[str, TensorRecord] = field(default_factory=dict)  # the state_dict, unwrapped
    unwrap: list[str] = field(default_factory=list)                  # evidence lines for each unwrap step
    metadata: dict[str, Any] = field(default_factory=dict)          # JSON-able
    findings: list[Finding] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)                # every "module.qualname" referenced
    bytes_read: int = 0
    root: Any = None                                                 # the inert object tree
    pickles: int = 0                                                 # pickle streams scanned
    original_names: dict[str, str] = field(default_factory=dict)     # unwrapped name -> key in the file
    # Set by the reader: yields the raw bytes of one tensor's storage slice, streaming.
    _byte_source: Callable[[TensorRecord], Iterator[bytes]] | None = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)
    _held: Any = field(default=None, repr=False)   # the one source `holding_source` keeps open

    @property
    def sha256(self) -> str:
        """sha256 of the whole file (read and cached on first access)."""
        if self._sha256 is None:
            from ckreg.readers.fileio import Counter, sha256_of

            counter = Counter()
            try:
                self._sha256 = sha256_of(self.path, counter)
            finally:
                self.bytes_read += counter.n
        return self._sha256

    @contextlib.contextmanager
    def holding_source(self) -> Iterator[None]:
        """Inside the block, `iter_tensor_bytes` and `sha256` read one source instead of opening the
        file per tensor (hashing the weights reads every tensor). A local file up to
        `HOLD_IN_MEMORY` bytes is read once, whole: its sha256 and every tensor's bytes come from
        that one read (`bytes_read` counts it once). A remote object is left as it is read now."""
        from ckreg.readers.fileio import Counter, MemorySource, is_url, open_source

        if (self._held is not None or is_url(self.path) or not self.size or self.size > HOLD_IN_MEMORY
                or not os.path.isfile(self.path)):   # a model folder's tensors live in its member files
            yield
            return
        counter = Counter()
        try:
            with open_source(self.path, counter) as f:
                data = f.pread(0, f.size)
        finally:
            self.bytes_read += counter.n
        if len(data) != self.size:
            raise OSError(f"{self.path}: {len(data)} bytes read, the file had {self.size}")
        if self._sha256 is None:
            import hashlib

            self._sha256 = hashlib.sha256(data).hexdigest()
        self._held = MemorySource(self.path, data)
        try:
            yield
        finally:
            self._held = None

    @property
    def sha256_if_known(self) -> str | None:
        return self._sha256

    @property
    def unsafe(self) -> bool:
        return any(f.code == "unsafe-global" for f in self.findings)

    def iter_tensor_bytes(self, record: TensorRecord) -> Iterator[bytes]:
        """Stream the bytes of exactly this tensor's elements (used only for weights_sha256)."""
        if self._byte_source is None:
            raise NotImplementedError(f"{self.path}: reader offers no tensor bytes")
        return self._byte_source(record)
