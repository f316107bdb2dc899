"""Deployment artifacts as rows linked to their float version (append-only), with their metrics.

Before this revision an exported artifact (ONNX, INT8 ONNX, TorchScript) was
only an `artifact` event of its version. The `artifacts` table keeps one row
per export, linked by `version_id`, with the metrics a listing needs as
columns (format, quantization, status, accuracy, float accuracy, agreement,
latency mean/median, size) and the full record as JSON. The event log keeps
its `artifact` events; upgrading an index copies each of them into a row.

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MESSAGE = "deployment artifacts are append-only"


def _columns(record: dict) -> dict:
    """The row's metric columns from an artifact record (frozen here: the record format of revision 0002)."""
    def num(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    fmt = str(record.get("format") or "")
    quant = record.get("quantization")
    mode = quant.get("mode") if isinstance(quant, dict) else None
    if mode is None and fmt == "onnx-int8":
        mode = "dynamic"          # the only INT8 mode before static quantization was recorded
    lat = record.get("latency") if isinstance(record.get("latency"), dict) else {}
    files = record.get("files") if isinstance(record.get("files"), dict) else {}
    size = record.get("model_bytes")
    episodes = record.get("n_episodes")
    threads = record.get("threads")
    return {
        "format": fmt, "quantization": mode, "status": str(record.get("status") or ""),
        "accuracy": num(record.get("accuracy")), "float_accuracy": num(record.get("float_accuracy")),
        "agreement": num(record.get("agreement")),
        "latency_mean_ms": num(lat.get("mean_ms")), "latency_median_ms": num(lat.get("median_ms")),
        "threads": int(threads) if isinstance(threads, int) else None,
        "model_bytes": int(size) if isinstance(size, int) else None,
        "model_sha256": files.get(record.get("model_file")) if record.get("model_file") else None,
        "n_episodes": int(episodes) if isinstance(episodes, int) else None,
        "split": record.get("split"), "data_hash": record.get("data_hash"), "location": record.get("out"),
    }


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("quantization", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("accuracy", sa.Float),
        sa.Column("float_accuracy", sa.Float),
        sa.Column("agreement", sa.Float),
        sa.Column("latency_mean_ms", sa.Float),
        sa.Column("latency_median_ms", sa.Float),
        sa.Column("threads", sa.Integer),
        sa.Column("model_bytes", sa.BigInteger),
        sa.Column("model_sha256", sa.Text),
        sa.Column("n_episodes", sa.Integer),
        sa.Column("split", sa.Text),
        sa.Column("data_hash", sa.Text),
        sa.Column("location", sa.Text),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.CheckConstraint("status IN ('verified', 'failed')", name="artifacts_status"),
        sqlite_autoincrement=True,
    )
    op.create_index("artifacts_version", "artifacts", ["version_id"])
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for action, suffix in (("UPDATE", "u"), ("DELETE", "d")):
            op.execute(f"CREATE TRIGGER artifacts_guard_{suffix} BEFORE {action} ON artifacts "
                       f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END")
    elif dialect == "postgresql":   # ckreg_refuse() is revision 0001's
        op.execute("CREATE TRIGGER artifacts_guard BEFORE UPDATE OR DELETE ON artifacts "
                   f"FOR EACH ROW EXECUTE FUNCTION ckreg_refuse('{_MESSAGE}')")
        op.execute("CREATE TRIGGER artifacts_guard_truncate BEFORE TRUNCATE ON artifacts "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION ckreg_refuse('{_MESSAGE}')")
    else:
        raise RuntimeError(f"the registry index supports SQLite and PostgreSQL, not {dialect}")

    # an existing index: every `artifact` event becomes a row of its version (oldest first)
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT e.at, e.who, e.data_json, v.id FROM events e JOIN versions v"
        " ON v.name = e.name AND v.version = e.version WHERE e.kind = 'artifact' ORDER BY e.id")).fetchall()
    for at, who, data_json, vid in rows:
        try:
            record = json.loads(data_json)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        cols = _columns(record)
        if not cols["format"] or cols["status"] not in ("verified", "failed"):
            continue
        cols.update(version_id=vid, record_json=data_json, recorded_at=at, recorded_by=who)
        names = list(cols)
        conn.execute(sa.text(f"INSERT INTO artifacts ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"),
                     cols)


def downgrade() -> None:
    raise RuntimeError("the registry index is never downgraded (restore the backup `upgrade` kept)")
