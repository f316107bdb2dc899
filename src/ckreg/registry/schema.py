"""The registry index's schema: Alembic migrations, an explicit version, explicit upgrades.

The schema is the chain of Alembic revisions in `ckreg/registry/migrations/versions`
(`0001`, `0002`, ...; the number is the schema version). A new index is created
by running them all; an index whose revision is older than this ckreg's head
refuses to open and tells the user to run `ckreg registry upgrade`; a newer one
refuses outright ("explicit schema version, never an implicit migration").

Indexes written by the hand-written SQLite schema of earlier releases carry a
`schema_version` table instead of Alembic's `alembic_version`; version 1 there
is revision 0001 here, and `upgrade` stamps them before migrating further.

Works on any connection SQLAlchemy gives (SQLite, PostgreSQL); migrations run
inside the caller's transaction.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
"""Where the revisions live (tests point it at a copy with an extra revision)."""

LEGACY_TABLE = "schema_version"
ALEMBIC_TABLE = "alembic_version"


def _script():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg, ScriptDirectory.from_config(cfg)


def _number(revision: str | None) -> int:
    if revision is None:
        return 0
    try:
        return int(revision)
    except ValueError:
        raise RuntimeError(f"registry revision ids are numbers, not {revision!r}") from None


def current_version() -> int:
    """The schema version this ckreg writes: the head revision's number."""
    _, script = _script()
    return _number(script.get_current_head())


def table_names(conn: sa.Connection) -> list[str]:
    return sa.inspect(conn).get_table_names()


def read_version(conn: sa.Connection) -> int | None:
    """The index's schema version, or None when it has no ckreg schema yet."""
    names = set(table_names(conn))
    if ALEMBIC_TABLE in names:
        row = conn.execute(sa.text(f"SELECT version_num FROM {ALEMBIC_TABLE}")).fetchone()
        if row is not None:
            return _number(row[0])
    if LEGACY_TABLE in names:
        row = conn.execute(sa.text(f"SELECT version FROM {LEGACY_TABLE}")).fetchone()
        return None if row is None else int(row[0])
    return None


def _revision_id(number: int) -> str:
    return f"{number:04d}"


def migrate(conn: sa.Connection, start: int, target: int) -> None:
    """Run revisions `start` -> `target` (0 = an empty database) inside the caller's transaction."""
    from alembic.runtime.environment import EnvironmentContext

    cfg, script = _script()
    names = set(table_names(conn))
    if start and ALEMBIC_TABLE not in names:   # a legacy index: record where it stands first
        conn.execute(sa.text(f"CREATE TABLE {ALEMBIC_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {ALEMBIC_TABLE} (version_num) VALUES (:v)"), {"v": _revision_id(start)})
    if LEGACY_TABLE in names:
        conn.execute(sa.text(f"UPDATE {LEGACY_TABLE} SET version = :v"), {"v": target})
    dest = _revision_id(target)

    def steps(rev, context):
        return script._upgrade_revs(dest, rev)

    with EnvironmentContext(cfg, script, fn=steps, destination_rev=dest) as env:
        env.configure(connection=conn, target_metadata=None, transactional_ddl=False)
        with env.begin_transaction():
            env.run_migrations()
