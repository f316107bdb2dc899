"""The SQLite index: WAL, Alembic schema version, refusal and explicit upgrade."""

from __future__ import annotations

import sqlite3

import pytest

from ckreg.errors import RegistryError
from ckreg.registry import Registry, schema
from reghelpers import add_revision, as_revision_0001, stub_add


def _sql(reg: Registry, query: str, *args):
    conn = sqlite3.connect(reg.db_path)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def test_new_registry_has_current_schema_and_wal(reg, blob_file):
    stub_add(reg, blob_file(1))
    assert reg.schema_version() == schema.current_version()
    if reg.index.dialect == "sqlite":
        assert _sql(reg, "PRAGMA journal_mode")[0][0] == "wal"
    assert [e.kind for e in reg.events()][:2] == ["registry-created", "registered"]


def test_missing_registry_says_how_to_create_one(tmp_path):
    reg = Registry(tmp_path / "nowhere")
    with pytest.raises(RegistryError, match=r"no registry at .*nowhere; create one with `ckreg registry add`"):
        reg.ls()
    assert not (tmp_path / "nowhere").exists(), "a read never creates a registry"


def test_default_location_is_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CKREG_REGISTRY", raising=False)
    assert Registry().root.as_posix() == "registry"
    monkeypatch.setenv("CKREG_REGISTRY", str(tmp_path / "elsewhere"))
    assert Registry().root == tmp_path / "elsewhere"
    assert Registry(tmp_path / "given").root == tmp_path / "given"


def test_older_schema_refuses_until_explicit_upgrade(tmp_path, blob_file, monkeypatch):
    path = tmp_path / "reg"
    with Registry(path) as old:
        stub_add(old, blob_file(1), aliases=["best"])
    old_version = schema.current_version()
    add_revision(monkeypatch, tmp_path, 'op.add_column("models", sa.Column("notes", sa.Text))')

    reg = Registry(path)
    with pytest.raises(RegistryError, match=rf"schema version {old_version}.*needs {old_version + 1}"
                                            r".*ckreg registry upgrade"):
        reg.ls()
    assert "notes" not in [r[1] for r in _sql(reg, "PRAGMA table_info(models)")], "no implicit migration"

    assert reg.upgrade() == (old_version, old_version + 1)
    assert reg.schema_version() == old_version + 1
    assert "notes" in [r[1] for r in _sql(reg, "PRAGMA table_info(models)")]
    assert [v.ref for v in reg.ls()] == ["GRU@1"] and reg.resolve("GRU@best").version == 1
    up = reg.events(kind="schema-upgraded")
    assert len(up) == 1 and up[0].data["from"] == old_version and up[0].data["to"] == old_version + 1
    backup = path / f"index.sqlite.v{old_version}.bak"
    assert backup.is_file()
    conn = sqlite3.connect(backup)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == f"{old_version:04d}"
    conn.close()
    assert reg.upgrade() == (old_version + 1,) * 2, "upgrading a current registry is a no-op"


def test_a_hand_written_v1_index_is_read_and_upgraded_through_alembic(tmp_path, blob_file, monkeypatch):
    """Indexes of earlier releases (a `schema_version` table, no Alembic stamp) are revision 0001."""
    path = tmp_path / "reg"
    with Registry(path) as r:
        stub_add(r, blob_file(1), aliases=["best"])
    as_revision_0001(path / "index.sqlite")
    conn = sqlite3.connect(path / "index.sqlite")
    conn.execute("DROP TABLE alembic_version")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.commit()
    conn.close()
    reg = Registry(path)
    assert reg.schema_version() == 1
    new = add_revision(monkeypatch, tmp_path)
    reg = Registry(path)
    with pytest.raises(RegistryError, match="ckreg registry upgrade"):
        reg.ls()
    assert reg.upgrade() == (1, new)
    assert _sql(reg, "SELECT version_num FROM alembic_version") == [(f"{new:04d}",)]
    assert reg.resolve("GRU@best").version == 1 and reg.artifacts("GRU@1") == []


def test_newer_schema_refuses_and_upgrade_does_not_downgrade(tmp_path, blob_file):
    with Registry(tmp_path / "reg") as r:
        stub_add(r, blob_file(1))
    conn = sqlite3.connect(tmp_path / "reg" / "index.sqlite")
    conn.execute("UPDATE alembic_version SET version_num = '0099'")
    conn.commit()
    conn.close()
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="newer than this ckreg"):
        reg.ls()
    with pytest.raises(RegistryError, match="newer than this ckreg"):
        reg.upgrade()
    with pytest.raises(RegistryError, match="newer than this ckreg"):
        reg.add(blob_file(2))


def test_a_foreign_sqlite_file_is_not_a_registry(tmp_path):
    (tmp_path / "reg").mkdir()
    conn = sqlite3.connect(tmp_path / "reg" / "index.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(RegistryError, match="not a ckreg registry"):
        Registry(tmp_path / "reg").ls()
