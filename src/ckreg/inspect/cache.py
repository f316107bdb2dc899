"""A persistent cache of inspections, for incremental audits.

An entry is keyed by what identifies a file's bytes without reading them, plus
everything that changes the result: the absolute path, size, `st_mtime_ns`,
inode and device, the ckreg version and the caller's options (hash policy,
allowlist tiers, declared families). A file rewritten in place (same size, new
mtime) gets a new key, so it is inspected again. A remote object (`s3://...`) is keyed
by its URL, size and ETag from the listing (`remote_identity`).

The cache is a SQLite file (default: `inspections.sqlite` in the user cache
directory, `$CKREG_CACHE_DIR` or platformdirs). It is never trusted: every
value carries its own sha256 and is validated on the way out; a damaged entry
is a miss, and a file that is not a readable cache is set aside and rebuilt.
Writes are best effort (a read-only or busy cache slows the audit down, it
never fails it).

Besides inspections, the audit keeps what else it would recompute per file
(the content sniff of every file, each scaler's summary) and, per audited
tree and options, the last whole report with the key of everything it was
computed from (`ckreg.audit`): an unchanged archive is answered without
reading any file. All of them are entries of the one table, checked by the
same digest; a kept report's text is validated when it is turned back into a
`Report` (a JSON answer writes it as it is: `ckreg.findings.KeptReport`).

Writing: the database file is created through `ckreg.fsutil` (an empty,
initialised database under a temporary name, published without clobbering:
two audits starting at once agree on one file). From then on SQLite is the
writer of its own file: every change is one transaction, made atomic by
SQLite's rollback journal (`<cache>-journal`, https://www.sqlite.org/atomiccommit.html),
so a crash or a full disk leaves the previous state, never half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any, Iterable

from ckreg import __version__

SCHEMA = 2   # 2: digests bind key and value; sniff, scaler and report entries
FILE_NAME = "inspections.sqlite"


def default_path() -> Path:
    env = os.environ.get("CKREG_CACHE_DIR")
    if env:
        return Path(env) / FILE_NAME
    import platformdirs

    return Path(platformdirs.user_cache_dir("ckreg")) / FILE_NAME


def file_key(path: str | os.PathLike, options: dict[str, Any]) -> str | None:
    """The cache key of a file as it is now (None when it cannot be stat'ed)."""
    from ckreg.readers.fileio import is_url

    if is_url(path):
        ident = remote_identity(os.fspath(path))
        if ident is None:
            return None
        return hashlib.sha256(json.dumps([ident, __version__, options], sort_keys=True, default=str)
                              .encode()).hexdigest()
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_key(path, st, options)


def stat_ident(st: os.stat_result) -> list[int]:
    """What identifies a file's bytes without reading them (size, mtime_ns, inode, device)."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def stat_key(path: str | os.PathLike, st: os.stat_result, options: dict[str, Any]) -> str | None:
    """`file_key` from a stat result the caller already has (`os.stat(path)`, links followed)."""
    ident = [os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, __version__, options]
    if stat.S_ISDIR(st.st_mode):  # a model folder: its member files' states (shards rewritten in place)
        from ckreg.readers.folder import folder_members

        try:
            ident.append([[n, m.st_size, m.st_mtime_ns, m.st_ino] for n in folder_members(os.fspath(path))
                          for m in [os.stat(os.path.join(path, n))]])
        except OSError:
            return None
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def remote_identity(url: str) -> list | None:
    """A remote object as the listing shows it: URL, size and ETag (a remote store has no inode, and its
    modification time changes on an identical upload); a model folder: those of its member objects.
    None without an ETag (nothing then tells a rewritten object from the cached one)."""
    from ckreg.readers.folder import folder_members
    from ckreg.readers.remote import canonical, stat

    try:
        info = stat(url)
        if not info.is_dir:
            return [canonical(url), info.size, info.etag] if info.etag else None
        members = [[n, m.size, m.etag] for n in folder_members(url) for m in [stat(f"{url.rstrip('/')}/{n}")]]
    except OSError:
        return None
    if any(m[2] is None for m in members):
        return None
    return [canonical(url), "folder", members]


def _digest(key: str, value: str) -> str:
    """sha256 over key and value: a value is trusted only under the key it was stored with."""
    return hashlib.sha256(key.encode() + b"\0" + value.encode()).hexdigest()


class InspectionCache:
    """`get_many(keys)` -> {key: Inspection}; `put_many({key: Inspection})`; `get_values` /
    `put_values` for the other entries (text the caller parses and validates)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.hits = 0
        self.misses = 0
        self.rebuilt = False
        self.damaged = 0
        self._conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ file
    def _open(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
        except (OSError, sqlite3.Error):
            return None
        self._conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        for attempt in (0, 1):
            if not self.path.exists():
                self._create()
            try:
                conn = sqlite3.connect(str(self.path), timeout=10)
                conn.execute("PRAGMA busy_timeout = 10000")
                # No PRAGMA quick_check (it reads the whole file on every audit): a damaged page
                # surfaces as a DatabaseError where it is read (the cache is then set aside), and
                # a damaged value fails its key-bound digest (a miss).
                row = conn.execute("SELECT schema FROM meta").fetchone()
                conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
                if row is not None and row[0] == SCHEMA:
                    return conn
                conn.close()
            except sqlite3.DatabaseError:
                if attempt:
                    raise
            self._set_aside()
        raise sqlite3.DatabaseError("cannot rebuild the inspection cache")

    def _create(self) -> None:
        """A new, initialised cache, published through `ckreg.fsutil` (never over an existing file)."""
        from ckreg.errors import OutputExistsError
        from ckreg.fsutil import atomic_path

        try:
            with atomic_path(self.path) as tmp:
                conn = sqlite3.connect(str(tmp))
                try:
                    conn.execute("CREATE TABLE meta (schema INTEGER NOT NULL)")
                    conn.execute("INSERT INTO meta VALUES (?)", (SCHEMA,))
                    conn.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                                 " digest TEXT NOT NULL, at REAL NOT NULL)")
                    conn.commit()
                finally:
                    conn.close()
        except OutputExistsError:
            pass   # another audit created it meanwhile: use theirs

    def _set_aside(self) -> None:
        """A damaged cache is ckreg's own file: move it out of the way (kept once) and start afresh."""
        self.rebuilt = True
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm", "-journal"):
            try:
                os.remove(str(self.path) + suffix)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ entries
    def get_values(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: value} for the keys present whose value passes its digest (damaged ones are counted)."""
        keys = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, str] = {}
        conn = self._open()
        if conn is None or not keys:
            return out
        rows: list[tuple[str, str, str]] = []
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows += conn.execute(f"SELECT key, value, digest FROM entries WHERE key IN ({','.join('?' * len(chunk))})",
                                     chunk).fetchall()
        except sqlite3.DatabaseError:
            self.close()
            self._set_aside()
            return {}
        for key, value, digest in rows:
            if not isinstance(value, str) or _digest(key, value) != digest:
                self.damaged += 1
                continue
            out[key] = value
        return out

    def put_values(self, items: dict[str, str]) -> None:
        """Store {key: value} in one transaction (best effort: a cache that cannot be written is skipped)."""
        conn = self._open()
        if conn is None or not items:
            return
        now = time.time()
        rows = [(key, value, _digest(key, value), now) for key, value in items.items() if key]
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO entries (key, value, digest, at) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error:
            pass

    def get_many(self, keys: Iterable[str], count: bool = True) -> dict[str, Any]:
        """{key: Inspection} for the keys whose entry is intact and validates (the rest are misses;
        `count=False`: a look-up that is not counted in the hits and misses)."""
        from ckreg.inspect.model import Inspection

        keys = [k for k in keys if k]
        out: dict[str, Any] = {}
        for key, value in self.get_values(keys).items():
            try:
                out[key] = Inspection.model_validate_json(value)
            except ValueError:
                self.damaged += 1
        if count:
            self.hits += len(out)
            self.misses += len(keys) - len(out)
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        self.put_values({key: insp.model_dump_json() for key, insp in items.items() if key})

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "hits": self.hits, "misses": self.misses,
                "rebuilt": self.rebuilt, "damaged_entries": self.damaged}
