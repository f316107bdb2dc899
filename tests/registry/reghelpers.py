"""Helpers shared by the registry tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ckreg.arch import ArchSpec
from ckreg.inspect.model import Inspection
from ckreg.registry import Registry

TINY = dict(hidden_size=8, num_classes=4)


def tiny_spec(family: str = "GRU") -> ArchSpec:
    return ArchSpec.for_family(family, **TINY)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stub_inspection(path: Path, spec: ArchSpec | None = None) -> Inspection:
    """What the inspector would say about a GRU file (sha256 is the real one)."""
    spec = spec or tiny_spec()
    return Inspection(path=str(path), format="stub", family=spec.family, hyperparameters=spec.weight_hparams(),
                      sha256=sha256_of(path),
                      weights_sha256=hashlib.sha256(b"weights:" + Path(path).read_bytes()).hexdigest())


def stub_add(reg: Registry, path: Path, name: str = "GRU", spec: ArchSpec | None = None, **kw):
    """Register arbitrary bytes as a GRU version (no torch, no inspector)."""
    spec = spec or tiny_spec()
    return reg.add(path, name=name, spec=spec, inspection=stub_inspection(path, spec), **kw)


def flip_byte(path: Path, offset: int = 100) -> None:
    """Corrupt one byte in place (blobs are read-only: make it writable first)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def add_revision(monkeypatch, tmp_path: Path, upgrade_body: str = "pass") -> int:
    """Pretend a newer ckreg added an Alembic revision (schema current+1); returns the new number."""
    import shutil

    from ckreg.registry import schema

    current = schema.current_version()
    loc = tmp_path / "migrations"
    shutil.copytree(schema.SCRIPT_LOCATION, loc, ignore=shutil.ignore_patterns("__pycache__"))
    new = current + 1
    (loc / "versions" / f"{new:04d}_test.py").write_text(
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        f"revision = '{new:04d}'\ndown_revision = '{current:04d}'\nbranch_labels = None\ndepends_on = None\n\n"
        f"def upgrade():\n    {upgrade_body}\n")
    monkeypatch.setattr(schema, "SCRIPT_LOCATION", loc)
    return new


def corrupt_blob(reg: Registry, sha256: str, offset: int = 100) -> None:
    """Flip one byte of a stored blob, wherever the store is (local folder or S3)."""
    if not reg.blobs.remote:
        flip_byte(reg.blobs.path_for(sha256), offset)
        return
    key = reg.blobs.location(sha256)
    data = bytearray(reg.blobs.fs.cat_file(key))
    data[offset % len(data)] ^= 0xFF
    reg.blobs.fs.pipe_file(key, bytes(data))


def delete_blob(reg: Registry, sha256: str) -> None:
    if not reg.blobs.remote:
        os.remove(reg.blobs.path_for(sha256))
    else:
        reg.blobs.fs.rm_file(reg.blobs.location(sha256))


def reg_env(reg: Registry, monkeypatch) -> None:
    """Point the CKREG_REGISTRY* variables at `reg`, whatever its backends."""
    monkeypatch.setenv("CKREG_REGISTRY", str(reg.root))
    monkeypatch.setenv("CKREG_REGISTRY_DB", reg.db)
    monkeypatch.setenv("CKREG_REGISTRY_STORE", reg.store)


def same_registry(reg: Registry) -> Registry:
    """A second handle on the registry `reg` is (same index, same store)."""
    return Registry(reg.root, db=reg.db, store=reg.store)


def as_revision_0001(index) -> None:
    """Turn a current index back into what revision 0001 wrote (no `artifacts` table), stamped 0001.

    `index`: a SQLite file, or a `Registry` (either engine). Revision 0002 only added
    `artifacts` (its index and guard triggers go with the table), so this is exactly
    an index an earlier ckreg left behind, including its `artifact` events.
    """
    import sqlalchemy as sa

    if isinstance(index, Registry):
        index.close()
        with index.index.write() as conn:
            conn.sa.execute(sa.text("DROP TABLE artifacts"))
            conn.sa.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        index.close()
        return
    import sqlite3

    conn = sqlite3.connect(index)
    conn.execute("DROP TABLE artifacts")
    conn.execute("UPDATE alembic_version SET version_num = '0001'")
    conn.commit()
    conn.close()
