"""Per-tensor digests of one checkpoint, streamed from the readers and cached.

One pass over a file's tensor bytes (`ReadResult.iter_tensor_bytes`, the same
streams `weights_sha256` reads) gives, per tensor: a sha256 of its bytes,
whether every element is the same value (such tensors are no evidence of a
shared origin: zero biases and unit norm weights are equal in any two fresh
models), and, for float tensors, the sum of squares (for distances). The whole
file's `weights_sha256` comes out of the same pass, with the inspector's
definition, so the trainer's recorded parents can be matched to files.

Digests are cached by file identity (resolved path, size, mtime, inode): a
second `ckreg lineage` over the same tree reads no tensor bytes at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ckreg import __version__
from ckreg.errors import ReadError
from ckreg.readers import DTYPE_SIZES, ReadResult, read_checkpoint
from ckreg.readers.meta import to_json

# Bump when the cached record's meaning changes: old entries are then ignored, never misread.
CACHE_FORMAT = 2   # 2: the `binary` flag (0/1-valued float tensors)
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})

# Buffers that modules compute from their shape alone, never learn: sinusoidal
# positional encodings (`pe`, "Attention Is All You Need" section 3.5), rotary
# frequencies (`inv_freq`, `freqs_cis`, cached `cos`/`sin` tables) and position
# index tables. Any two fresh models of one architecture hold them byte for
# byte, so their equality is no evidence of a shared origin. Matched on the last
# component of the state_dict key.
DETERMINISTIC_BUFFERS = frozenset({
    "pe", "pos_enc", "pos_encoding", "positional_encoding", "position_encoding",
    "inv_freq", "freqs_cis", "cos_cached", "sin_cached", "position_ids", "token_type_ids",
})


def is_evidence(name: str, digest: "TensorDigest") -> bool:
    """Can byte equality of tensor `name` show that two checkpoints share an origin?"""
    return digest.evidence and name.rsplit(".", 1)[-1] not in DETERMINISTIC_BUFFERS


@dataclass(frozen=True)
class TensorDigest:
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    constant: bool               # every element has the same bytes (or the tensor has < 2 elements)
    sumsq: float | None = None   # sum of squares of the values (float dtypes, with numpy), else None
    binary: bool = False         # a float tensor of only 0s and 1s (an attention mask, a tril table)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def key(self) -> tuple[str, tuple[int, ...], str]:
        return (self.dtype, self.shape, self.sha256)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def evidence(self) -> bool:
        """Can byte equality of this tensor show a shared origin? Float, not constant, not a 0/1 mask.

        The name matters too (deterministic buffers): use `is_evidence(name, digest)`.
        """
        return self.is_float and not self.constant and not self.binary and self.numel >= 2


@dataclass
class FileDigests:
    path: str
    format: str
    weights_sha256: str
    tensors: dict[str, TensorDigest]
    order: dict[str, Any] = field(default_factory=dict)      # {"global_step": n, "epoch": n} as recorded
    recorded: list[dict[str, Any]] = field(default_factory=list)   # lineage the trainer recorded
    from_cache: bool = False

    @property
    def layout(self) -> tuple:
        return tuple(sorted((n, d.dtype, d.shape) for n, d in self.tensors.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "weights_sha256": self.weights_sha256, "order": self.order,
            "recorded": self.recorded,
            "tensors": {n: [d.dtype, list(d.shape), d.sha256, d.constant, d.sumsq, d.binary]
                        for n, d in self.tensors.items()},
        }

    @classmethod
    def from_json(cls, path: str, obj: dict[str, Any]) -> "FileDigests":
        tensors = {n: TensorDigest(dtype=v[0], shape=tuple(int(s) for s in v[1]), sha256=v[2], constant=bool(v[3]),
                                   sumsq=None if v[4] is None else float(v[4]), binary=bool(v[5]))
                   for n, v in obj["tensors"].items()}
        return cls(path=path, format=obj["format"], weights_sha256=obj["weights_sha256"], tensors=tensors,
                   order=dict(obj.get("order") or {}), recorded=list(obj.get("recorded") or []), from_cache=True)


def aligned(chunks: Iterator[bytes], itemsize: int, block: int = 1 << 20) -> Iterator[bytes]:
    """Re-chunk a byte stream into blocks of whole elements (readers may split an element across chunks)."""
    block -= block % itemsize
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= block:
            yield bytes(buf[:block])
            del buf[:block]
    if buf:
        if len(buf) % itemsize:
            raise ReadError(f"tensor bytes end inside an element ({len(buf)} bytes left, element size {itemsize})")
        yield bytes(buf)


def _numpy():
    try:
        import numpy
    except ImportError:  # distances need numpy; digests and byte-identical edges do not
        return None
    return numpy


def _digest_tensor(result: ReadResult, name: str, wsha: "hashlib._Hash", np: Any) -> TensorDigest:
    from ckreg.lineage.numeric import decode

    rec = result.tensors[name]
    itemsize = DTYPE_SIZES.get(rec.dtype, 4)
    wsha.update(json.dumps([name, rec.dtype, list(rec.shape)], separators=(",", ":")).encode() + b"\n")
    h = hashlib.sha256()
    first: bytes | None = None
    constant = True
    numeric = np is not None and rec.dtype in FLOAT_DTYPES
    sumsq = 0.0 if numeric else None
    binary = numeric
    n = 0
    for block in aligned(result.iter_tensor_bytes(rec), itemsize):
        h.update(block)
        wsha.update(block)
        n += len(block)
        if constant:
            if first is None:
                first = block[:itemsize]
            constant = block == first * (len(block) // itemsize)
        if numeric:
            values = decode(np, block, rec.dtype)
            sumsq += float(np.dot(values, values))
            binary = binary and bool(np.all((values == 0) | (values == 1)))
    if n != rec.nbytes:
        raise ReadError(f"tensor {name}: read {n} bytes, expected {rec.nbytes}", path=result.path)
    return TensorDigest(dtype=rec.dtype, shape=tuple(rec.shape), sha256=h.hexdigest(),
                        constant=constant or rec.numel < 2, sumsq=sumsq, binary=binary)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def order_and_record(result: ReadResult) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """(training position, trainer-recorded lineage) from a file's metadata.

    Position: Lightning's `global_step` / `epoch` at the top of a .ckpt, or
    `ckreg.global_step` / `ckreg.epoch` (also plain `global_step`, `epoch`,
    `step`) in safetensors `__metadata__`. Recorded lineage: the `lineage`
    list in a .ckpt's `ckreg` dict, or the JSON in `ckreg.lineage`.
    """
    meta = result.metadata or {}
    order: dict[str, int] = {}
    for key in ("global_step", "epoch"):
        v = _int(meta.get(key))
        if v is not None:
            order[key] = v
    st = meta.get("__metadata__") if isinstance(meta.get("__metadata__"), dict) else {}
    for key, names in (("global_step", ("ckreg.global_step", "global_step", "step")),
                       ("epoch", ("ckreg.epoch", "epoch"))):
        if key not in order:
            for name in names:
                v = _int(st.get(name))
                if v is not None:
                    order[key] = v
                    break
    recorded: Any = None
    if isinstance(result.root, dict) and "ckreg" in result.root:
        ck = to_json(result.root["ckreg"])
        if isinstance(ck, dict):
            recorded = ck.get("lineage")
    if recorded is None and "ckreg.lineage" in st:
        try:
            recorded = json.loads(st["ckreg.lineage"])
        except (TypeError, ValueError):
            recorded = None
    edges = [e for e in recorded if isinstance(e, dict) and isinstance(e.get("relation"), str)] \
        if isinstance(recorded, list) else []
    return order, edges


def digest_file(path: str | os.PathLike) -> FileDigests:
    """Read one checkpoint (never executing it) and digest every tensor. Raises ReadError."""
    np = _numpy()
    result = read_checkpoint(path)
    wsha = hashlib.sha256()
    tensors = {name: _digest_tensor(result, name, wsha, np) for name in sorted(result.tensors)}
    order, recorded = order_and_record(result)
    return FileDigests(path=str(path), format=result.format, weights_sha256=wsha.hexdigest(), tensors=tensors,
                       order=order, recorded=recorded)


# -- cache ----------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """`$CKREG_CACHE_DIR/lineage`, else `$XDG_CACHE_HOME/ckreg/lineage`, else `~/.cache/ckreg/lineage`."""
    base = os.environ.get("CKREG_CACHE_DIR")
    if base:
        return Path(base) / "lineage"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "ckreg" / "lineage"


class DigestCache:
    """One JSON file per checkpoint identity; stale entries simply never match again."""

    def __init__(self, directory: str | os.PathLike | None):
        self.dir = None if directory is None else Path(directory)
        self.hits = 0
        self.misses = 0
        self.write_error: str | None = None

    @staticmethod
    def identity(path: str | os.PathLike) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        key = json.dumps([CACHE_FORMAT, __version__, real, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev])
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def get(self, path: str | os.PathLike) -> FileDigests:
        if self.dir is None:
            self.misses += 1
            return digest_file(path)
        ident = self.identity(path)
        entry = self.dir / f"{ident}.json"
        try:
            obj = json.loads(entry.read_text(encoding="utf-8"))
            if obj.get("cache_format") == CACHE_FORMAT and obj.get("identity") == ident:
                self.hits += 1
                return FileDigests.from_json(str(path), obj)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            pass  # absent or damaged: recompute (a damaged entry is rewritten below)
        self.misses += 1
        digests = digest_file(path)
        if self.identity(path) == ident:   # the file did not change while it was read
            self._put(entry, ident, digests)
        return digests

    def _put(self, entry: Path, ident: str, digests: FileDigests) -> None:
        from ckreg.fsutil import write_text

        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            write_text(entry, json.dumps({"cache_format": CACHE_FORMAT, "identity": ident, **digests.to_json()},
                                         separators=(",", ":")), overwrite=True)   # a cache entry: replaced when stale
        except OSError as exc:   # a read-only cache costs speed, never the run
            self.write_error = f"cannot write the digest cache in {self.dir}: {exc.strerror or exc}"
