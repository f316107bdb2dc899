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
    conn.execute("UPDATE entries SET value = replace(value, '\"family\": \"', '\"family\": \"X')")  # a kept report
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


def _rewrite_same_size(path, data):
    """Rewrite a file in place: same size, a new mtime (what the cache key must notice)."""
    old = path.stat()
    assert len(data) == old.st_size
    path.write_bytes(data)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000))


@pytest.fixture
def counted(monkeypatch):
    """How many files the audit sniffs and inspects (small trees run in-process)."""
    import ckreg.audit as audit_mod
    import ckreg.readers.sniff as sniff_mod

    calls = {"sniffed": [], "inspected": []}
    real_classify, real_inspect = sniff_mod.classify, audit_mod._inspect_one

    def classify(path, head=None):
        calls["sniffed"].append(os.path.basename(path))
        return real_classify(path, head)

    def inspect_one(path, *a, **k):
        calls["inspected"].append(os.path.basename(path))
        return real_inspect(path, *a, **k)

    monkeypatch.setattr(sniff_mod, "classify", classify)
    monkeypatch.setattr(audit_mod, "_inspect_one", inspect_one)
    return calls


def test_an_unchanged_tree_reads_no_file_and_reports_the_same(demo, tmp_path, counted):
    cache = tmp_path / "c.sqlite"
    cold = audit(demo.root, demo.manifest, cache=cache)
    assert counted["inspected"] and counted["sniffed"]
    counted["sniffed"].clear(), counted["inspected"].clear()
    warm = audit(demo.root, demo.manifest, cache=cache)
    assert counted == {"sniffed": [], "inspected": []}
    assert warm.extra["cache"]["report_reused"] is True and "report_reused" not in cold.extra["cache"]
    assert _view(warm) == _view(cold)


def test_one_checkpoint_changed_in_place_is_the_only_file_read_again(demo, tmp_path, counted):
    cache = tmp_path / "c.sqlite"
    first = audit(demo.root, demo.manifest, cache=cache)
    n = len(first.extra["files"])
    target = demo.root / "checkpoints" / "GRU_best.ckpt"
    data = target.read_bytes()
    _rewrite_same_size(target, data[:-40] + b"\0" * 40)   # same size, broken tail
    counted["sniffed"].clear(), counted["inspected"].clear()
    again = audit(demo.root, demo.manifest, cache=cache)
    assert counted["sniffed"] == ["GRU_best.ckpt"] and counted["inspected"] == ["GRU_best.ckpt"]
    stats = again.extra["cache"]
    assert (stats["hits"], stats["misses"]) == (n - 1, 1) and "report_reused" not in stats
    assert _view(again) == _view(audit(demo.root, demo.manifest)) != _view(first)


def test_a_scaler_changed_in_place_is_read_again(tmp_path, torch_mod):
    import pickle

    import torch

    root = tmp_path / "a"
    root.mkdir()
    torch.save({"w": torch.zeros(4, 4)}, root / "m.pt")
    scaler = root / "scaler.pkl"
    scaler.write_bytes(pickle.dumps({"mean": [0.0] * 8, "scale": [1.0] * 8, "sklearn": 1}, protocol=4))
    cache = tmp_path / "c.sqlite"
    first = audit(root, cache=cache)
    _rewrite_same_size(scaler, pickle.dumps({"mean": [2.0] * 8, "scale": [3.0] * 8, "sklearn": 1}, protocol=4))
    again = audit(root, cache=cache)
    assert _view(again) == _view(audit(root))
    assert again.extra["scalers"]["scaler.pkl"] != first.extra["scalers"]["scaler.pkl"]


