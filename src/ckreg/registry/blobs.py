"""Content-addressed blob store: `blobs/sha256/ab/abcdef...` (issue #5, "Registry").

Blobs are written temp + fsync + `os.replace`, so a reader never sees half a
blob and two writers of the same content race harmlessly (same bytes, atomic
rename). Every read re-hashes and refuses bytes that no longer match their
address (`IntegrityError`), so a flipped byte is never exported or loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ckreg.fsutil import publish
from ckreg.errors import IntegrityError, OutputExistsError, RegistryError

CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


@dataclass(frozen=True)
class PutResult:
    sha256: str
    size: int
    path: Path
    created: bool      # False when the blob already existed (deduplicated)
    repaired: bool = False  # True when an existing corrupted blob was replaced by good bytes


@dataclass(frozen=True)
class BlobProblem:
    sha256: str
    path: Path
    problem: str       # "corrupt" | "missing" | "misplaced"
    actual: str | None = None


class BlobStore:
    """Blobs under `root/blobs/sha256/`; temp files under `root/tmp/` (same filesystem)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"

    # -- addressing --
    def path_for(self, sha256: str) -> Path:
        if not _HEX64.match(sha256 or ""):
            raise RegistryError(f"not a sha256 digest: {sha256!r}")
        return self.dir / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    # -- writing --
    def put_file(self, src: str | Path) -> PutResult:
        """Copy `src` in while hashing it; deduplicate by content.

        The copy is what gets hashed, so the address always matches the stored
        bytes even if `src` changes underneath. An existing blob is re-hashed:
        a corrupted one is replaced by the fresh good bytes (repair), a good
        one is kept and touched (so `gc`'s grace period protects it while the
        caller commits its index row).
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="put-", suffix=".tmp", dir=self.tmp)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            target = self.path_for(digest)
            repaired = False
            if target.is_file():
                actual, _ = sha256_file(target)
                if actual == digest:
                    tmp.unlink()
                    os.utime(target)
                    return PutResult(digest, size, target, created=False)
                repaired = True
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            try:
                publish(tmp, target, overwrite=repaired)   # a corrupted blob is repaired, a good one never replaced
            except OutputExistsError:
                # another process stored the same address meanwhile: keep theirs if it is intact
                if sha256_file(target)[0] != digest:
                    raise IntegrityError(f"blob {digest} appeared with other bytes while storing it",
                                         path=str(target)) from None
                return PutResult(digest, size, target, created=False)
            return PutResult(digest, size, target, created=not repaired, repaired=repaired)
        except BaseException:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            raise

    # -- reading --
    def verified_path(self, sha256: str) -> Path:
        """The blob's path after re-hashing it; IntegrityError if missing or corrupted."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise IntegrityError(f"blob {sha256[:12]} is missing from the registry", path=str(path),
                                 hint="restore it from a backup or re-add the original file")
        actual, _ = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(f"blob {sha256[:12]} is corrupted (its bytes hash to {actual[:12]})",
                                 path=str(path), hint="re-add the original file to repair it; `ckreg registry verify` lists all damage")
        return path

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's bytes, hashed as read (one read, no window between check and use)."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"blob {sha256[:12]} is missing from the registry", path=str(path)) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"blob {sha256[:12]} is corrupted (its bytes hash to {actual[:12]})",
                                 path=str(path), hint="re-add the original file to repair it")
        return data

    # -- maintenance --
    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        if not self.dir.is_dir():
            return
        for sub in sorted(self.dir.iterdir()):
            if not sub.is_dir():
                continue
            for path in sorted(sub.iterdir()):
                if path.is_file():
                    yield path.name, path

    def check(self, referenced: set[str]) -> list[BlobProblem]:
        """Re-hash every blob; report corrupted, misplaced and missing (referenced but absent) ones."""
        problems: list[BlobProblem] = []
        seen: set[str] = set()
        for name, path in self.iter_blobs():
            if not _HEX64.match(name) or path.parent.name != name[:2]:
                problems.append(BlobProblem(name, path, "misplaced"))
                continue
            seen.add(name)
            actual, _ = sha256_file(path)
            if actual != name:
                problems.append(BlobProblem(name, path, "corrupt", actual=actual))
        for digest in sorted(referenced - seen):
            problems.append(BlobProblem(digest, self.dir / digest[:2] / digest, "missing"))
        return problems

    def remove(self, sha256: str) -> int:
        path = self.path_for(sha256)
        size = path.stat().st_size
        path.unlink()
        try:
            path.parent.rmdir()
        except OSError:
            pass
        return size

    def stale_temps(self, older_than: float) -> list[Path]:
        """Temp files left by interrupted writes (older than `older_than` seconds)."""
        if not self.tmp.is_dir():
            return []
        now = time.time()
        return [p for p in sorted(self.tmp.iterdir()) if p.is_file() and now - p.stat().st_mtime > older_than]
