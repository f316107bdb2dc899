"""`registry copy`: versions with their blobs, verifications, events and aliases, idempotently, both ways."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import IntegrityError
from ckreg.registry import Registry
from ckreg.registry.copy import copy_versions
from reghelpers import corrupt_blob, stub_add

VERIFIED = {"accuracy": 0.995, "passed": True, "data_hash": "d1"}


def _source(tmp_path, blob_file) -> Registry:
    src = Registry(tmp_path / "src")
    stub_add(src, blob_file(1), verification=VERIFIED)
    stub_add(src, blob_file(2), aliases=["best"])
    stub_add(src, blob_file(3), aliases=["prod"])
    src.alias("GRU", "best", 1)
    return src


def _state(reg: Registry) -> dict:
    return {v.ref: (v.sha256, v.pair_digest, sorted(v.aliases), v.verified, v.created_at) for v in reg.ls()}


def test_copy_to_either_backend_and_back_is_complete_and_idempotent(tmp_path, blob_file, reg):
    src = _source(tmp_path, blob_file)
    res = copy_versions(src, reg, "GRU")
    assert [(v.source, v.dest, v.created) for v in res.versions] == [("GRU@1", "GRU@1", True),
                                                                     ("GRU@2", "GRU@2", True),
                                                                     ("GRU@3", "GRU@3", True)]
    assert _state(reg) == _state(src)
    assert reg.resolve("GRU@best").version == 1 and reg.resolve("GRU@prod").version == 3
    assert reg.blobs.read_bytes(reg.resolve("GRU@2").sha256) == blob_file(2).read_bytes()
    assert [x.accuracy for x in reg.show("GRU@1").verifications] == [0.995]
    kinds = [e.kind for e in reg.events(name="GRU")]
    assert kinds.count("registered") == 3 and kinds.count("copied") == 3
    assert reg.verify() == []

    n_events = len(reg.events())
    again = copy_versions(src, reg, "GRU")
    assert not again.changed and len(reg.events()) == n_events, "a second copy changes nothing"

    back = Registry(tmp_path / "back")
    copy_versions(reg, back, "GRU@prod")
    assert [v.ref for v in back.ls()] == ["GRU@3"] and back.resolve("GRU@prod").version == 3


def test_copy_keeps_numbers_where_free_and_never_duplicates_a_pair(tmp_path, blob_file):
    src = _source(tmp_path, blob_file)
    dest = Registry(tmp_path / "dest")
    stub_add(dest, blob_file(9))                      # dest already has a GRU@1 of its own
    stub_add(dest, blob_file(2))                      # and src's GRU@2 pair, as its GRU@2
    res = copy_versions(src, dest, "GRU")
    assert [(v.source, v.dest, v.created) for v in res.versions] == [("GRU@1", "GRU@3", True),
                                                                     ("GRU@2", "GRU@2", False),
                                                                     ("GRU@3", "GRU@4", True)]
    assert dest.resolve("GRU@best").version == 3 and dest.resolve("GRU@prod").version == 4
    assert len(dest.ls()) == 4


def test_copy_refuses_a_damaged_source_blob(tmp_path, blob_file):
    src = _source(tmp_path, blob_file)
    corrupt_blob(src, src.resolve("GRU@2").sha256)
    dest = Registry(tmp_path / "dest")
    with pytest.raises(IntegrityError, match="corrupted"):
        copy_versions(src, dest, "GRU@2")
    assert not dest.blobs.exists(src.resolve("GRU@2").sha256)


def test_copy_cli(tmp_path, blob_file):
    _source(tmp_path, blob_file).close()
    run = CliRunner().invoke
    res = run(cli, ["registry", "copy", "GRU@best", "--registry", str(tmp_path / "src"), "--to", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "GRU@1 -> GRU@1: copied" in res.stdout
    res = run(cli, ["registry", "copy", "GRU@best", "--registry", str(tmp_path / "src"), "--to", str(tmp_path / "d"),
                    "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["versions"][0]["created"] is False
    assert Registry(tmp_path / "d").resolve("GRU@best").version == 1
    res = run(cli, ["registry", "copy", "GRU", "--registry", str(tmp_path / "src"), "--to-db", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and "--to-store" in res.output


def test_cli_reaches_a_registry_by_db_and_store_options_and_env(tmp_path, blob_file, monkeypatch):
    db, store = tmp_path / "idx" / "index.db", tmp_path / "blobs"
    with Registry(db=db, store=store) as r:
        stub_add(r, blob_file(1), aliases=["best"])
    assert (store / "blobs" / "sha256").is_dir() and db.is_file()
    run = CliRunner().invoke
    res = run(cli, ["registry", "ls", "--json", "--registry-db", str(db), "--registry-store", str(store)])
    assert res.exit_code == 0 and [v["ref"] for v in json.loads(res.stdout)] == ["GRU@1"]
    res = run(cli, ["registry", "--registry-db", str(db), "--registry-store", str(store), "verify"])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("CKREG_REGISTRY_DB", str(db))
    monkeypatch.setenv("CKREG_REGISTRY_STORE", str(store))
    res = run(cli, ["registry", "show", "GRU@best", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["version"]["version"] == 1


def test_registry_verify_finds_a_flipped_byte_in_either_store(reg, blob_file):
    v = stub_add(reg, blob_file(1))
    where = ["--registry", str(reg.root), "--registry-db", reg.db, "--registry-store", reg.store]
    run = CliRunner().invoke
    res = run(cli, ["registry", "verify", *where])
    assert res.exit_code == 0 and "1 blob(s) verified" in res.stdout, res.output
    corrupt_blob(reg, v.sha256, offset=7)
    res = run(cli, ["registry", "verify", "--json", *where])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False
    (problem,) = out["problems"]
    assert problem["kind"] == "corrupt" and problem["sha256"] == v.sha256 and problem["referenced_by"] == ["GRU@1"]
