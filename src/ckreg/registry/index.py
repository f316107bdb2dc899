"""The registry index behind SQLAlchemy Core: SQLite (embedded default) or PostgreSQL.

`Index(url)` hands out transactions. Writes are serialised the same way on
both engines, so the registry's rules (version numbers allocated under the
lock, compare-and-swap aliases) need no dialect-specific code above this:

- SQLite: WAL mode, a busy timeout, `BEGIN IMMEDIATE` for writes (the write
  lock is taken up front, so reads inside the transaction are current),
  `BEGIN` for reads (one snapshot).
- PostgreSQL (psycopg 3): writes take a transaction-scoped advisory lock first
  (READ COMMITTED: every statement after it sees all earlier commits); reads
  run in REPEATABLE READ (one snapshot).

Queries keep the registry's portable SQL with `?` placeholders; `Conn.execute`
binds them as SQLAlchemy parameters.
"""

from __future__ import annotations

import functools
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event

from ckreg.errors import RegistryError

BUSY_TIMEOUT_S = 60.0
_WRITE_LOCK_KEY = 0x636B726567   # "ckreg": the advisory lock every PostgreSQL writer takes
_QMARK = re.compile(r"\?")


def engine_url(db: str | os.PathLike) -> sa.engine.URL:
    """A SQLite path, `sqlite:///...`, or `postgresql://...` -> a SQLAlchemy URL (psycopg 3 for PostgreSQL)."""
    text = str(db)
    if "://" not in text:
        return sa.engine.make_url("sqlite://").set(database=str(Path(text)))
    try:
        url = sa.engine.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise RegistryError(f"invalid registry database URL {redact(text)!r}: {exc}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise RegistryError(f"unsupported registry database {redact(text)!r}",
                        hint="use a SQLite path or a postgresql://user@host/db URL")


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class Conn:
    """A connection inside one transaction; `execute(sql, args)` with `?` placeholders."""

    def __init__(self, conn: sa.Connection):
        self.sa = conn
        self.dialect = conn.dialect.name

    def execute(self, sql: str, args: tuple | list = ()) -> sa.CursorResult:
        clause, names = _text(sql)
        if len(names) != len(args):
            raise TypeError(f"{len(names)} placeholders, {len(args)} arguments: {sql}")
        return self.sa.execute(clause, dict(zip(names, args)))


class Index:
    """One index database (lazy engine, re-created after a fork)."""

    def __init__(self, db: str | os.PathLike):
        self.url = engine_url(db)
        self.dialect = self.url.get_backend_name()
        self.sqlite_path = Path(self.url.database) if self.dialect == "sqlite" and self.url.database else None
        self._engine: sa.Engine | None = None
        self._pid = os.getpid()

    @property
    def label(self) -> str:
        return str(self.sqlite_path) if self.sqlite_path is not None else self.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ engine
    @property
    def engine(self) -> sa.Engine:
        if self._engine is not None and self._pid != os.getpid():
            self._engine.dispose(close=False)   # inherited across fork: never use or close the parent's connections
            self._engine = None
        if self._engine is None:
            self._engine = self._make_engine()
            self._pid = os.getpid()
        return self._engine

    def _make_engine(self) -> sa.Engine:
        if self.dialect == "sqlite":
            # pooled: opening a SQLite connection (and its WAL set-up) costs more than most queries
            engine = sa.create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_S},
                                      poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=8)

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None   # we issue BEGIN ourselves (below)
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                cur.execute("PRAGMA foreign_keys = ON")
                deadline = time.monotonic() + BUSY_TIMEOUT_S
                while True:   # switching to WAL needs a moment alone with the file; retry while another opener has it
                    try:
                        mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                        break
                    except Exception as exc:
                        if "locked" not in str(exc) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                cur.close()
                if str(mode).lower() != "wal":
                    raise RegistryError(f"cannot switch the registry index to WAL mode (got {mode!r})",
                                        path=self.label, hint="put the registry on a local filesystem")

            @event.listens_for(engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ckreg_write") else "BEGIN")

            return engine
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise RegistryError("a PostgreSQL registry needs psycopg", hint="pip install 'ckreg[postgres]'") from None
        return sa.create_engine(self.url, pool_pre_ping=True, pool_size=2, max_overflow=4)

    def dispose(self) -> None:
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._engine = None

    # ------------------------------------------------------------------ transactions
    def file_exists(self) -> bool:
        """SQLite: the file is there. PostgreSQL: always True (the database is the server's)."""
        return self.sqlite_path is None or self.sqlite_path.is_file()

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise RegistryError(f"cannot open the registry index {self.label}: {_short(exc)}") from None
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[Conn]:
        with self._connect() as conn:
            conn.execution_options(ckreg_write=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _WRITE_LOCK_KEY})
                yield Conn(conn)

    @contextmanager
    def read(self) -> Iterator[Conn]:
        with self._connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield Conn(conn)

    @contextmanager
    def plain(self) -> Iterator[Conn]:
        """An ordinary (deferred) transaction, for schema checks."""
        with self._connect() as conn:
            with conn.begin():
                yield Conn(conn)

    def integrity_check(self) -> list[str]:
        """Problems the engine itself reports ([] = fine): SQLite's quick_check; PostgreSQL checks its pages itself."""
        if self.dialect != "sqlite":
            return []
        with self.read() as conn:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def backup_sqlite(self, dest: Path) -> None:
        """A consistent copy of the index at `dest` (before a migration): SQLite's backup API writes a
        temporary file that `fsutil` publishes; an existing `dest` is never replaced."""
        import sqlite3

        from ckreg.fsutil import atomic_path

        with atomic_path(dest) as tmp:
            src = sqlite3.connect(str(self.sqlite_path))
            try:
                out = sqlite3.connect(str(tmp))
                try:
                    src.backup(out)
                finally:
                    out.close()
            finally:
                src.close()


@functools.lru_cache(maxsize=512)
def _text(sql: str) -> tuple[sa.TextClause, tuple[str, ...]]:
    """`?` placeholders -> a (cached) SQLAlchemy text clause with named binds :p0, :p1, ..."""
    counter = iter(range(sql.count("?") + 1))
    names: list[str] = []

    def bind(_m):
        names.append(f"p{next(counter)}")
        return ":" + names[-1]

    return sa.text(_QMARK.sub(bind, sql)), tuple(names)


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