def test_the_reused_report_follows_the_tree_and_the_manifest(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    audit(demo.root, demo.manifest, cache=cache)
    (demo.root / "notes.txt").write_text("not a checkpoint\n")           # a new file: skipped, with the reason
    added = audit(demo.root, demo.manifest, cache=cache)
    assert "report_reused" not in added.extra["cache"] and _view(added) == _view(audit(demo.root, demo.manifest))
    assert any(s.path == "notes.txt" for s in added.skipped)
    assert audit(demo.root, demo.manifest, cache=cache).extra["cache"].get("report_reused")
    without = audit(demo.root, cache=cache)                              # no manifest: another report
    assert "report_reused" not in without.extra["cache"] and _view(without) == _view(audit(demo.root))
    text = demo.manifest.read_text()
    demo.manifest.write_text("# one line more\n" + text)                                 # every line moves
    moved = audit(demo.root, demo.manifest, cache=cache)
    assert "report_reused" not in moved.extra["cache"] and _view(moved) == _view(audit(demo.root, demo.manifest))
    assert "  params: 49816\n" in text
    demo.manifest.write_text(text.replace("  params: 49816\n", "  params: 49817\n"))   # a declaration changes
    edited = audit(demo.root, demo.manifest, cache=cache)
    assert "report_reused" not in edited.extra["cache"] and _view(edited) == _view(audit(demo.root, demo.manifest))


def test_a_cache_of_an_older_schema_is_set_aside_and_rebuilt(demo, tmp_path):
    cache = tmp_path / "c.sqlite"
    conn = sqlite3.connect(cache)
    conn.execute("CREATE TABLE meta (schema INTEGER NOT NULL)")
    conn.execute("INSERT INTO meta VALUES (1)")
    conn.commit()
    conn.close()
    rep = audit(demo.root, demo.manifest, cache=cache)
    assert rep.extra["cache"]["rebuilt"] is True and (tmp_path / "c.sqlite.corrupt").is_file()
    assert _view(rep) == _view(audit(demo.root, demo.manifest))


def test_the_cache_file_is_created_through_fsutil(demo, tmp_path, monkeypatch):
    from ckreg import fsutil

    published = []
    real = fsutil.publish
    monkeypatch.setattr(fsutil, "publish", lambda tmp, path, **k: (published.append(path), real(tmp, path, **k)))
    cache = tmp_path / "new" / "c.sqlite"
    audit(demo.root, demo.manifest, cache=cache)
    assert [str(p) for p in published] == [str(cache)] and not fsutil.leftover_temps(cache.parent)
    audit(demo.root, demo.manifest, cache=cache)
    assert len(published) == 1, "an existing cache is opened, never replaced"


def test_the_audit_keeps_the_fields_it_reads_of_an_inspection(demo):
    """Workers hand the audit (and the cache) `AUDIT_FIELDS` only; every other field is emptied on
    purpose, so a new field of `Inspection` needs a decision here."""
    from ckreg.audit import _EMPTY, AUDIT_FIELDS, _audit_view
    from ckreg.inspect import inspect_path
    from ckreg.inspect.model import Inspection

    assert set(AUDIT_FIELDS) | set(_EMPTY) == set(Inspection.model_fields) and not set(AUDIT_FIELDS) & set(_EMPTY)
    full = inspect_path(demo.root / "checkpoints" / "GRU_best.ckpt", hash_weights=True)
    view = _audit_view(full)
    assert all(getattr(view, k) == getattr(full, k) for k in AUDIT_FIELDS)
    assert view.candidates == [] and full.candidates and view.model_dump() == Inspection.model_validate_json(
        view.model_dump_json()).model_dump()


def test_a_name_that_is_not_utf8_is_cached_and_reported_the_same(demo, tmp_path):
    odd = os.fsdecode(b"notes-\xff.txt")   # a lone surrogate once decoded (os.walk's str names)
    (demo.root / odd).write_text("not a checkpoint\n")
    cache = tmp_path / "c.sqlite"
    cold = audit(demo.root, demo.manifest, cache=cache)
    warm = audit(demo.root, demo.manifest, cache=cache)
    # such a report is not kept whole (the cache stores UTF-8); its files' entries are
    assert warm.extra["cache"]["hits"] == len(cold.extra["files"]) and any(s.path == odd for s in warm.skipped)
    assert warm.skipped == cold.skipped and warm.findings == cold.findings


def test_a_checkpoint_whose_name_is_not_utf8_is_audited_with_a_cache(tmp_path, torch_mod):
    import torch

    root = tmp_path / "a"
    root.mkdir()
    odd = os.fsdecode(b"GRU-\xff.pt")
    torch.save({"w": torch.zeros(4, 4)}, root / odd)
    cache = tmp_path / "c.sqlite"
    first = audit(root, cache=cache)
    assert first.checked == [odd] and not first.errors
    assert audit(root, cache=cache).findings == first.findings == audit(root).findings


def _without_cache_figures(text):
    data = json.loads(text)
    data["extra"].pop("cache")
    return data


def test_the_cli_writes_a_reused_report_as_the_first_one(demo, tmp_path, monkeypatch):
    """Second `audit --json` of an unchanged tree: the kept JSON as is (not rebuilt), the same report,
    exit code and summary line as the first; other formats get the report validated from it."""
    from ckreg.findings import KeptReport

    args = ["audit", str(demo.root), "-m", str(demo.manifest), "--cache", str(tmp_path / "c.sqlite")]
    run = CliRunner().invoke
    cold, cold_table = run(cli, [*args, "--json"]), run(cli, [*args, "--no-cache"])
    rebuilt = []
    real = KeptReport.report
    monkeypatch.setattr(KeptReport, "report", lambda self: rebuilt.append(1) or real(self))
    warm = run(cli, [*args, "--json"])
    assert warm.exit_code == cold.exit_code == 1 and rebuilt == []
    assert json.loads(warm.stdout)["extra"]["cache"]["report_reused"] is True
    assert _without_cache_figures(warm.stdout) == _without_cache_figures(cold.stdout)
    assert warm.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1]
    table = run(cli, args)
    assert table.exit_code == 1 and rebuilt == [1] and table.stdout == cold_table.stdout
    out = tmp_path / "r.json"
    written = run(cli, [*args, "--json", "-o", str(out)])
    assert written.exit_code == 1 and _without_cache_figures(out.read_text()) == _without_cache_figures(cold.stdout)


def test_a_kept_report_that_does_not_validate_is_a_miss(demo, tmp_path):
    """A report entry whose digest holds but whose text is not a report (written by a broken
    ckreg): the library audits the tree again rather than trusting it."""
    from ckreg.inspect.cache import _digest

    cache = tmp_path / "c.sqlite"
    first = audit(demo.root, demo.manifest, cache=cache)
    conn = sqlite3.connect(cache)
    rows = conn.execute("SELECT key, value FROM entries").fetchall()
    kept = [(k, v) for k, v in rows if v.count("\n") > 100]
    assert len(kept) == 1
    key, value = kept[0]
    tree_key, head, body = value.split("\n", 2)
    broken = f"{tree_key}\n{head}\n" + body.replace('"findings": [', '"findings": [7, ', 1)
    conn.execute("UPDATE entries SET value = ?, digest = ? WHERE key = ?", (broken, _digest(key, broken), key))
    conn.commit()
    conn.close()
    again = audit(demo.root, demo.manifest, cache=cache)
    assert "report_reused" not in again.extra["cache"] and again.extra["cache"]["damaged_entries"] >= 1
    assert _view(again) == _view(first)
