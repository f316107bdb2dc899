"""Positioned reads that count every byte taken from storage (`ReadResult.bytes_read`).

Readers never read a whole checkpoint: they `pread` the few regions they need
(zip central directory, the pickle member, 8-byte storage headers), so the
cost of inspection does not grow with tensor bytes (issue #2, "Speed").

A reader takes a *random access source* (`Source`): a local file
(`RandomAccessFile`) or a remote object named by an fsspec URL
(`ckreg.readers.remote.RemoteFile`, e.g. `s3://bucket/key`), opened with
`open_source`. The helpers below (`size_of`, `read_all`, `sha256_of`, `isdir`,
`listdir`, `join`) take either a local path or a URL, so the readers, the
inspector and the audit read remote archives through the same code.
"""

from __future__ import annotations

import io
import os
from typing import Protocol


class Counter:
    """A shared byte counter (the reader and the tensor-byte streamer add to one)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Source(Protocol):
    """What readers read through: `size`, `pread(offset, n)`, `close()`; `counter.n` counts the bytes
    taken from storage; `chunk` is the read size for streaming (tensor bytes, hashing)."""

    path: str
    size: int
    counter: Counter
    chunk: int
    remote: bool

    def pread(self, offset: int, n: int) -> bytes: ...

    def close(self) -> None: ...

    # optional (remote sources): `prefetch([(offset, n), ...])` fetches small ranges at once, exactly

    def __enter__(self) -> "Source": ...

    def __exit__(self, *exc) -> None: ...


class RandomAccessFile:
    """An open file read only by offset; `counter.n` is the number of bytes actually read."""

    chunk = 1 << 20
    remote = False

    def __init__(self, path: str, counter: Counter | None = None):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError:
            os.close(self.fd)
            raise
        self.counter = counter or Counter()

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (short only at end of file)."""
        if n <= 0 or offset >= self.size or offset < 0:
            return b""
        n = min(n, self.size - offset)
        chunks = []
        got = 0
        while got < n:
            if hasattr(os, "pread"):
                b = os.pread(self.fd, n - got, offset + got)
            else:  # pragma: no cover - Windows
                os.lseek(self.fd, offset + got, 0)
                b = os.read(self.fd, n - got)
            if not b:
                break
            chunks.append(b)
            got += len(b)
        self.counter.n += got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "RandomAccessFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SourceReader(io.RawIOBase):
    """A source as a read-only, seekable file object (for `tarfile`), reading through `pread`."""

    def __init__(self, src: Source):
        super().__init__()
        self.src = src
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.src.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buf) -> int:
        data = self.src.pread(self.pos, len(buf))
        buf[:len(data)] = data
        self.pos += len(data)
        return len(data)


def is_url(path: str | os.PathLike) -> bool:
    """A URL with a scheme (`s3://`, `gs://`, `memory://`, `file://`): read through fsspec."""
    from ckreg.readers.remote import is_url as _is_url

    return _is_url(path)


def open_source(path: str | os.PathLike, counter: Counter | None = None) -> Source:
    """A local file or a remote object (fsspec URL), ready for positioned reads.
    Raises OSError (FileNotFoundError, ...) for what cannot be opened."""
    p = os.fspath(path)
    if is_url(p):
        from ckreg.readers.remote import RemoteFile

        return RemoteFile(p, counter)
    return RandomAccessFile(p, counter)


def size_of(path: str | os.PathLike) -> int:
    p = os.fspath(path)
    if is_url(p):
        from ckreg.readers.remote import stat

        return stat(p).size
    return os.path.getsize(p)


def isdir(path: str | os.PathLike) -> bool:
    p = os.fspath(path)
    if is_url(p):
        from ckreg.readers.remote import isdir as _isdir

        return _isdir(p)
    return os.path.isdir(p)


def listdir(path: str | os.PathLike) -> list[str]:
    """Names in a folder (a remote prefix: its objects and sub-prefixes)."""
    p = os.fspath(path)
    if is_url(p):
        from ckreg.readers.remote import listdir as _listdir

        return _listdir(p)
    return os.listdir(p)


def join(folder: str | os.PathLike, name: str) -> str:
    p = os.fspath(folder)
    return f"{p.rstrip('/')}/{name}" if is_url(p) else os.path.join(p, name)


def read_all(path: str | os.PathLike, counter: Counter | None = None) -> bytes:
    """Every byte of a (small) file: scalers, JSON, config files."""
    with open_source(path, counter) as f:
        return f.pread(0, f.size)


def sha256_of(path: str | os.PathLike, counter: Counter | None = None) -> str:
    """sha256 of a file's bytes, streamed (a remote object: in `chunk`-sized ranges)."""
    import hashlib

    h = hashlib.sha256()
    with open_source(path, counter) as f:
        pos = 0
        while pos < f.size:
            chunk = f.pread(pos, min(f.chunk, f.size - pos))
            if not chunk:
                raise OSError(f"{f.path}: ends at byte {pos}, before its size {f.size}")
            h.update(chunk)
            pos += len(chunk)
    return h.hexdigest()
