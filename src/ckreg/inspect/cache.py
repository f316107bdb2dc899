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
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from ckreg import __version__

SCHEMA = 1
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
    ident = [os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, __version__, options]
    if os.path.isdir(path):  # a model folder: its member files' states (shards rewritten in place)
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


class InspectionCache:
    """`get_many(keys)` -> {key: Inspection}; `put_many({key: Inspection})`."""

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
            try:
                conn = sqlite3.connect(str(self.path), timeout=10)
                conn.execute("PRAGMA busy_timeout = 10000")
                ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                conn.execute("CREATE TABLE IF NOT EXISTS meta (schema INTEGER NOT NULL)")
                row = conn.execute("SELECT schema FROM meta").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES (?)", (SCHEMA,))
                elif row[0] != SCHEMA:
                    ok = False
                conn.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                             " digest TEXT NOT NULL, at REAL NOT NULL)")
                conn.commit()
                if ok:
                    return conn
                conn.close()
            except sqlite3.DatabaseError:
                if attempt:
                    raise
            self._set_aside()
        raise sqlite3.DatabaseError("cannot rebuild the inspection cache")

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
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        from ckreg.inspect.model import Inspection

        keys = [k for k in keys if k]
        out: dict[str, Any] = {}
        conn = self._open()
        if conn is None or not keys:
            self.misses += len(keys)
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
            self.misses += len(keys)
            return out
        for key, value, digest in rows:
            if hashlib.sha256(value.encode()).hexdigest() != digest:
                self.damaged += 1
                continue
            try:
                out[key] = Inspection.model_validate_json(value)
            except ValueError:
                self.damaged += 1
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        conn = self._open()
        if conn is None or not items:
            return
        now = time.time()
        rows = []
        for key, insp in items.items():
            if not key:
                continue
            value = insp.model_dump_json()
            rows.append((key, value, hashlib.sha256(value.encode()).hexdigest(), now))
        try:
            conn.executemany("INSERT OR REPLACE INTO entries (key, value, digest, at) VALUES (?, ?, ?, ?)", rows)
            conn.commit()
        except sqlite3.Error:
            pass

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "hits": self.hits, "misses": self.misses,
                "rebuilt": self.rebuilt, "damaged_entries": self.damaged}
