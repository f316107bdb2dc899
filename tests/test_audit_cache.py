"""Incremental audits: cached inspections are reused only for unchanged files, and never trusted blindly."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from ckreg.audit import audit
from ckreg.cli import cli
from ckreg.inspect.cache import InspectionCache


@pytest.fixture
def demo(tmp_path, torch_mod):
    from ckreg.demo import make_demo

    return make_demo(tmp_path / "demo")


def _view(report):
    """What a user sees: findings, files and their summaries (the cache stats aside)."""
    data = json.loads(report.model_dump_json())
    data.get("extra", {}).pop("cache", None)
    return data


def test_second_audit_reuses_every_inspection_and_reports_the_same(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    plain = audit(demo.root, demo.manifest)
    first = audit(demo.root, demo.manifest, cache=cache)
    n = len(first.extra["files"])
    assert n >= 3 and first.extra["cache"]["hits"] == 0 and first.extra["cache"]["misses"] == n
    second = audit(demo.root, demo.manifest, cache=cache)
    assert second.extra["cache"]["hits"] == n and second.extra["cache"]["misses"] == 0
    assert _view(second) == _view(first) == _view(plain)


def test_same_size_rewrite_with_other_content_is_seen(tmp_path, torch_mod):
    import torch

    root = tmp_path / "a"
    root.mkdir()
    torch.save({"w": torch.zeros(4, 4)}, root / "m.pt")
    cache = tmp_path / "c.sqlite"
    first = audit(root, cache=cache)
    size = (root / "m.pt").stat().st_size
    data = (root / "m.pt").read_bytes()
    (root / "m.pt").write_bytes(data[:-40] + b"\0" * 40)   # same size, broken tail
    assert (root / "m.pt").stat().st_size == size
    st = (root / "m.pt").stat()
    os.utime(root / "m.pt", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    again = audit(root, cache=cache)
    assert again.extra["cache"]["hits"] == 0
    assert _view(again) == _view(audit(root)) != _view(first)


def test_a_corrupt_cache_file_is_rebuilt_not_trusted(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    cache.write_bytes(b"this is not a database" * 100)
    rep = audit(demo.root, demo.manifest, cache=cache)
    assert rep.extra["cache"]["rebuilt"] is True and rep.extra["cache"]["hits"] == 0
    assert _view(rep) == _view(audit(demo.root, demo.manifest))
    assert audit(demo.root, demo.manifest, cache=cache).extra["cache"]["misses"] == 0, "the rebuilt cache works"


def test_a_tampered_entry_is_a_miss(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    audit(demo.root, demo.manifest, cache=cache)
    conn = sqlite3.connect(cache)
    conn.execute("UPDATE entries SET value = replace(value, '\"family\":\"', '\"family\":\"X')")
    conn.commit()
    conn.close()
    rep = audit(demo.root, demo.manifest, cache=cache)
    assert rep.extra["cache"]["hits"] == 0 and rep.extra["cache"]["damaged_entries"] > 0
    assert _view(rep) == _view(audit(demo.root, demo.manifest))


def test_options_that_change_results_are_part_of_the_key(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    audit(demo.root, demo.manifest, cache=cache)
    other = audit(demo.root, demo.manifest, cache=cache, tiers=("torch",))
    assert other.extra["cache"]["hits"] == 0


def test_cli_cache_options(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("CKREG_CACHE_DIR", str(tmp_path / "user-cache"))
    run = CliRunner().invoke
    res = run(cli, ["audit", str(demo.root), "-m", str(demo.manifest), "--json", "--no-cache"])
    assert res.exit_code == 1 and "cache" not in json.loads(res.stdout)["extra"]
    assert not (tmp_path / "user-cache").exists(), "--no-cache writes nothing"
    res = run(cli, ["audit", str(demo.root), "-m", str(demo.manifest), "--json"])
    assert (tmp_path / "user-cache" / "inspections.sqlite").is_file()
    res = run(cli, ["audit", str(demo.root), "-m", str(demo.manifest), "--json", "--cache", str(tmp_path / "x.db")])
    assert json.loads(res.stdout)["extra"]["cache"]["path"] == str(tmp_path / "x.db")
    assert InspectionCache(tmp_path / "x.db").get_many(["nope"]) == {}
