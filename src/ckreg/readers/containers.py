"""Containers a pickle can hide in: compressed streams (joblib's compressors) and tar archives.

`joblib.dump(..., compress=...)` writes a zlib, gzip, bz2, xz/lzma or lz4 stream around
the pickle; torch < 0.4 wrote checkpoints as tar archives of pickles. Each is recognised by
its bytes (tar by its header checksum, as `tarfile` does), decompressed with a cap (zip
bombs), and handed back to the pickle readers. Standard library only; lz4 is read when the
`lz4` package is installed and otherwise reported as not readable.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

from ckreg.readers.npy import MAGIC as NPY_MAGIC

COMPRESSED = ("gzip", "bz2", "xz", "lzma", "zlib", "lz4")
LZ4_MAGIC = b"\x04\x22\x4d\x18"


class ContainerProblem(Exception):
    """The container cannot be opened (corrupt, over the cap, or a codec that is not installed)."""


def tar_header_ok(block: bytes) -> bool:
    """`tarfile`'s own test: a 512-byte header whose checksum field matches its bytes."""
    if len(block) < 512 or not block[:100].strip(b"\0"):
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    try:
        want = int(field or b"x", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    signed = sum(b - 256 if b > 127 else b for b in block[:148]) + 8 * 32 + \
        sum(b - 256 if b > 127 else b for b in block[156:512])
    return want in (unsigned, signed)


def sniff_container(head: bytes, f=None) -> str | None:
    """"npy", "tar", a compressor name, or None, from the first bytes (512 wanted)."""
    if head[:6] == NPY_MAGIC:
        return "npy"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == LZ4_MAGIC:
        return "lz4"
    if len(head) >= 2 and (head[0] & 0x0F) == 8 and (head[0] >> 4) <= 7 and (head[0] * 256 + head[1]) % 31 == 0 \
            and not head[1] & 0x20:
        return "zlib"
    if head[:3] == b"\x5d\x00\x00" and len(head) >= 13:
        try:
            lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head, 16)
            return "lzma"
        except lzma.LZMAError:
            pass
    if tar_header_ok(head[:512]):
        return "tar"
    return None


def decompress(data: bytes, kind: str, cap: int, partial: bool = False) -> bytes:
    """The decompressed bytes, refusing more than `cap` (a zip bomb is refused, not inflated).
    With `partial`, the first `cap` bytes are returned instead (sniffing; `data` may be cut short)."""
    if partial:
        return _head(data, kind, cap)
    try:
        if kind == "gzip":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                out = g.read(cap + 1)
        elif kind == "bz2":
            out = bz2.BZ2Decompressor().decompress(data, cap + 1)
        elif kind in ("xz", "lzma"):
            fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
            out = lzma.LZMADecompressor(format=fmt).decompress(data, cap + 1)
        elif kind == "zlib":
            out = zlib.decompressobj().decompress(data, cap + 1)
        elif kind == "lz4":
            try:
                import lz4.frame  # type: ignore[import-not-found]
            except ImportError:
                raise ContainerProblem("lz4-compressed (joblib compress='lz4'): the lz4 package is not "
                                       "installed, so its pickle cannot be scanned") from None
            with lz4.frame.LZ4FrameFile(io.BytesIO(data)) as g:
                out = g.read(cap + 1)
        else:
            raise ContainerProblem(f"unknown container {kind!r}")
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise ContainerProblem(f"corrupt {kind} stream ({exc})") from None
    if len(out) > cap:
        raise ContainerProblem(f"{kind} stream inflates past the {cap}-byte cap (a decompression bomb?)")
    return out


class BytesFile:
    """A decompressed stream served through the readers' positioned-read interface."""

    def __init__(self, path: str, data: bytes):
        self.path, self.data, self.size = path, data, len(data)

    def pread(self, offset: int, n: int) -> bytes:
        if n <= 0 or offset < 0:
            return b""
        return self.data[offset:offset + n]


def _head(data: bytes, kind: str, n: int) -> bytes:
    try:
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, n)
        if kind == "zlib":
            return zlib.decompressobj().decompress(data, n)
        if kind == "bz2":
            return bz2.BZ2Decompressor().decompress(data, n)
        if kind in ("xz", "lzma"):
            fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
            return lzma.LZMADecompressor(format=fmt).decompress(data, n)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise ContainerProblem(f"corrupt {kind} stream ({exc})") from None
    raise ContainerProblem(f"{kind}: not sniffable")
