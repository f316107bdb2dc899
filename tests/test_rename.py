"""`ckreg rename --infer` / `--undo` (issue #4, "Rename").

Most tests use *fake* checkpoints (JSON documents read by a content-based fake
inspector, `rename_helpers.fake_inspector`) so planning, applying, undo and
kill -9 run in milliseconds; the end-to-end tests at the bottom build tiny real
torch checkpoints and go through the real inspector and the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rename_helpers import FAKE_HP, HERE, fake_inspector, save_real, snapshot, state_dict, write_fake

from ckreg import rename as rn
from ckreg.cli import cli
from ckreg.errors import CkregError, UsageError
from ckreg.rename import (DEFAULT_TEMPLATE, JournalError, apply_rename, plan_rename, read_journal, undo_rename,
                          validate_template, variant_tokens)

SRC = Path(__file__).resolve().parents[1] / "src"


def plan(root, **kw):
    return plan_rename(root, inspector=fake_inspector, **kw)


def _inspector_ready() -> bool:
    try:
        from ckreg.inspect import inspect_paths  # noqa: F401
    except ImportError:
        return False
    return True


needs_inspector = pytest.mark.skipif(not _inspector_ready(), reason="ckreg.inspect.inspect_paths not available yet")


@pytest.fixture()
def archive(tmp_path):
    """A messy fake archive: misleading names, a duplicate with different bytes, companions, junk."""
    root = tmp_path / "arch"
    write_fake(root / "ckpts" / "GRU_best.ckpt", "StackedGRU", "w-stacked")           # name says GRU
    write_fake(root / "ckpts" / "GRU_best-v1.ckpt", "StackedGRU", "w-stacked", wrapper="epoch 7")  # same weights
    write_fake(root / "ckpts" / "MSCSGRU_best.ckpt", "MSCSGRU", "w-mscs")
    (root / "ckpts" / "scaler.pkl").write_bytes(b"shared scaler")                       # folder-level, shared
    write_fake(root / "best" / "model.pt", "MS3DGRU", "w-ms3d")
    (root / "best" / "model.scaler.pkl").write_bytes(b"its own scaler")                  # sidecar companion
    (root / "best" / "model.yaml").write_text("note: trained 2021\n")                    # another companion
    write_fake(root / "best" / "wrn.pth", "WRN", "w-wrn")
    (root / "best" / "broken.ckpt").write_bytes(b"PK\x03\x04 truncated")                  # unreadable
    write_fake(root / "best" / "mystery.bin", "unknown", "w-unknown")
    write_fake(root / "best" / "scaleX.ckpt", "ambiguous", "w-amb")
    (root / "README.txt").write_text("not a checkpoint\n")
    return root


# ------------------------------------------------------------------------- naming


def test_variant_tokens_write_layers_hidden_classes_and_only_non_defaults():
    assert variant_tokens("GRU", dict(num_layers=2, hidden_size=64, num_classes=24, input_size=8,
                                      proj_size=128, bidirectional=False, cell="GRU")) == ["l2", "h64", "k24"]
    assert variant_tokens("GRU", dict(num_layers=1, hidden_size=32, num_classes=10, input_size=6,
                                      proj_size=256, bidirectional=True)) == ["l1", "h32", "k10", "c6", "bi", "p256"]
    # the seed's drifted tower: 3x5x3 instead of 5x5x5
    assert variant_tokens("MS3DGRU", dict(num_layers=1, hidden_size=64, num_classes=24, cnn_filters=32, conv_dim=3,
                                          tower_kernels=[[3, 3, 3], [3, 5, 3], [7, 7, 7]])) == \
        ["l1", "h64", "k24", "t3_3x5x3_7"]
    assert variant_tokens("MS3DGRU", dict(num_layers=1, hidden_size=64, num_classes=24, cnn_filters=16,
                                          tower_kernels=[[3, 3, 3], [5, 5, 5], [7, 7, 7]])) == ["l1", "h64", "k24", "f16"]
    assert variant_tokens("WRN", dict(depth=28, widen_factor=3, conv_dim=2, num_classes=24)) == ["d28", "w3", "2d", "k24"]
    # "not recorded" strings are not values
    assert variant_tokens("StackedGRU", dict(num_layers=2, hidden_size="not recorded", num_classes=24)) == ["l2", "k24"]


@pytest.mark.parametrize("template,needle", [
    ("{family}-{nope}{ext}", "unknown --template field {nope}"),
    ("{family}-{hash8}", "has no {ext}"),
    ("{}-{hash8}{ext}", "positional"),
    ("{family.upper}{ext}", "attribute"),
    ("{family:d}{ext}", "bad --template"),
    ("sub/{family}{ext}", "no '/'"),
    ("{family}-{hash8{ext}", "bad --template"),
    ("{family} {hash8}{ext}", "characters"),
])
def test_bad_templates_are_usage_errors(template, needle):
    with pytest.raises(UsageError) as exc:
        validate_template(template)
    assert needle in exc.value.render()


def test_custom_template_renders_and_field_that_does_not_apply_skips(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    write_fake(tmp_path / "w.ckpt", "WRN", "w2")
    p = plan(tmp_path, template="{Family}_L{num_layers}_H{hidden_size:03d}_{hash:.12}{ext}")
    assert [m.new for m in p.moves] == [f"StackedGRU_L2_H064_{rn.hashlib.sha256(b'w1').hexdigest()[:12]}.ckpt"]
    assert p.skipped[0].path == "w.ckpt" and "{num_layers}" in p.skipped[0].reason


# ------------------------------------------------------------------------- planning


def test_dry_run_plans_by_content_and_touches_nothing(archive):
    before = snapshot(archive)
    mtimes = {p: p.stat().st_mtime_ns for p in archive.rglob("*")}
    p = plan(archive)
    assert snapshot(archive) == before
    assert {p: p.stat().st_mtime_ns for p in archive.rglob("*")} == mtimes
    assert not (archive / ".ckreg").exists()
    new = {m.old: m.new for m in p.moves}
    h = lambda w: rn.hashlib.sha256(w.encode()).hexdigest()[:8]  # noqa: E731
    assert new["best/model.pt"] == f"best/ms3dgru-l1-h64-k24-t3_3x5x3_7-{h('w-ms3d')}.pt"
    assert new["best/model.scaler.pkl"] == f"best/ms3dgru-l1-h64-k24-t3_3x5x3_7-{h('w-ms3d')}.scaler.pkl"
    assert new["best/model.yaml"] == f"best/ms3dgru-l1-h64-k24-t3_3x5x3_7-{h('w-ms3d')}.yaml"
    assert new["ckpts/MSCSGRU_best.ckpt"] == f"ckpts/mscsgru-l2-h64-k24-{h('w-mscs')}.ckpt"
    assert new["best/wrn.pth"] == f"best/wrn-d16-w1-1d-k24-{h('w-wrn')}.pth"
    # one of the identical pair gets the name, the other is reported, not renamed
    stacked = [o for o in new if o.startswith("ckpts/GRU_best")]
    assert stacked == ["ckpts/GRU_best.ckpt"] and new[stacked[0]].startswith("ckpts/stackedgru-l2-h64-k24-")
    assert "the old name says GRU" in next(m.reason for m in p.moves if m.old == stacked[0])
    dup = [f for f in p.findings if f.code == "duplicate-weights"]
    assert len(dup) == 1 and set(dup[0].message.split(": ")[1].split(", ")) == {"ckpts/GRU_best.ckpt", "ckpts/GRU_best-v1.ckpt"}
    reasons = {s.path: s.reason for s in p.skipped}
    assert "identical weights" in reasons["ckpts/GRU_best-v1.ckpt"]
    assert reasons["best/broken.ckpt"].startswith("unreadable")
    assert "no known family" in reasons["best/mystery.bin"]
    assert "ambiguous" in reasons["best/scaleX.ckpt"]
    # folder-level scaler and non-checkpoints never move
    assert "ckpts/scaler.pkl" not in new and "README.txt" not in new
    # a plan that can be carried out exits 0; its warnings fail only with --fail-on warning
    assert p.exit_code() == 0 and p.exit_code("warning") == 1


def test_duplicate_with_a_sidecar_scaler_keeps_the_name(tmp_path):
    write_fake(tmp_path / "a.ckpt", "GRU", "same")
    write_fake(tmp_path / "b.ckpt", "GRU", "same", wrapper="other bytes")
    (tmp_path / "b.scaler.pkl").write_bytes(b"b's scaler")
    p = plan(tmp_path)
    assert {m.old for m in p.moves} == {"b.ckpt", "b.scaler.pkl"}


def test_apply_then_second_run_plans_nothing_and_undo_restores_bytes(archive):
    before = snapshot(archive)
    p = plan(archive)
    j = apply_rename(p)
    after = snapshot(archive)
    assert j.path and Path(j.path).parent == archive / ".ckreg"
    assert sorted(after.values()) == sorted(before.values())          # same bytes, nothing lost or doubled
    for m in p.moves:
        assert not (archive / m.old).exists() and after[m.new] == before[m.old]
    again = plan(archive)
    assert again.moves == [] and again.empty
    assert len(again.unchanged) == len([m for m in p.moves if m.role == "checkpoint"])
    assert apply_rename(again).path is None                             # nothing to do: no journal
    assert len(list((archive / ".ckreg").glob("journal-*.jsonl"))) == 1
    u = undo_rename(archive)
    assert u.conflicts == [] and len(u.restored) == len(p.moves)
    assert snapshot(archive) == before
    with pytest.raises(JournalError, match="already undone"):
        undo_rename(archive)
    # undoing the same journal explicitly again is harmless
    assert undo_rename(j.path).already and snapshot(archive) == before


def test_collision_with_an_unrelated_file_is_not_clobbered(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    target = rn.render_name(DEFAULT_TEMPLATE, "StackedGRU", FAKE_HP["StackedGRU"],
                            rn.hashlib.sha256(b"w1").hexdigest(), ".ckpt")
    (tmp_path / target).write_bytes(b"someone else's file")
    before = snapshot(tmp_path)
    p = plan(tmp_path)
    assert p.moves == [] and [f.code for f in p.findings] == ["rename-collision"]
    apply_rename(p)
    assert snapshot(tmp_path) == before


def test_companion_collision_keeps_the_group_together(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    (tmp_path / "a.json").write_text("{}")
    new = plan(tmp_path).moves[0].new
    (tmp_path / (new[: -len(".ckpt")] + ".json")).write_text("taken")
    p = plan(tmp_path)
    assert p.moves == [] and "companion a.json" in p.skipped[0].reason


def test_target_appearing_after_planning_is_not_clobbered(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    write_fake(tmp_path / "b.ckpt", "MSCSGRU", "w2")
    p = plan(tmp_path)
    late = tmp_path / p.moves[0].new
    late.write_bytes(b"arrived late")
    (tmp_path / "b.ckpt").write_text((tmp_path / "b.ckpt").read_text() + " ")   # changed since planning
    j = apply_rename(p)
    assert j.applied == [] and late.read_bytes() == b"arrived late"
    assert {s.path for s in j.skipped} == {"a.ckpt", "b.ckpt"}
    assert (tmp_path / "a.ckpt").exists() and (tmp_path / "b.ckpt").exists()


def test_group_that_fails_half_way_goes_back_together(tmp_path, monkeypatch):
    """A companion that cannot move sends its checkpoint back: pairs are never split."""
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    (tmp_path / "a.scaler.pkl").write_bytes(b"a's scaler")
    before = snapshot(tmp_path)
    p = plan(tmp_path)
    real = rn._move_noclobber

    def flaky(src, dst):
        if str(src).endswith(".scaler.pkl"):
            raise FileExistsError(17, "raced", str(dst))
        return real(src, dst)

    monkeypatch.setattr(rn, "_move_noclobber", flaky)
    j = apply_rename(p)
    assert j.applied == [] and snapshot(tmp_path) == before
    assert [f.code for f in j.findings] == ["rename-collision"]
    assert [r["type"] for r in read_journal(j.path)][1:] == ["intent", "done", "intent", "failed", "reverted", "end"]
    monkeypatch.setattr(rn, "_move_noclobber", real)
    u = undo_rename(j.path)
    assert u.restored == [] and u.conflicts == [] and snapshot(tmp_path) == before


@pytest.mark.parametrize("strategy", ["syscall", "link", "check"])
def test_every_move_strategy_refuses_to_clobber(tmp_path, monkeypatch, strategy):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"src")
    dst.write_bytes(b"dst")
    fn = {"syscall": rn._noreplace_syscall, "link": rn._link_unlink, "check": rn._check_rename}[strategy]
    if strategy == "syscall" and rn._RENAMEAT2 is None and rn._RENAMEX_NP is None:
        pytest.skip("no no-replace rename syscall on this platform")
    with pytest.raises(FileExistsError):
        fn(str(src), str(dst))
    assert src.read_bytes() == b"src" and dst.read_bytes() == b"dst"
    dst.unlink()
    assert fn(str(src), str(dst)) is not False
    assert dst.read_bytes() == b"src" and not src.exists()


def test_fallback_without_syscall_or_links(tmp_path, monkeypatch):
    """Where neither a no-replace rename nor hard links exist, the check+rename path still works."""
    monkeypatch.setattr(rn, "_RENAMEAT2", None)
    monkeypatch.setattr(rn, "_RENAMEX_NP", None)
    monkeypatch.setattr(rn.os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(rn.errno.EPERM, "no links")))
    write_fake(tmp_path / "a.ckpt", "GRU", "w1")
    before = snapshot(tmp_path)
    apply_rename(plan(tmp_path))
    assert sorted(snapshot(tmp_path).values()) == sorted(before.values()) and not (tmp_path / "a.ckpt").exists()
    undo_rename(tmp_path)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------- journal and undo


def test_journal_records_intent_before_done(archive):
    j = apply_rename(plan(archive))
    recs = read_journal(j.path)
    assert recs[0]["type"] == "header" and recs[0]["root"] == str(archive) and recs[-1]["type"] == "end"
    kinds = [r["type"] for r in recs[1:-1]]
    assert kinds == ["intent", "done"] * (len(kinds) // 2)
    assert all(r["seq"] == recs[i + 1]["seq"] for i, r in enumerate(recs[:-1]) if r["type"] == "intent")


def test_undo_never_clobbers_and_reports_conflicts(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    write_fake(tmp_path / "b.ckpt", "GRU", "w2")
    p = plan(tmp_path)
    apply_rename(p)
    (tmp_path / "a.ckpt").write_bytes(b"a new file under the old name")
    u = undo_rename(tmp_path)
    assert [c.path for c in u.conflicts] == [next(m.new for m in p.moves if m.old == "a.ckpt")]
    assert (tmp_path / "a.ckpt").read_bytes() == b"a new file under the old name"
    assert (tmp_path / "b.ckpt").exists() and u.exit_code() == 1


def test_corrupted_and_torn_journals(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    before = snapshot(tmp_path)
    j = Path(apply_rename(plan(tmp_path)).path)
    good = j.read_bytes()
    j.write_bytes(good + b'{"type": "done", "se')          # killed mid-write: ignored
    assert undo_rename(j).restored and snapshot(tmp_path) == before
    j.write_bytes(good.replace(b'"type": "intent"', b'"type": "intent" garbage'))
    with pytest.raises(JournalError, match="line 2"):
        undo_rename(j)
    j.write_bytes(b"hello\n")
    with pytest.raises(JournalError):
        undo_rename(j)
    r = CliRunner().invoke(cli, ["rename", "--undo", str(j)])
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output.count("\n") == 1


def test_journal_paths_outside_the_root_are_refused(tmp_path):
    write_fake(tmp_path / "a.ckpt", "StackedGRU", "w1")
    j = Path(apply_rename(plan(tmp_path)).path)
    j.write_text(j.read_text().replace('"new": "', '"new": "../../etc/'))
    with pytest.raises(JournalError, match="outside"):
        undo_rename(j)


def test_interrupted_run_leaves_each_file_once_and_undo_restores(tmp_path):
    """kill -9 half-way (issue #4): every file under its old or new name; --undo still works."""
    root = tmp_path / "arch"
    for i in range(12):
        write_fake(root / f"d{i % 3}" / f"GRU_{i}.ckpt", "StackedGRU" if i % 2 else "MSCSGRU", f"w{i}")
        if i % 4 == 0:
            (root / f"d{i % 3}" / f"GRU_{i}.scaler.pkl").write_bytes(f"scaler {i}".encode())
    before = snapshot(root)
    planned = {m.old: m.new for m in plan(root).moves}
    env = dict(os.environ, CKREG_RENAME_TEST_DELAY="0.15", PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, str(HERE / "apply_fake.py"), str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jdir = root / ".ckreg"
    deadline = time.time() + 20
    while time.time() < deadline:
        journals = list(jdir.glob("journal-*.jsonl")) if jdir.is_dir() else []
        if journals and journals[0].read_text().count('"type": "done"') >= 4:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    after = snapshot(root)
    assert sorted(after.values()) == sorted(before.values())              # nothing lost, nothing doubled
    moved = [old for old, new in planned.items() if new in after]
    assert 0 < len(moved) < len(planned)                                   # really half-way
    for old, new in planned.items():
        assert (old in after) != (new in after)                            # exactly one of the two names
        assert after.get(old, after.get(new)) == before[old]
    # renaming again before undoing could orphan a companion: refused, and said in the plan
    again = plan(root)
    assert any("interrupted" in n for n in again.notes)
    with pytest.raises(CkregError, match="interrupted"):
        apply_rename(again)
    u = undo_rename(root)
    assert u.conflicts == []
    assert snapshot(root) == before
    assert not plan(root).notes and apply_rename(plan(root)).applied   # after undo, renaming works again


# ------------------------------------------------------------------------- manifest


MANIFEST = """\
# the archive's intent
version: 1
models:
  - name: stacked   # comment kept
    family: StackedGRU
    hyperparameters: {{num_layers: 2}}
    path: {a}
    scaler: 'ckpts/scaler.pkl'
  - name: ms3d
    family: MS3DGRU
    path: "best/model.pt"
    scaler: best/model.scaler.pkl
  - name: mscs
    family: MSCSGRU
    path: ckpts/MSCS*.ckpt
"""


def test_manifest_paths_follow_and_undo_restores_them_byte_for_byte(archive, tmp_path):
    mpath = tmp_path / "m.yaml"
    mpath.write_text(MANIFEST.format(a="ckpts/GRU_best.ckpt"))
    original = mpath.read_bytes()
    p = plan(archive, manifest=mpath)
    edits = {(e.model, e.field.split(".")[-1]): e.new for e in p.manifest_edits}
    new = {m.old: m.new for m in p.moves}
    assert edits == {("stacked", "path"): new["ckpts/GRU_best.ckpt"], ("ms3d", "path"): new["best/model.pt"],
                     ("ms3d", "scaler"): new["best/model.scaler.pkl"]}
    assert any("MSCS*.ckpt" in n for n in p.notes)                         # a glob that stops matching is said
    assert mpath.read_bytes() == original                                  # planning touches nothing
    j = apply_rename(p)
    assert j.manifest_updated
    text = mpath.read_text()
    assert "# comment kept" in text and "scaler: 'ckpts/scaler.pkl'" in text and f'path: "{new["best/model.pt"]}"' in text
    from ckreg.manifest import load_manifest

    m = load_manifest(mpath)
    for decl in m.models[:2]:
        assert (archive / decl.path).is_file() and (archive / decl.scaler).is_file()
    u = undo_rename(j.path)
    assert u.manifest_restored and mpath.read_bytes() == original


def test_manifest_edited_after_rename_is_not_overwritten_by_undo(archive, tmp_path):
    mpath = tmp_path / "m.yaml"
    mpath.write_text(MANIFEST.format(a="ckpts/GRU_best.ckpt"))
    apply_rename(plan(archive, manifest=mpath))
    mpath.write_text(mpath.read_text() + "# my edit\n")
    edited = mpath.read_bytes()
    u = undo_rename(archive)
    assert u.manifest_restored is False and mpath.read_bytes() == edited
    assert any(c.path == str(mpath) for c in u.conflicts)


# ------------------------------------------------------------------------- CLI (no inspector needed)


def test_cli_usage_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["rename", "--infer", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["rename", "--infer", str(tmp_path), "--template", "{family}{bogus}{ext}"])
    assert r.exit_code == 2 and "{bogus}" in r.output and "known fields" in r.output
    r = runner.invoke(cli, ["rename", str(tmp_path)])
    assert r.exit_code == 2 and "--infer" in r.output
    r = runner.invoke(cli, ["rename", "--undo", str(tmp_path)])
    assert r.exit_code == 2 and "no rename journal" in r.output
    r = runner.invoke(cli, ["rename", "--infer", str(tmp_path), "--undo"])
    assert r.exit_code == 2


def test_cli_refuses_to_apply_without_yes_when_not_interactive(tmp_path, monkeypatch):
    write_fake(tmp_path / "a.ckpt", "GRU", "w1")
    monkeypatch.setattr(rn, "_default_inspector", fake_inspector)
    before = snapshot(tmp_path)
    r = CliRunner().invoke(cli, ["rename", "--infer", str(tmp_path)])
    assert r.exit_code == 2 and "--yes" in r.output and snapshot(tmp_path) == before


def test_cli_dry_run_json_apply_and_undo(archive, monkeypatch):
    monkeypatch.setattr(rn, "_default_inspector", fake_inspector)
    runner = CliRunner()
    before = snapshot(archive)
    r = runner.invoke(cli, ["rename", "--infer", str(archive), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output                    # the duplicate is reported, a warning
    data = json.loads(r.output)
    assert any(f["code"] == "duplicate-weights" for f in data["plan"]["findings"])
    r = runner.invoke(cli, ["rename", "--infer", str(archive), "--dry-run", "--json", "--fail-on", "warning"])
    assert r.exit_code == 1, r.output
    assert data["dry_run"] and data["plan"]["moves"] and snapshot(archive) == before
    r = runner.invoke(cli, ["rename", "--infer", str(archive), "--dry-run"])
    assert "dry run: nothing changed" in r.output and "GRU_best.ckpt" in r.output and snapshot(archive) == before
    r = runner.invoke(cli, ["rename", "--infer", str(archive), "--yes"])
    assert r.exit_code == 0 and "journal:" in r.output              # a rename that succeeded exits 0
    assert "duplicate-weights" in r.output                           # ... and its warnings are shown
    moved = {m["old"]: m["new"] for m in data["plan"]["moves"]}
    assert all((archive / new).is_file() and not (archive / old).exists() for old, new in moved.items())
    assert plan(archive).empty
    r = runner.invoke(cli, ["rename", "--undo", str(archive), "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["restored"]) == len(moved)
    assert snapshot(archive) == before


# ------------------------------------------------------------------------- end to end: real checkpoints


@pytest.fixture()
def real_archive(tmp_path, torch_mod):
    root = tmp_path / "real"
    sg = state_dict("StackedGRU", seed=1)
    save_real(root / "old" / "GRU_best.ckpt", sg, epoch=3)                            # misleading name
    save_real(root / "old" / "GRU_best-v1.ckpt", sg, epoch=9)                         # same weights, other bytes
    save_real(root / "old" / "MSCSGRU_best.ckpt", state_dict("MSCSGRU", seed=2), lightning=False)
    (root / "old" / "scaler.pkl").write_bytes(b"shared")
    save_real(root / "best" / "ms3dgru_best.ckpt",
              state_dict("MS3DGRU", seed=3, kernels=((3, 3, 3), (3, 5, 3), (7, 7, 7))))  # drifted tower
    (root / "best" / "ms3dgru_best.scaler.json").write_text('{"mean": [0]}')
    save_real(root / "best" / "gru.pt", state_dict("GRU", seed=4, L=2), lightning=False)
    save_real(root / "best" / "cnn.pth", state_dict("CNNGRU", seed=5), lightning=False)
    (root / "best" / "broken.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    return root


@needs_inspector
def test_real_checkpoints_end_to_end_through_the_cli(real_archive):
    from ckreg.inspect import inspect_path

    runner = CliRunner()
    before = snapshot(real_archive)
    r = runner.invoke(cli, ["rename", "--infer", str(real_archive), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)["plan"]
    assert snapshot(real_archive) == before
    new = {m["old"]: m["new"] for m in p["moves"]}
    assert new["best/ms3dgru_best.scaler.json"].startswith(new["best/ms3dgru_best.ckpt"][: -len(".ckpt")])
    assert new["best/ms3dgru_best.ckpt"].split("/")[1].startswith("ms3dgru-l1-h16-k24-")
    assert "t3_3x5x3_7" in new["best/ms3dgru_best.ckpt"]
    assert new["best/gru.pt"].split("/")[1].startswith("gru-l2-h16-k24-")
    assert sum(o.startswith("old/GRU_best") for o in new) == 1
    assert any(f["code"] == "duplicate-weights" for f in p["findings"])
    assert {s["path"] for s in p["skipped"]} >= {"best/broken.ckpt"}
    r = runner.invoke(cli, ["rename", "--infer", str(real_archive), "--yes"])
    assert r.exit_code == 0, r.output
    for old, rel in new.items():
        f = real_archive / rel
        assert f.is_file() and not (real_archive / old).exists()
        if rel.endswith((".ckpt", ".pt", ".pth")):
            insp = inspect_path(f, hash_weights=True)                   # the name says what the weights say
            assert f.name.startswith(insp.family.lower() + "-") and insp.weights_sha256[:8] in f.name
    r = runner.invoke(cli, ["rename", "--infer", str(real_archive), "--dry-run", "--json"])
    assert json.loads(r.output)["plan"]["moves"] == []                   # idempotent
    r = runner.invoke(cli, ["rename", "--undo", str(real_archive)])
    assert r.exit_code == 0, r.output
    assert snapshot(real_archive) == before


@needs_inspector
def test_cli_run_killed_half_way_can_be_undone(tmp_path, torch_mod):
    root = tmp_path / "kill"
    for i in range(8):
        save_real(root / f"{i % 2}" / f"model_{i}.ckpt", state_dict("StackedGRU" if i % 2 else "GRU", seed=10 + i),
                  lightning=bool(i % 3))
    (root / "0" / "model_0.scaler.pkl").write_bytes(b"s0")
    before = snapshot(root)
    env = dict(os.environ, CKREG_RENAME_TEST_DELAY="0.4", PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", "from ckreg.cli import main; main()", "rename", "--infer", str(root),
                             "--yes"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jdir = root / ".ckreg"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        journals = list(jdir.glob("journal-*.jsonl")) if jdir.is_dir() else []
        if journals and journals[0].read_text().count('"type": "done"') >= 2:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"rename ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    after = snapshot(root)
    assert sorted(after.values()) == sorted(before.values())
    assert after != before                                                 # some moved
    assert any(not rel.split("/")[1].startswith("model_") for rel in after)
    assert any(rel.split("/")[1].startswith("model_") for rel in after)    # some did not
    r = CliRunner().invoke(cli, ["rename", "--undo", str(root)])
    assert r.exit_code == 0, r.output
    assert snapshot(root) == before
