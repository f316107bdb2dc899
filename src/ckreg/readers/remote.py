"""Remote objects (any fsspec URL: `s3://bucket/key`, `gs://`, `memory://`, ...) read by range requests.

`RemoteFile` is the readers' random access source for a URL (`ckreg.readers.fileio.Source`):
each `pread` becomes ranged GETs, never a download. fsspec's own file objects
read ahead by megabytes (s3fs: 50 MiB blocks), so they are not used for reading;
ranges are asked for with `fs.cat_file(path, start, end)` (one request each; a
filesystem without ranged `cat_file` is opened with `cache_type="none"`).

Small reads are rounded out to `BLOCK`-sized, block-aligned ranges, adjacent
missing blocks are fetched as one range, and the blocks are kept per object in a
process-wide cache (`CACHE_BYTES`, least recently used objects dropped first):
the zip tail, central directory and side members, the pickle member and the
safetensors header are a handful of requests, and sniffing a file, then
inspecting it, does not fetch its head twice. Reads of `DIRECT` bytes or more
(tensor bytes, whole small files) go straight to storage and are not cached.

Every byte fetched is counted: into the reader's `Counter` (`ReadResult.bytes_read`)
and into a per-URL ledger (`transferred`), from which the audit reports the bytes
transferred per file. Object metadata (size, ETag, modification time) comes from
listings where the audit has listed (`remember`), else from one `info` request.

S3 (s3fs, the `[s3]` extra) honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`
and the usual AWS variables, so S3-compatible servers work. Storage failures
become `RemoteIOError` (an `OSError`, so readers report the file unreadable)
carrying a hint that says what to fix; a missing driver is a `UsageError`
naming the package to install.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ckreg.errors import UsageError
from ckreg.readers.fileio import Counter

BLOCK = 16 << 10             # small reads are rounded out to aligned blocks of this size
DIRECT = 256 << 10           # reads at least this long are fetched as asked, uncached
CACHE_BYTES = 64 << 20       # cached blocks per process, over all objects
CHUNK = 8 << 20              # streaming read size (hashing, tensor bytes): fewer round trips
WHOLE_FILE_LIMIT = 256 << 20  # formats read whole (ONNX) are refused above this, remotely
PREFETCH_THREADS = 16        # concurrent requests for scattered small ranges

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# packages each protocol's fsspec driver comes from, and the extra that installs it
_DRIVERS = {"s3": ("s3fs", "ckreg[s3]"), "s3a": ("s3fs", "ckreg[s3]"), "gs": ("gcsfs", None),
            "gcs": ("gcsfs", None), "az": ("adlfs", None), "abfs": ("adlfs", None), "abfss": ("adlfs", None)}
_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; for an S3-compatible "
                     "server also AWS_ENDPOINT_URL")


def is_url(path: Any) -> bool:
    """A URL with a scheme (`s3://...`, `memory://...`): read through fsspec, not the local file system."""
    try:
        text = os.fspath(path)
    except TypeError:
        return False
    return isinstance(text, str) and bool(_URL.match(text))


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def storage_options(url: str) -> dict:
    """S3: honour AWS_ENDPOINT_URL (s3fs/botocore versions differ on reading it themselves)."""
    if protocol(url) in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        opts: dict = {"use_listings_cache": False}
        if endpoint:
            opts["endpoint_url"] = endpoint
        return opts
    return {}


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URL; a missing driver is a UsageError naming the package."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **storage_options(url))
    except ImportError as exc:
        package, extra = _DRIVERS.get(protocol(url), (None, None))
        what = f"{protocol(url)}:// URLs need {package}" if package else f"no fsspec driver for {protocol(url)}://"
        hint = f"pip install '{extra}'" if extra else (f"pip install {package}" if package else str(exc))
        raise UsageError(f"reading {what}", path=url, hint=hint) from None
    except ValueError as exc:
        raise UsageError(f"invalid URL: {exc}", path=url) from None


class RemoteIOError(OSError):
    """A remote request that failed; `hint` says what to fix. `strerror` is the message."""

    def __init__(self, url: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.strerror = message
        self.filename = url
        self.url = url
        self.hint = hint

    def __str__(self) -> str:
        return self.strerror + (f" ({self.hint})" if self.hint else "")


class RemoteNotFound(RemoteIOError, FileNotFoundError):
    """No such object, prefix or bucket."""


def explain(url: str, exc: BaseException) -> RemoteIOError:
    """A storage exception (s3fs/botocore/aiohttp, or an OSError from fsspec) as a RemoteIOError with a fix."""
    if isinstance(exc, RemoteIOError):
        return exc
    name, text = type(exc).__name__, str(exc) or type(exc).__name__
    low = text.lower()
    if name in ("NoCredentialsError", "PartialCredentialsError") or "unable to locate credentials" in low:
        return RemoteIOError(url, "no credentials to read it", _CREDENTIALS_HINT)
    if isinstance(exc, PermissionError) or "accessdenied" in low.replace(" ", "") \
            or "invalidaccesskeyid" in low or "signaturedoesnotmatch" in low:
        return RemoteIOError(url, f"access denied ({text})",
                             "check that the credentials may list and read it (s3:ListBucket, s3:GetObject)")
    if isinstance(exc, FileNotFoundError):
        if "specified bucket does not exist" in low or "nosuchbucket" in low:
            return RemoteNotFound(url, "no such bucket",
                                  "check the bucket name; for an S3-compatible server set AWS_ENDPOINT_URL")
        return RemoteNotFound(url, "no such object or prefix")
    if "connect" in low or name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"):
        return RemoteIOError(url, f"cannot reach the storage service ({text})",
                             "check the network, and AWS_ENDPOINT_URL for an S3-compatible server")
    return RemoteIOError(url, f"{name}: {text}")


@contextlib.contextmanager
def storage_errors(url: str):
    """Inside the block, a failure of the storage stack becomes a `RemoteIOError` naming `url` and the fix
    (`explain`); anything else is a bug in ckreg and propagates as it is."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only the storage stack's errors are translated
        if not _storage_error(exc):
            raise
        raise explain(url, exc) from None


