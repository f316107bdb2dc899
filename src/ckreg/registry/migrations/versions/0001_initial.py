"""The registry index: models, immutable versions, CAS aliases, append-only verifications and events.

Immutability and append-only are enforced in the database (triggers on each
dialect), so not even a careless SQL client can rewrite history. This
revision is the schema the hand-written SQLite index had as "schema_version 1".

Revision ID: 0001
Revises: None
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_GUARDED = {
    "versions": "registry versions are immutable",
    "verifications": "verifications are append-only",
    "events": "the event log is append-only",
}


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, sa.ForeignKey("models.name"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("family", sa.Text, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("source_path", sa.Text),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.Text),
        sa.Column("weights_sha256", sa.Text),
        sa.Column("scaler_sha256", sa.Text),
        sa.Column("scaler_json", sa.Text),
        sa.Column("pair_digest", sa.Text, nullable=False),
        sa.Column("class_names", sa.Text),
        sa.Column("provenance_json", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.CheckConstraint("version >= 1", name="versions_version_positive"),
        sa.UniqueConstraint("name", "version", name="versions_name_version"),
        sa.UniqueConstraint("name", "pair_digest", name="versions_name_pair"),
    )
    op.create_index("versions_sha256", "versions", ["sha256"])
    op.create_index("versions_scaler", "versions", ["scaler_sha256"])
    op.create_table(
        "aliases",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", "alias"),
        sa.ForeignKeyConstraint(["name", "version"], ["versions.name", "versions.version"]),
    )
    op.create_table(
        "verifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("accuracy", sa.Float),
        sa.Column("passed", sa.Integer),
        sa.Column("data_hash", sa.Text),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("verified_at", sa.Text, nullable=False),
        sa.Column("verified_by", sa.Text, nullable=False),
    )
    op.create_index("verifications_version", "verifications", ["version_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("who", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("version", sa.Integer),
        sa.Column("data_json", sa.Text, nullable=False),
        sqlite_autoincrement=True,   # ids are never reused, even after a rollback of the last row
    )
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for table, message in _GUARDED.items():
            for action, suffix in (("UPDATE", "u"), ("DELETE", "d")):
                op.execute(f"CREATE TRIGGER {table}_guard_{suffix} BEFORE {action} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    elif dialect == "postgresql":
        op.execute("""
            CREATE FUNCTION ckreg_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation'; END $$""")
        for table, message in _GUARDED.items():
            op.execute(f"CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION ckreg_refuse('{message}')")
            op.execute(f"CREATE TRIGGER {table}_guard_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION ckreg_refuse('{message}')")
    else:  # the guarantees are part of the schema: refuse a backend that cannot hold them
        raise RuntimeError(f"the registry index supports SQLite and PostgreSQL, not {dialect}")


def downgrade() -> None:
    raise RuntimeError("the registry index is never downgraded (restore the backup `upgrade` kept)")
