"""Positioned reads that count every byte taken from disk (`ReadResult.bytes_read`).

Readers never read a whole checkpoint: they `pread` the few regions they need
(zip central directory, the pickle member, 8-byte storage headers), so the
cost of inspection does not grow with tensor bytes (issue #2, "Speed").
"""

from __future__ import annotations

import os


class Counter:
    """A shared byte counter (the reader and the tensor-byte streamer add to one)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class RandomAccessFile:
    """An open file read only by offset; `counter.n` is the number of bytes actually read."""

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
