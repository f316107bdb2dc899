"""Sharded audits (`ckreg audit --shard I/N`) and their merge (`ckreg report merge`).

The core promise: merging the N shard reports gives the report of the unsharded
audit (same findings, checked files, skipped files and errors), whatever N, with
duplicates, links, scalers and the files a missing model is compared with spread
over several shards.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_audit import save_ckpt, save_scaler

from ckreg.audit import audit, walk
from ckreg.cli import cli
from ckreg.errors import UsageError
from ckreg.findings import EXIT_OK, EXIT_USAGE, Report
from ckreg.report import render
from ckreg.shards import Shard, merge_reports, shard_of

WHOLE_ARCHIVE = {"model-missing", "duplicate-weights", "scaler-missing", "scaler-ambiguous",
                 "scaler-feature-mismatch", "scaler-duplicate"}

MANIFEST = """\
models:
  - {name: G, family: GRU, path: runs/GRU_best.ckpt, scaler: runs/scaler.json}
  - {name: L, family: GRU, path: linked/gru.ckpt, scaler: linked/scaler.json}
  - {name: S, family: StackedGRU, path: feat/st.ckpt, scaler: feat/scaler.json}
  - {name: D, family: GRU, path: declared/gru.ckpt, scaler: declared/gru_scaler.json}
  - {name: M, family: MSCSGRU, path: mscs/best.ckpt}
  - {name: G2, family: GRU, hyperparameters: {hidden_size: 99}}
"""


def _split(base: str, other: str, ns=(2, 3)) -> str:
    """A path like `base` (with {k}) that falls in another shard than `other` for every N in `ns`."""
    for k in range(1000):
        cand = base.format(k=k)
        if all(shard_of(cand, n) != shard_of(other, n) for n in ns):
            return cand
    raise AssertionError("no split name found")


@pytest.fixture
def archive(tmp_path, torch_mod) -> tuple[Path, Path]:
    """An archive whose whole-archive findings cross shards, and its manifest."""
    root = tmp_path / "zoo"
    best = save_ckpt(root / "runs" / "GRU_best.ckpt", "GRU", seed=7, meta={"epoch": 57})
    save_scaler(root / "runs" / "scaler.json")
    copy = root / _split("copy{k}/GRU_best.ckpt", "runs/GRU_best.ckpt")       # byte copy, other shard
    copy.parent.mkdir(parents=True)
    copy.write_bytes(best.read_bytes())
    save_ckpt(root / _split("v{k}/GRU_best-v1.ckpt", "runs/GRU_best.ckpt"), "GRU", seed=7, meta={"epoch": 58})
    hard = root / _split("hard{k}/GRU_hard.ckpt", "runs/GRU_best.ckpt")       # a hard link: counted once
    hard.parent.mkdir(parents=True)
    os.link(best, hard)
    save_ckpt(root / "linked" / "gru.ckpt", "GRU", seed=3)
    os.symlink(root / "runs" / "scaler.json", root / "linked" / "scaler.json")   # declared, walked as a link
    save_ckpt(root / "feat" / "st.ckpt", "StackedGRU", seed=4)
    save_scaler(root / "feat" / "scaler.json", n_features=10)                # feature mismatch
    save_ckpt(root / "declared" / "gru.ckpt", "GRU", seed=5)                  # declared scaler absent
    save_ckpt(root / "a" / "GRU_one.ckpt", "GRU", seed=11)                    # one sidecar for two models
    save_ckpt(root / "a" / "MSCSGRU_two.ckpt", "MSCSGRU", seed=12)
    save_scaler(root / _split("a/scaler{k}.json", "a/GRU_one.ckpt"))
    save_ckpt(root / "stacked" / "st.ckpt", "StackedGRU", seed=13)            # no scaler at all
    save_ckpt(root / "GRU_wrong.ckpt", "StackedGRU", seed=14)                 # the name says GRU
    for k in range(4):                                                        # G2 looks at the first five GRUs
        save_ckpt(root / f"more/g{k}.ckpt", "GRU", seed=20 + k)
    (root / "broken").mkdir()
    (root / "broken" / "model.ckpt").write_bytes(b"PK\x03\x04 not a zip")      # unreadable
    data = best.read_bytes()
    (root / "broken" / "half.ckpt").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a checkpoint")                       # skipped
    os.symlink(root / "nowhere.ckpt", root / "dangling.ckpt")                 # skipped: broken link
    m = tmp_path / "manifest.yaml"
    m.write_text(MANIFEST, encoding="utf-8")
    return root, m


def _normal(report: Report) -> dict:
    """The report as data, lists sorted, the run's own facts (jobs, cache, shard list) left out."""
    data = json.loads(report.model_dump_json())
    for key in ("jobs", "cache", "shards"):
        data["extra"].pop(key, None)
    for key in ("checked", "skipped", "errors", "findings"):
        data[key] = sorted(data[key], key=lambda v: json.dumps(v, sort_keys=True))
    return data


