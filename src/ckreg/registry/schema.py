"""The SQLite index: schema, explicit versioning and explicit migration.

The schema version lives in its own table. A registry whose schema is older
than this ckreg refuses to open and tells the user to run
`ckreg registry upgrade`; a newer one refuses outright (issue #5: "explicit
schema version with `ckreg registry upgrade`, never an implicit migration").

`MIGRATIONS[i]` takes a database from schema `i` to `i + 1`; a new registry
is created by running them all. Immutability of versions and append-only
events are enforced by triggers, so not even a careless SQL client can
rewrite history.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

_V1 = """
CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE versions (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL REFERENCES models(name),
    version         INTEGER NOT NULL CHECK (version >= 1),
    family          TEXT NOT NULL,
    spec_json       TEXT NOT NULL,
    source_path     TEXT,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    format          TEXT,
    weights_sha256  TEXT,
    scaler_sha256   TEXT,
    scaler_json     TEXT,
    pair_digest     TEXT NOT NULL,
    class_names     TEXT,
    provenance_json TEXT,
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    UNIQUE (name, version),
    UNIQUE (name, pair_digest)
);
CREATE INDEX versions_sha256 ON versions(sha256);
CREATE INDEX versions_scaler ON versions(scaler_sha256);

CREATE TABLE aliases (
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);

CREATE TABLE verifications (
    id          INTEGER PRIMARY KEY,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    accuracy    REAL,
    passed      INTEGER,
    data_hash   TEXT,
    result_json TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    verified_by TEXT NOT NULL
);
CREATE INDEX verifications_version ON verifications(version_id);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    who       TEXT NOT NULL,
    kind      TEXT NOT NULL,
    name      TEXT,
    version   INTEGER,
    data_json TEXT NOT NULL
);

CREATE TRIGGER versions_immutable BEFORE UPDATE ON versions
BEGIN SELECT RAISE(ABORT, 'registry versions are immutable'); END;
CREATE TRIGGER versions_undeletable BEFORE DELETE ON versions
BEGIN SELECT RAISE(ABORT, 'registry versions are immutable'); END;
CREATE TRIGGER verifications_append_only_u BEFORE UPDATE ON verifications
BEGIN SELECT RAISE(ABORT, 'verifications are append-only'); END;
CREATE TRIGGER verifications_append_only_d BEFORE DELETE ON verifications
BEGIN SELECT RAISE(ABORT, 'verifications are append-only'); END;
CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    # statement by statement: executescript() would COMMIT the caller's transaction
    for statement in _statements(_V1):
        conn.execute(statement)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (triggers contain ';' inside BEGIN ... END)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text and sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    if "\n".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out


# MIGRATIONS[i]: schema i -> i + 1. Append only; never edit a released step.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1]


def current_version() -> int:
    """The schema version this ckreg writes (read at call time so tests can extend MIGRATIONS)."""
    return len(MIGRATIONS)


def read_version(conn: sqlite3.Connection) -> int | None:
    """The database's schema version, or None when it has no ckreg schema yet."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if row is None:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, start: int, target: int) -> None:
    """Run migrations start -> target inside the caller's transaction."""
    if start == 0:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    for step in range(start, target):
        MIGRATIONS[step](conn)
    conn.execute("UPDATE schema_version SET version = ?", (target,))
