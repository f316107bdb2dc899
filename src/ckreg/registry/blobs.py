"""Content-addressed blob stores: `blobs/sha256/ab/abcdef...` under a root (issue #5, "Registry").

Two implementations behind one small interface (`put_file`, `exists`,
`verified_path`, `read_bytes`, `iter_blobs`, `check`, `mtime`, `remove`,
`stale_temps`, `location`):

- `BlobStore(root)`: a local folder. Blobs are written temp + fsync +
  `os.replace`, so a reader never sees half a blob and two writers of the same
  content race harmlessly (same bytes, atomic rename).
- `FsspecBlobStore(url)`: any fsspec filesystem, e.g. `s3://bucket/prefix`
  (s3fs; `AWS_ENDPOINT_URL` and the usual AWS variables select S3-compatible
  servers). An object PUT is atomic, so put-if-absent is: hash a local copy,
  skip the upload when an object with that address already holds those bytes.

Every read re-hashes and refuses bytes that no longer match their address
(`IntegrityError`), so a flipped byte is never exported or loaded.
`open_store(spec)` picks the implementation from a path or URL.
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


def _copy_hashing(src: str | Path, fd: int, *, sync: bool) -> tuple[str, int]:
    """Copy `src` into the open temp file `fd`, hashing the bytes as written: the address is
    that of the private copy, whatever happens to `src` afterwards. Returns (sha256, size)."""
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    return h.hexdigest(), size


@dataclass(frozen=True)
class PutResult:
    sha256: str
    size: int
    path: Path | str   # local path, or the object URL in a remote store
    created: bool      # False when the blob already existed (deduplicated)
    repaired: bool = False  # True when an existing corrupted blob was replaced by good bytes


@dataclass(frozen=True)
class BlobProblem:
    sha256: str
    path: Path | str
    problem: str       # "corrupt" | "missing" | "misplaced"
    actual: str | None = None


class BlobStore:
    """Blobs under `root/blobs/sha256/`; temp files under `root/tmp/` (same filesystem)."""

    remote = False

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"

    @property
    def url(self) -> str:
        return str(self.root)

    def location(self, sha256: str) -> str:
        return str(self.path_for(sha256))

    def mtime(self, location: Path | str) -> float:
        return Path(location).stat().st_mtime

    def size(self, location: Path | str) -> int:
        return Path(location).stat().st_size

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
            digest, size = _copy_hashing(src, fd, sync=True)
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

    def remove_temp(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)

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


class FsspecBlobStore:
    """Blobs at `<url>/blobs/sha256/ab/<digest>` on any fsspec filesystem (S3 and friends).

    Local copies for export and loading (`verified_path`) are downloaded into
    `cache_dir` and re-hashed there, so what a caller opens is what was checked.
    """

    remote = True

    def __init__(self, url: str, cache_dir: str | Path | None = None):
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, base = fsspec.core.url_to_fs(self.url, **_storage_options(self.url))
        except ImportError as exc:
            raise RegistryError(f"the blob store {url} needs an fsspec driver that is not installed: {exc}",
                                hint="for s3:// URLs: pip install 'ckreg[s3]'") from None
        except ValueError as exc:
            raise RegistryError(f"invalid blob store URL {url!r}: {exc}") from None
        self.base = base.rstrip("/")
        self.dir = f"{self.base}/blobs/sha256"
        self.protocol = self.url.split("://", 1)[0]
        if cache_dir is None:
            cache_dir = user_cache_dir() / "blobs"
        self.cache_dir = Path(cache_dir)

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    # -- addressing --
    def _key(self, sha256: str) -> str:
        if not _HEX64.match(sha256 or ""):
            raise RegistryError(f"not a sha256 digest: {sha256!r}")
        return f"{self.dir}/{sha256[:2]}/{sha256}"

    def location(self, sha256: str) -> str:
        return self.fs.unstrip_protocol(self._key(sha256))

    path_for = location

    def exists(self, sha256: str) -> bool:
        key = self._key(sha256)
        self.fs.invalidate_cache(key)
        return self.fs.isfile(key)

    def _hash_remote(self, key: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(key, "rb", block_size=CHUNK * 8, cache_type="none") as fh:
            while chunk := fh.read(CHUNK * 8):
                h.update(chunk)
        return h.hexdigest()

    # -- writing --
    def put_file(self, src: str | Path) -> PutResult:
        """Hash a private local copy of `src`, upload it unless the object already holds those bytes."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="put-", suffix=".tmp", dir=self.cache_dir)
        tmp = Path(tmp_name)
        try:
            digest, size = _copy_hashing(src, fd, sync=False)
            key = self._key(digest)
            repaired = False
            if self.exists(digest):
                if self._hash_remote(key) == digest:
                    return PutResult(digest, size, self.location(digest), created=False)
                repaired = True
            self.fs.put_file(str(tmp), key)
            self.fs.invalidate_cache(key)
            return PutResult(digest, size, self.location(digest), created=not repaired, repaired=repaired)
        finally:
            tmp.unlink(missing_ok=True)

    # -- reading --
    def read_bytes(self, sha256: str) -> bytes:
        key = self._key(sha256)
        try:
            data = self.fs.cat_file(key)
        except FileNotFoundError:
            raise IntegrityError(f"blob {sha256[:12]} is missing from the registry", path=self.location(sha256)) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"blob {sha256[:12]} is corrupted (its bytes hash to {actual[:12]})",
                                 path=self.location(sha256), hint="re-add the original file to repair it")
        return data

    def verified_path(self, sha256: str) -> Path:
        """A local copy of the blob, downloaded and re-hashed (IntegrityError if missing or corrupted)."""
        key = self._key(sha256)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="get-", suffix=".tmp", dir=self.cache_dir)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out, self.fs.open(key, "rb", block_size=CHUNK * 8, cache_type="none") as fh:
                    while chunk := fh.read(CHUNK * 8):
                        h.update(chunk)
                        out.write(chunk)
            except FileNotFoundError:
                raise IntegrityError(f"blob {sha256[:12]} is missing from the registry", path=self.location(sha256),
                                     hint="restore it from a backup or re-add the original file") from None
            actual = h.hexdigest()
            if actual != sha256:
                raise IntegrityError(f"blob {sha256[:12]} is corrupted (its bytes hash to {actual[:12]})",
                                     path=self.location(sha256),
                                     hint="re-add the original file to repair it; `ckreg registry verify` lists all damage")
            target = self.cache_dir / sha256
            os.chmod(tmp, 0o444)
            publish(tmp, target, overwrite=True)   # a verified cache copy: same bytes whoever wins a race
            return target
        finally:
            tmp.unlink(missing_ok=True)

    # -- maintenance --
    def iter_blobs(self) -> Iterator[tuple[str, str]]:
        self.fs.invalidate_cache(self.dir)
        try:
            found = self.fs.find(self.dir)
        except FileNotFoundError:
            return
        for key in sorted(found):
            yield key.rsplit("/", 1)[-1], key

    def check(self, referenced: set[str]) -> list[BlobProblem]:
        problems: list[BlobProblem] = []
        seen: set[str] = set()
        for name, key in self.iter_blobs():
            parent = key.rsplit("/", 2)[-2] if key.count("/") >= 2 else ""
            if not _HEX64.match(name) or parent != name[:2]:
                problems.append(BlobProblem(name, self.fs.unstrip_protocol(key), "misplaced"))
                continue
            seen.add(name)
            actual = self._hash_remote(key)
            if actual != name:
                problems.append(BlobProblem(name, self.fs.unstrip_protocol(key), "corrupt", actual=actual))
        for digest in sorted(referenced - seen):
            problems.append(BlobProblem(digest, self.location(digest), "missing"))
        return problems

    def mtime(self, location: str) -> float:
        info = self.fs.info(location)
        for field in ("LastModified", "mtime", "last_modified", "created"):
            value = info.get(field)
            if value is None:
                continue
            if hasattr(value, "timestamp"):
                return float(value.timestamp())
            return float(value)
        return time.time()   # unknown: treat as new (gc keeps it)

    def size(self, location: str) -> int:
        return int(self.fs.info(location)["size"])

    def remove(self, sha256: str) -> int:
        key = self._key(sha256)
        size = self.size(key)
        self.fs.rm_file(key)
        self.fs.invalidate_cache(key)
        return size

    def stale_temps(self, older_than: float) -> list[Path]:
        """Uploads are atomic objects: no temps in the store (local download temps are in the cache dir)."""
        if not self.cache_dir.is_dir():
            return []
        now = time.time()
        return [p for p in sorted(self.cache_dir.glob("*.tmp")) if p.is_file() and now - p.stat().st_mtime > older_than]

    def remove_temp(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)


def user_cache_dir() -> Path:
    """`$CKREG_CACHE_DIR`, else the platform's user cache directory for ckreg."""
    env = os.environ.get("CKREG_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ckreg"))


def _storage_options(url: str) -> dict:
    """S3: honour AWS_ENDPOINT_URL (the readers' one rule, `ckreg.readers.remote.storage_options`)."""
    from ckreg.readers.remote import storage_options

    return storage_options(url)


def is_url(spec: str | os.PathLike) -> bool:
    text = str(spec)
    return "://" in text and not text.startswith("file://")


def open_store(spec: str | os.PathLike):
    """A path or `file://` URL -> `BlobStore`; any other fsspec URL (`s3://bucket/prefix`) -> `FsspecBlobStore`."""
    text = str(spec)
    if text.startswith("file://"):
        return BlobStore(text[len("file://"):])
    if is_url(text):
        return FsspecBlobStore(text)
    return BlobStore(text)