def _shards(root: Path, manifest: Path | None, n: int, out: Path, **kw) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, n + 1):
        r = audit(root, manifest, shard=f"{i}/{n}", jobs=1, **kw)
        p = out / f"shard-{i}-of-{n}.json"
        p.write_text(render(r, "json"), encoding="utf-8")
        paths.append(p)
    return paths


@pytest.mark.parametrize("n", [1, 2, 3])
def test_merged_shards_equal_the_unsharded_audit(archive, tmp_path, n):
    root, m = archive
    whole = audit(root, m, jobs=1)
    found = {f.code for f in whole.findings}
    assert WHOLE_ARCHIVE <= found and {"unreadable", "family-mislabeled"} <= found
    assert any("same file as" in s.reason for s in whole.skipped)
    paths = _shards(root, m, n, tmp_path / "reports")
    merged = merge_reports(paths)
    assert _normal(merged) == _normal(whole)
    assert merged.exit_code() == whole.exit_code()
    assert merged.extra["shards"]["count"] == n


def test_merge_equals_unsharded_without_a_manifest(archive, tmp_path):
    root, _ = archive
    whole = audit(root, jobs=1)
    assert _normal(merge_reports(_shards(root, None, 2, tmp_path / "r"))) == _normal(whole)


def test_a_shard_reports_what_files_say_and_leaves_the_rest_to_the_merge(archive, tmp_path):
    root, m = archive
    whole = audit(root, m, jobs=1)
    parts = [audit(root, m, shard=Shard(i, 3), jobs=1) for i in (1, 2, 3)]
    for i, r in enumerate(parts, 1):
        assert (r.extra["shard"]["index"], r.extra["shard"]["count"]) == (i, 3)
        assert not {f.code for f in r.findings} & WHOLE_ARCHIVE
        assert r.extra["shard"]["manifest"]["sha256"] == whole.extra["manifest"]["sha256"]
    # every checked file in exactly one shard; the union is the unsharded audit's
    checked = [rel for r in parts for rel in r.checked]
    assert len(checked) == len(set(checked))
    assert set(checked) <= set(whole.checked)
    # what a file says on its own is final in its shard
    local = {(f.code, f.path, f.message) for r in parts for f in r.findings}
    assert local == {(f.code, f.path, f.message) for f in whole.findings if f.code not in WHOLE_ARCHIVE}


def test_a_file_keeps_its_shard_when_files_are_added_or_the_tree_moves(archive, tmp_path, torch_mod):
    root, _ = archive

    def shares(where: Path, n: int) -> dict[str, int]:
        out = {}
        for i in range(1, n + 1):
            w = walk(where, owns=Shard(i, n).owns)
            for p in w.checkpoints + w.scalers:
                out[p.relative_to(where).as_posix()] = i
        return out

    before = shares(root, 3)
    assert len(set(before.values())) == 3
    for k in range(6):
        save_ckpt(root / f"new{k}" / "gru.ckpt", "GRU", seed=40 + k)
    after = shares(root, 3)
    assert {rel: after[rel] for rel in before} == before and len(after) == len(before) + 6
    moved = tmp_path / "elsewhere" / "zoo"
    shutil.copytree(root, moved, symlinks=True)   # (the copy's hard link is a file of its own)
    elsewhere = shares(moved, 3)
    assert {rel: elsewhere[rel] for rel in after} == after


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1/0", "0/0", "x", "1/", "/3", "2/-1", "1/2/3", ""])
def test_bad_shard_specs_are_usage_errors(tmp_path, spec):
    with pytest.raises(UsageError, match="--shard"):
        Shard.parse(spec)
    res = CliRunner().invoke(cli, ["audit", str(tmp_path), "--shard", spec])
    assert res.exit_code == EXIT_USAGE and "Traceback" not in res.output
    assert res.stderr.startswith("error: --shard") and len(res.stderr.strip().splitlines()) == 1


def test_shards_refuse_what_needs_the_whole_archive(archive, tmp_path):
    root, m = archive
    with pytest.raises(UsageError, match="--data"):
        audit(root, shard="1/2", data=tmp_path)
    with pytest.raises(UsageError, match="--lineage"):
        audit(root, shard="1/2", lineage=True)
    with pytest.raises(UsageError, match="not a folder"):
        audit(root / "runs" / "GRU_best.ckpt", shard="1/2")