def _storage_error(exc: BaseException) -> bool:
    """Failures of the storage stack (not bugs in ckreg): OSError and the client libraries' own errors."""
    if isinstance(exc, OSError):
        return True
    mod = type(exc).__module__.split(".")[0]
    return mod in ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "gcsfs", "adlfs", "google", "azure",
                   "urllib3", "requests")


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """What a listing says about an object (or a prefix, `is_dir`)."""

    url: str
    size: int
    etag: str | None = None
    modified: str | None = None
    is_dir: bool = False


_lock = threading.Lock()
_INFO: dict[str, RemoteInfo] = {}            # canonical URL -> info
_LISTING: dict[str, list[str]] = {}          # canonical folder URL -> child names
_LEDGER: dict[str, list[int]] = {}           # canonical URL -> [bytes, requests]


def canonical(url: str) -> str:
    """One spelling per object (`s3://b/k`, trailing slashes dropped), for the caches and the ledger."""
    url = os.fspath(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def info_from(url: str, raw: dict) -> RemoteInfo:
    """An fsspec `info`/`find(detail=True)` entry as RemoteInfo."""
    etag = raw.get("ETag") or raw.get("etag") or raw.get("md5Hash") or raw.get("md5")
    mod = raw.get("LastModified") or raw.get("last_modified") or raw.get("mtime") or raw.get("updated") \
        or raw.get("created")
    return RemoteInfo(url=url, size=int(raw.get("size") or raw.get("Size") or 0),
                      etag=str(etag).strip('"') if etag else None, modified=str(mod) if mod is not None else None,
                      is_dir=raw.get("type") == "directory")


def remember(infos: list[RemoteInfo], listings: dict[str, list[str]] | None = None) -> None:
    """Record what a listing found (no `info` request is made for these later). An object whose size or
    ETag changed loses its cached blocks."""
    with _lock:
        for info in infos:
            key = canonical(info.url)
            old = _INFO.get(key)
            if old is not None and (old.size, old.etag) != (info.size, info.etag):
                _drop_blocks(key)
                _OBJECTS.pop(key, None)
            _INFO[key] = info
        for folder, names in (listings or {}).items():
            _LISTING[canonical(folder)] = list(names)


def forget(prefix: str) -> None:
    """Drop what is known about everything under `prefix` (before listing it again)."""
    base = canonical(prefix)
    with _lock:
        for table in (_INFO, _LISTING):
            for key in [k for k in table if k == base or k.startswith(base + "/")]:
                del table[key]
        for key in [k for k in _OBJECTS if k == base or k.startswith(base + "/")]:
            _drop_blocks(key)
            del _OBJECTS[key]


def stat(url: str) -> RemoteInfo:
    """Size, ETag and kind of an object or prefix (from a listing, else one `info` request).
    Raises RemoteNotFound / RemoteIOError (OSErrors) with a hint; a missing driver: UsageError."""
    key = canonical(url)
    got = _INFO.get(key)
    if got is not None:
        return got
    if key in _LISTING:
        return RemoteInfo(url=url, size=0, is_dir=True)
    fs, path = filesystem(url)
    with storage_errors(url):
        raw = fs.info(path)
    info = info_from(url, raw)
    with _lock:
        _INFO[key] = info
    return info


def isdir(url: str) -> bool:
    try:
        return stat(url).is_dir
    except OSError:
        return False


def listdir(url: str) -> list[str]:
    """Names directly under a prefix (objects and sub-prefixes), like os.listdir."""
    key = canonical(url)
    names = _LISTING.get(key)
    if names is not None:
        return list(names)
    fs, path = filesystem(url)
    with storage_errors(url):
        entries = fs.ls(path, detail=True)
    base = path.rstrip("/")
    infos, names = [], []
    for raw in entries:
        name = str(raw.get("name", "")).rstrip("/")
        if not name.startswith(base + "/"):
            continue
        child = name[len(base) + 1:]
        if not child or "/" in child:
            continue
        names.append(child)
        infos.append(info_from(f"{url.rstrip('/')}/{child}", raw))
    remember(infos, {url: names})
    return names


# --------------------------------------------------------------------------- the ledger


def _account(key: str, n: int) -> None:
    with _lock:
        entry = _LEDGER.setdefault(key, [0, 0])
        entry[0] += n
        entry[1] += 1


def transfers() -> dict[str, tuple[int, int]]:
    """A snapshot of the ledger: canonical URL -> (bytes fetched, requests) in this process."""
    with _lock:
        return {k: (v[0], v[1]) for k, v in _LEDGER.items()}


def transferred(url: str, *, folder: bool = False, since: dict[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(bytes, requests) fetched for `url` (with `folder`: every object under it), since a `transfers()` snapshot."""
    base = canonical(url)
    since = since or {}
    total_b = total_r = 0
    with _lock:
        keys = [k for k in _LEDGER if k.startswith(base + "/")] if folder else ([base] if base in _LEDGER else [])
        for k in keys:
            b, r = _LEDGER[k]
            b0, r0 = since.get(k, (0, 0))
            total_b += b - b0
            total_r += r - r0
    return total_b, total_r


# --------------------------------------------------------------------------- reading


class _Object:
    """One remote object: where it is, what it is, and its cached blocks."""

    def __init__(self, url: str, key: str, info: RemoteInfo):
        self.url, self.key, self.info = url, key, info
        self.fs, self.path = filesystem(url)
        self.blocks: dict[int, bytes] = {}
        self.exact: dict[int, bytes] = {}      # offset -> bytes fetched by `prefetch` (not block-aligned)
        self.lock = threading.Lock()
        self.ranged = _has_ranged_cat(self.fs)

    def fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end) in one request."""
        with storage_errors(self.url):
            if self.ranged:
                data = self.fs.cat_file(self.path, start=start, end=end)
            else:  # a plain file object, its read-ahead cache turned off
                with self.fs.open(self.path, "rb", cache_type="none") as fh:
                    fh.seek(start)
                    data = fh.read(end - start)
        data = bytes(data)
        _account(self.key, len(data))
        if len(data) != end - start:
            raise RemoteIOError(self.url, f"asked for bytes {start}..{end} and got {len(data)}: the object "
                                          f"changed since it was listed ({self.info.size} bytes)",
                                "audit it again")
        return data


def _has_ranged_cat(fs: Any) -> bool:
    """Whether `fs.cat_file(path, start, end)` is the filesystem's own ranged read (not fsspec's fallback,
    which opens the file with its default read-ahead cache)."""
    from fsspec.spec import AbstractFileSystem

    try:
        from fsspec.asyn import AsyncFileSystem
    except ImportError:  # pragma: no cover - fsspec always ships it
        AsyncFileSystem = None
    cls = type(fs)
    if AsyncFileSystem is not None and isinstance(fs, AsyncFileSystem):
        return cls._cat_file is not AsyncFileSystem._cat_file
    return cls.cat_file is not AbstractFileSystem.cat_file


_OBJECTS: "OrderedDict[str, _Object]" = OrderedDict()
_cached_bytes = 0


def _drop_blocks(key: str) -> None:
    """(under _lock) forget an object's cached blocks."""
    global _cached_bytes
    obj = _OBJECTS.get(key)
    if obj is not None:
        _cached_bytes -= sum(len(b) for b in obj.blocks.values())
        obj.blocks = {}
        obj.exact = {}


def _object(url: str) -> _Object:
    key = canonical(url)
    with _lock:
        obj = _OBJECTS.get(key)
        if obj is not None:
            _OBJECTS.move_to_end(key)
            return obj
    info = stat(url)
    if info.is_dir:
        raise RemoteIOError(url, "is a folder (a prefix), not an object")
    obj = _Object(url, key, info)
    with _lock:
        _OBJECTS.setdefault(key, obj)
        _OBJECTS.move_to_end(key)
        return _OBJECTS[key]


def _store(obj: _Object, first: int, data: bytes) -> None:
    global _cached_bytes
    with _lock:
        if _OBJECTS.get(obj.key) is not obj:   # dropped meanwhile (a new listing, or the cache is full)
            return
        for i in range(0, len(data), BLOCK):
            block = data[i:i + BLOCK]
            old = obj.blocks.get(first + i // BLOCK)
            obj.blocks[first + i // BLOCK] = block
            _cached_bytes += len(block) - (len(old) if old else 0)
        while _cached_bytes > CACHE_BYTES and len(_OBJECTS) > 1:
            key, victim = next(iter(_OBJECTS.items()))
            if victim is obj:
                _OBJECTS.move_to_end(key)
                continue
            _drop_blocks(key)
            del _OBJECTS[key]


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Consecutive block numbers as (first, last) runs."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and b == out[-1][1] + 1:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b, b))
    return out


class RemoteFile:
    """A remote object read by offset (the readers' `Source`); `counter.n` is the bytes it fetched."""

    chunk = CHUNK
    remote = True

    def __init__(self, url: str, counter: Counter | None = None):
        self.path = url
        self.counter = counter or Counter()
        self._obj = _object(url)
        self.size = self._obj.info.size

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (short only at the end of the object)."""
        if n <= 0 or offset < 0 or offset >= self.size:
            return b""
        end = min(self.size, offset + n)
        obj = self._obj
        got = obj.exact.get(offset)
        if got is not None and len(got) >= end - offset:
            return got[:end - offset]
        if end - offset >= DIRECT:   # as asked, after the cached blocks it starts with (a growing window)
            head = self._cached_prefix(offset, end)
            data = obj.fetch(offset + len(head), end)
            self.counter.n += len(data)
            return head + data
        first, last = offset // BLOCK, (end - 1) // BLOCK
        with _lock:
            have = {b: obj.blocks[b] for b in range(first, last + 1) if b in obj.blocks}
        missing = [b for b in range(first, last + 1) if b not in have]
        for lo, hi in _runs(missing):
            data = obj.fetch(lo * BLOCK, min(self.size, (hi + 1) * BLOCK))
            self.counter.n += len(data)
            _store(obj, lo, data)
            for i in range(lo, hi + 1):
                have[i] = data[(i - lo) * BLOCK:(i - lo + 1) * BLOCK]
        buf = b"".join(have[b] for b in range(first, last + 1))
        start = offset - first * BLOCK
        return buf[start:start + end - offset]

    def _cached_prefix(self, offset: int, end: int) -> bytes:
        """The bytes from `offset` that consecutive cached blocks hold (at most up to `end`)."""
        parts, b = [], offset // BLOCK
        with _lock:
            while b * BLOCK < end and b in self._obj.blocks:
                parts.append(self._obj.blocks[b])
                b += 1
        buf = b"".join(parts)[offset - (offset // BLOCK) * BLOCK:]
        return buf[:end - offset]

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch small, scattered ranges exactly and concurrently (a legacy file's storage headers);
        later `pread`s of them are answered from memory."""
        import concurrent.futures as cf

        obj = self._obj
        todo = [(o, min(self.size, o + n)) for o, n in ranges if 0 <= o < self.size and o not in obj.exact]
        if not todo:
            return

        def one(r: tuple[int, int]) -> tuple[int, bytes]:
            return r[0], obj.fetch(*r)

        with cf.ThreadPoolExecutor(max_workers=min(PREFETCH_THREADS, len(todo))) as ex:
            for start, data in ex.map(one, todo):
                self.counter.n += len(data)
                with _lock:
                    obj.exact[start] = data

    def close(self) -> None:
        pass

    def __enter__(self) -> "RemoteFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- paths


class RemotePath:
    """An object or prefix named by URL, with the few `pathlib.Path` operations the audit uses
    (`/`, `name`, `suffix`, `parent`, `relative_to`, `is_dir`, `is_file`, `read_text`); `os.fspath`
    gives the URL, so the readers open it as a remote source."""

    def __init__(self, url: str, *, is_dir: bool | None = None):
        url = os.fspath(url)
        scheme, _, rest = url.partition("://")
        self.url = f"{scheme}://{rest.rstrip('/')}" if rest.rstrip("/") else url
        self._is_dir = is_dir

    # identity
    def __fspath__(self) -> str:
        return self.url

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and canonical(self.url) == canonical(other.url)

    def __hash__(self) -> int:
        return hash(canonical(self.url))

    def __lt__(self, other: "RemotePath") -> bool:
        return self.url < other.url

    # names
    @property
    def _rest(self) -> str:
        return self.url.partition("://")[2]

    @property
    def name(self) -> str:
        return self._rest.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> "RemotePath":
        scheme = self.url.partition("://")[0]
        head = self._rest.rsplit("/", 1)[0] if "/" in self._rest else self._rest
        return RemotePath(f"{scheme}://{head}", is_dir=True)

    def __truediv__(self, name: str) -> "RemotePath":
        return RemotePath(f"{self.url}/{str(name).strip('/')}")

    def relative_to(self, other: "RemotePath | str") -> PurePosixPath:
        base = canonical(os.fspath(other))
        mine = canonical(self.url)
        if mine == base:
            return PurePosixPath(".")
        if not mine.startswith(base + "/"):
            raise ValueError(f"{self.url} is not under {other}")
        return PurePosixPath(mine[len(base) + 1:])

    def absolute(self) -> "RemotePath":
        return self

    def as_posix(self) -> str:
        return self.url

    # state
    @property
    def info(self) -> RemoteInfo | None:
        try:
            return stat(self.url)
        except OSError:
            return None

    def is_dir(self) -> bool:
        return self._is_dir if self._is_dir is not None else isdir(self.url)

    def is_file(self) -> bool:
        if self._is_dir:
            return False
        info = self.info
        return info is not None and not info.is_dir

    def exists(self) -> bool:
        return self.info is not None

    def is_symlink(self) -> bool:
        return False

    def read_bytes(self) -> bytes:
        from ckreg.readers.fileio import read_all

        return read_all(self.url)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)