def _tamper(path: Path, edit) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_merge_refuses_reports_that_do_not_belong_together(archive, tmp_path):
    root, m = archive
    two = _shards(root, m, 2, tmp_path / "two")
    three = _shards(root, m, 3, tmp_path / "three")

    def refused(paths, *words):
        with pytest.raises(UsageError) as err:
            merge_reports(paths)
        text = err.value.render()
        assert all(w in text for w in words), text

    refused([two[0], three[1]], str(three[1]), "shard count")
    refused([two[0], two[0]], "given twice")
    refused([two[0]], "2 of 2 missing")
    other = tmp_path / "other.yaml"
    other.write_text(MANIFEST.replace("hidden_size: 99", "hidden_size: 98"), encoding="utf-8")
    changed = _shards(root, other, 2, tmp_path / "changed")
    refused([two[0], changed[1]], str(changed[1]), "manifest")
    refused([two[0], _shards(root, m, 2, tmp_path / "all", hash_policy="all")[1]], "options")
    older = _tamper(Path(shutil.copy(two[1], tmp_path / "v.json")), lambda d: d.update(version="0.0.1"))
    refused([two[0], older], "v.json", "version")
    overlap = _tamper(Path(shutil.copy(two[1], tmp_path / "overlap.json")),
                      lambda d: d["checked"].append(json.loads(two[0].read_text())["checked"][0]))
    refused([two[0], overlap], "overlap.json", "overlap")
    plain = tmp_path / "plain.json"
    plain.write_text(render(audit(root, m, jobs=1), "json"), encoding="utf-8")
    refused([two[0], plain], "plain.json", "not a shard report")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json", encoding="utf-8")
    refused([junk], "junk.json", "not a ckreg JSON report")
    refused([tmp_path / "absent.json"], "absent.json", "no such report")


def test_an_empty_share_is_not_a_failure(tmp_path, torch_mod):
    root = tmp_path / "one"
    save_ckpt(root / "gru.ckpt", "GRU")
    save_scaler(root / "scaler.json")
    parts = [audit(root, shard=f"{i}/4", jobs=1) for i in range(1, 5)]
    assert any(not r.checked for r in parts)
    assert all(r.exit_code() == EXIT_OK for r in parts)


def test_cli_shards_then_merge(archive, tmp_path):
    root, m = archive
    runner = CliRunner()
    whole = runner.invoke(cli, ["audit", str(root), "-m", str(m), "--format", "json", "--no-cache"])
    out = tmp_path / "reports"
    for i in (1, 2, 3):
        res = runner.invoke(cli, ["audit", str(root), "-m", str(m), "--shard", f"{i}/3", "--format", "json",
                                  "--output", str(out / f"shard-{i}.json"), "--no-cache"])
        assert res.exit_code in (0, 1), res.output
    shards = sorted(str(p) for p in out.glob("shard-*.json"))
    res = runner.invoke(cli, ["report", "merge", *shards, "--format", "json"])
    assert res.exit_code == whole.exit_code == 1, res.output
    assert _normal(Report.model_validate_json(res.stdout)) == _normal(Report.model_validate_json(whole.stdout))
    assert "exit 1" in res.stderr
    # the table says where it came from; --output is never clobbered without --force
    res = runner.invoke(cli, ["report", "merge", *shards])
    assert res.exit_code == 1 and "merged from 3 shard reports" in res.stdout and "model-missing" in res.stdout
    merged = tmp_path / "merged.sarif"
    assert runner.invoke(cli, ["report", "merge", *shards, "--format", "sarif", "-o", str(merged)]).exit_code == 1
    assert json.loads(merged.read_text())["version"] == "2.1.0"
    res = runner.invoke(cli, ["report", "merge", *shards, "--format", "sarif", "-o", str(merged)])
    assert res.exit_code == EXIT_USAGE and "--force" in res.stderr
    assert runner.invoke(cli, ["report", "merge", *shards, "--fail-on", "never", "-o", str(merged),
                               "--force"]).exit_code == EXIT_OK
    # reports that do not belong together: one line naming the file
    res = runner.invoke(cli, ["report", "merge", shards[0], shards[0]])
    assert res.exit_code == EXIT_USAGE and "given twice" in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(cli, ["audit", str(root), "--shard", "1/3"])
    assert "--shard 1/3" in res.stdout and "ckreg report merge" in res.stdout
