"""`ckreg.audit`: synthetic archives with misleading names, with and without a manifest (issue #4).

Checkpoints are built from `expected_layout` with tiny sizes (fast); every
finding code the audit emits has a test here that fails when the check breaks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ckreg.arch import ArchSpec
from ckreg.audit import audit, family_in_name, name_label, sniff, walk
from ckreg.errors import ManifestError, UsageError
from ckreg.findings import EXIT_FINDINGS, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, Report
from ckreg.inspect.layouts import expected_layout, param_counts
from ckreg.manifest import parse_manifest

# tiny hyperparameters per family: the layouts stay real, the files stay small
TINY = {
    "GRU": dict(hidden_size=4, proj_size=8, num_layers=1),
    "StackedGRU": dict(hidden_size=4, num_layers=2),
    "MSCSGRU": dict(hidden_size=4, cnn_filters=4),
    "MS3DGRU": dict(hidden_size=4, cnn_filters=2),
    "MS3DStackedGRU": dict(hidden_size=4, cnn_filters=2),
}


def tiny_spec(family: str, **hp) -> ArchSpec:
    return ArchSpec.for_family(family, **{**TINY.get(family, {}), **hp})


def save_ckpt(path: Path, family: str, *, seed: int = 0, meta: dict | None = None, lightning: bool = True, **hp) -> Path:
    """A Lightning-like checkpoint (`model.` prefix under `state_dict`) or a plain state_dict."""
    torch = pytest.importorskip("torch")
    spec = tiny_spec(family, **hp)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in expected_layout(spec).items():
        sd[name] = torch.tensor(0, dtype=torch.int64) if name.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
    obj = {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1, **(meta or {})} if lightning else sd
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def save_scaler(path: Path, n_features: int = 8) -> Path:
    """A ckreg scaler JSON (no sklearn needed)."""
    from ckreg.scaler import Scaler

    path.parent.mkdir(parents=True, exist_ok=True)
    Scaler(mean=[0.0] * n_features, scale=[1.0] * n_features, n_features=n_features, n_samples_seen=10).save_json(path)
    return path


def codes(report: Report, path: str | None = None) -> set[str]:
    return {f.code for f in report.findings if path is None or f.path == path}


def by_code(report: Report, code: str) -> list:
    return [f for f in report.findings if f.code == code]


def manifest(tmp_path: Path, text: str):
    p = tmp_path / "manifest.yaml"
    p.write_text(text, encoding="utf-8")
    return parse_manifest(text, source=str(p))


# -- classification and names ---------------------------------------------------------------------

def test_sniff_by_content_not_extension(tmp_path, torch_mod):
    zipped = save_ckpt(tmp_path / "weights.data", "GRU")           # torch zip under a neutral name
    legacy = tmp_path / "legacy.bin"
    torch_mod.save({"w": torch_mod.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    st = tmp_path / "x.weights"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    st.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    scaler_json = save_scaler(tmp_path / "norm.json")
    skl = tmp_path / "prep.pkl"
    skl.write_bytes(b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x1dsklearn.preprocessing._data\x94.")
    npz = tmp_path / "arrays.npz"
    import zipfile

    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("X.npy", b"\x93NUMPY")
    (tmp_path / "notes.txt").write_text("GRU_best")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert sniff(zipped) == "checkpoint"
    assert sniff(legacy) == "checkpoint"
    assert sniff(st) == "checkpoint"
    assert sniff(scaler_json) == "scaler"
    assert sniff(skl) == "scaler"
    assert sniff(npz) is None
    assert sniff(tmp_path / "notes.txt") is None
    assert sniff(tmp_path / "empty.ckpt") == "checkpoint"   # a strong extension: reported as unreadable, not ignored


@pytest.mark.parametrize("name,family", [
    ("GRU_best.ckpt", "GRU"), ("ms3dgru_best.ckpt", "MS3DGRU"), ("MSCSGRU", "MSCSGRU"),
    ("best-ms3dstackedgru-v2", "MS3DStackedGRU"), ("mscsgru_scaleaware_e40", "MSCSGRU_ScaleAware"),
    ("wrn16-1_student", "WRN"), ("stackedgru", "StackedGRU"), ("bigru_model", None), ("gruesome", None),
    ("model_final", None),
])
def test_family_in_name(name, family):
    assert family_in_name(name) == family


def test_name_label_prefers_file_then_nearest_folder():
    assert name_label("MSCSGRU/run1/best.ckpt") == ("MSCSGRU", "folder name 'MSCSGRU/'")
    assert name_label("MSCSGRU/GRU_best.ckpt")[0] == "GRU"
    assert name_label("runs/best.ckpt") is None
    assert name_label("best.ckpt", root_name="StackedGRU") == ("StackedGRU", "folder name 'StackedGRU/'")


# -- without a manifest: names are the labels -----------------------------------------------------

def test_mislabeled_by_file_name(tmp_path, torch_mod):
    save_ckpt(tmp_path / "GRU_best.ckpt", "StackedGRU")     # named GRU, holds a StackedGRU
    save_ckpt(tmp_path / "ms3dgru_best.ckpt", "MS3DGRU")    # honest name
    r = audit(tmp_path)
    bad = by_code(r, "family-mislabeled")
    assert [(f.path, f.expected, f.actual) for f in bad] == [("GRU_best.ckpt", "GRU", "StackedGRU")]
    assert r.exit_code() == EXIT_FINDINGS


def test_mislabeled_by_folder_name(tmp_path, torch_mod):
    save_ckpt(tmp_path / "MSCSGRU" / "best.ckpt", "GRU")
    r = audit(tmp_path)
    (f,) = by_code(r, "family-mislabeled")
    assert f.path == "MSCSGRU/best.ckpt" and "folder name 'MSCSGRU/'" in f.message


def test_layer_count_only_matters_with_a_manifest(tmp_path, torch_mod):
    save_ckpt(tmp_path / "GRU_best.ckpt", "GRU", num_layers=2)
    assert "family-mislabeled" not in codes(audit(tmp_path))


# -- with a manifest: declarations by path and by content -----------------------------------------

GRU_DECL = """
models:
  - name: GRU
    family: GRU
    hyperparameters: {{num_layers: 1, hidden_size: 4, proj_size: 8}}
    params: {params}
    path: GRU_best*.ckpt
"""


def test_layers_mismatch_and_model_missing_name_the_file(tmp_path, torch_mod):
    save_ckpt(tmp_path / "GRU_best.ckpt", "GRU", num_layers=2)
    m = manifest(tmp_path, GRU_DECL.format(params=param_counts(tiny_spec("GRU"))[0]))
    r = audit(tmp_path, m)
    (lm,) = by_code(r, "layers-mismatch")
    assert lm.path == "GRU_best.ckpt" and (lm.expected, lm.actual) == (1, 2)
    assert "2 GRU layers where 1 is declared" in lm.message
    (pc,) = by_code(r, "param-count-mismatch")
    assert pc.actual == param_counts(tiny_spec("GRU", num_layers=2))[0]
    (mm,) = by_code(r, "model-missing")
    assert mm.path == m.source and "GRU_best.ckpt (declared path)" in mm.message
    assert "GRU_best.ckpt" in mm.actual["looked_at"]
    assert mm.expected["line"] == 3
    assert r.extra["declarations"]["GRU"]["status"] == "missing"
    assert "shape-drift" not in codes(r)      # the layer count explains every differing tensor


def test_declaration_satisfied_by_content_elsewhere(tmp_path, torch_mod):
    save_ckpt(tmp_path / "moved" / "model.ckpt", "GRU")      # not at the declared path, but right
    m = manifest(tmp_path, GRU_DECL.format(params=param_counts(tiny_spec("GRU"))[0]))
    r = audit(tmp_path, m)
    assert codes(r) == {"scaler-missing"}           # not missing, not undeclared
    assert r.extra["declarations"]["GRU"]["by"] == "content"
    assert r.extra["declarations"]["GRU"]["files"] == ["moved/model.ckpt"]
    assert r.extra["files"]["moved/model.ckpt"]["satisfies"] == ["GRU"]


@pytest.mark.parametrize("declared,code", [
    ("hidden_size: 8", "hidden-size-mismatch"),
    ("num_classes: 10", "classes-mismatch"),
    ("input_size: 6", "input-size-mismatch"),
    ("proj_size: 16", "hyperparameter-mismatch"),
])
def test_hyperparameter_mismatches(tmp_path, torch_mod, declared, code):
    save_ckpt(tmp_path / "gru.ckpt", "GRU")
    m = manifest(tmp_path, f"models:\n  - name: G\n    family: GRU\n    path: gru.ckpt\n    hyperparameters: {{{declared}}}\n")
    r = audit(tmp_path, m)
    found = by_code(r, code)
    assert [f.path for f in found] == ["gru.ckpt"]
    assert "shape-drift" not in codes(r)
    assert "model-missing" in codes(r)


def test_shape_drift_names_the_tensor(tmp_path, torch_mod):
    save_ckpt(tmp_path / "stacked.ckpt", "MS3DStackedGRU")   # towers 3x3x3, 5x5x5, 7x7x7
    m = manifest(tmp_path, """
models:
  - name: S
    family: MS3DStackedGRU
    path: stacked.ckpt
    hyperparameters:
      tower_kernels: [[3, 3, 3], [3, 5, 3], [7, 7, 7]]
""")
    r = audit(tmp_path, m)
    (drift,) = by_code(r, "shape-drift")
    assert drift.path == "stacked.ckpt"
    assert set(drift.expected) == {"tower2.0.weight"}
    assert drift.expected["tower2.0.weight"][-3:] == [3, 5, 3]
    assert drift.actual["tower2.0.weight"][-3:] == [5, 5, 5]
    assert "hyperparameter-mismatch" not in codes(r)


def test_family_mislabeled_by_manifest(tmp_path, torch_mod):
    save_ckpt(tmp_path / "model.ckpt", "StackedGRU")
    m = manifest(tmp_path, "models:\n  - {name: G, family: GRU, path: model.ckpt}\n")
    r = audit(tmp_path, m)
    (f,) = by_code(r, "family-mislabeled")
    assert (f.path, f.expected, f.actual) == ("model.ckpt", "GRU", "StackedGRU")


def test_checkpoint_undeclared(tmp_path, torch_mod):
    save_ckpt(tmp_path / "gru.ckpt", "GRU")
    save_ckpt(tmp_path / "extra.ckpt", "MSCSGRU")
    m = manifest(tmp_path, "models:\n  - {name: G, family: GRU, path: gru.ckpt}\n")
    r = audit(tmp_path, m)
    assert [f.path for f in by_code(r, "checkpoint-undeclared")] == ["extra.ckpt"]


# -- scalers ---------------------------------------------------------------------------------------

def test_sidecar_scalers_pair_by_folder(tmp_path, torch_mod):
    save_ckpt(tmp_path / "a" / "GRU_best.ckpt", "GRU", seed=1)
    save_ckpt(tmp_path / "a" / "MSCSGRU_best.ckpt", "MSCSGRU", seed=2)
    save_scaler(tmp_path / "a" / "scaler.json")
    save_ckpt(tmp_path / "b" / "gru.ckpt", "GRU", seed=3)
    save_ckpt(tmp_path / "c" / "gru.ckpt", "GRU", seed=4)
    save_scaler(tmp_path / "c" / "scaler.json")
    r = audit(tmp_path)
    (amb,) = by_code(r, "scaler-ambiguous")
    assert amb.path == "a/scaler.json" and sorted(amb.actual) == ["a/GRU_best.ckpt", "a/MSCSGRU_best.ckpt"]
    assert [f.path for f in by_code(r, "scaler-missing")] == ["b/gru.ckpt"]
    assert r.extra["files"]["c/gru.ckpt"]["scaler"] == "c/scaler.json"
    assert r.extra["scalers"]["c/scaler.json"]["n_features"] == 8


def test_declared_scaler_missing_and_feature_mismatch(tmp_path, torch_mod):
    save_ckpt(tmp_path / "gru.ckpt", "GRU")
    save_ckpt(tmp_path / "other" / "st.ckpt", "StackedGRU")
    save_scaler(tmp_path / "other" / "scaler.json", n_features=10)
    m = manifest(tmp_path, """
models:
  - {name: G, family: GRU, path: gru.ckpt, scaler: gru_scaler.json}
  - {name: S, family: StackedGRU, path: other/st.ckpt, scaler: other/scaler.json}
""")
    r = audit(tmp_path, m)
    (missing,) = by_code(r, "scaler-missing")
    assert missing.path == "gru.ckpt" and "gru_scaler.json" in missing.message
    (fm,) = by_code(r, "scaler-feature-mismatch")
    assert (fm.path, fm.expected, fm.actual) == ("other/st.ckpt", 8, 10)


# -- duplicates, carried findings ------------------------------------------------------------------

def test_duplicate_weights_whatever_the_bytes(tmp_path, torch_mod):
    save_ckpt(tmp_path / "GRU_best.ckpt", "GRU", seed=7, meta={"epoch": 57})
    save_ckpt(tmp_path / "GRU_best-v1.ckpt", "GRU", seed=7, meta={"epoch": 58})   # same weights, other bytes
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "GRU_best.ckpt").write_bytes((tmp_path / "GRU_best.ckpt").read_bytes())
    save_ckpt(tmp_path / "GRU_other.ckpt", "GRU", seed=8)                            # same layout, other weights
    r = audit(tmp_path)
    dups = {f.path: f.expected for f in by_code(r, "duplicate-weights")}
    assert dups == {"GRU_best-v1.ckpt": "GRU_best.ckpt", "copy/GRU_best.ckpt": "GRU_best.ckpt"}
    files = r.extra["files"]
    assert files["GRU_best.ckpt"]["weights_sha256"] == files["GRU_best-v1.ckpt"]["weights_sha256"]
    assert files["GRU_other.ckpt"]["weights_sha256"] != files["GRU_best.ckpt"]["weights_sha256"]
    assert "duplicate-weights" not in codes(audit(tmp_path, hash_policy="none"))


def test_weights_hashed_only_where_layouts_collide(tmp_path, torch_mod, monkeypatch):
    import ckreg.audit as audit_mod

    save_ckpt(tmp_path / "gru.ckpt", "GRU")
    save_ckpt(tmp_path / "st.ckpt", "StackedGRU")
    monkeypatch.setattr(audit_mod, "INLINE_HASH_BYTES", 0)   # treat every file as large
    r = audit(tmp_path)
    assert all(v["weights_sha256"] is None for v in r.extra["files"].values())
    save_ckpt(tmp_path / "gru2.ckpt", "GRU", seed=5)        # now two files share a layout
    r = audit(tmp_path)
    hashed = {k for k, v in r.extra["files"].items() if v["weights_sha256"]}
    assert hashed == {"gru.ckpt", "gru2.ckpt"}
    r_all = audit(tmp_path, hash_policy="all")
    assert all(v["weights_sha256"] for v in r_all.extra["files"].values())


def test_unsafe_unreadable_and_metadata_findings_are_carried(tmp_path, torch_mod):
    (tmp_path / "evil.pt").write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.")  # never executed
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    good = save_ckpt(tmp_path / "meta.ckpt", "GRU", num_layers=2, meta={"hyper_parameters": {"num_layers": 1}})
    data = good.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    r = audit(tmp_path)
    assert "unsafe-global" in codes(r, "evil.pt")
    assert "unreadable" in codes(r, "broken.ckpt") and "unreadable" in codes(r, "truncated.ckpt")
    assert "metadata-contradicts-weights" in codes(r, "meta.ckpt")
    assert r.exit_code() == EXIT_FINDINGS


# -- exit codes ------------------------------------------------------------------------------------

def test_exit_codes(tmp_path, torch_mod):
    clean = tmp_path / "clean"
    save_ckpt(clean / "gru.ckpt", "GRU")
    save_scaler(clean / "scaler.json")
    assert audit(clean).exit_code() == EXIT_OK
    assert audit(clean / "gru.ckpt").exit_code() == EXIT_OK          # one file: its folder's scaler pairs
    missing = audit(tmp_path / "typo")
    assert missing.exit_code() == EXIT_USAGE and missing.errors[0].message == "no such file or folder"
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "README.md").write_text("no checkpoints here")
    save_scaler(empty / "scaler.json")                                # a scaler alone is nothing to check
    assert audit(empty).exit_code() == EXIT_NOTHING
    warn = tmp_path / "warn"
    save_ckpt(warn / "gru.ckpt", "GRU")                               # no scaler: a warning
    r = audit(warn)
    assert codes(r) == {"scaler-missing"}
    assert (r.exit_code("error"), r.exit_code("warning"), r.exit_code("never")) == (0, 1, 0)


def test_bad_arguments_raise_before_work(tmp_path):
    with pytest.raises(UsageError):
        audit(tmp_path, hash_policy="sometimes")
    with pytest.raises(UsageError):
        audit(tmp_path, jobs=0)
    with pytest.raises(ManifestError):
        audit(tmp_path, tmp_path / "no-manifest.yaml")


# -- walking: symlinks ------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlinks_never_followed_out_of_the_tree_or_round_a_loop(tmp_path, torch_mod):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    save_ckpt(root / "real" / "gru.ckpt", "GRU")
    save_ckpt(outside / "secret.ckpt", "StackedGRU")
    os.symlink(root, root / "real" / "loop")                 # folder loop
    os.symlink(outside, root / "out_dir")                    # folder outside
    os.symlink(outside / "secret.ckpt", root / "escape.ckpt")  # file outside
    os.symlink(root / "real" / "gru.ckpt", root / "alias.ckpt")  # file inside: counted once
    os.symlink(root / "nowhere.ckpt", root / "dangling.ckpt")
    w = walk(root)
    assert [p.relative_to(root).as_posix() for p in w.checkpoints] == ["real/gru.ckpt"]
    reasons = {s.path: s.reason for s in w.skipped}
    assert "not followed" in reasons["real/loop"]
    assert "outside" in reasons["out_dir"]
    assert "outside" in reasons["escape.ckpt"]
    assert "broken" in reasons["dangling.ckpt"]
    assert "same file as real/gru.ckpt" in reasons["alias.ckpt"]
    r = audit(root)
    assert len(r.checked) == 1 and r.skipped
    assert not any("secret" in (f.path or "") for f in r.findings)


def test_small_files_are_hashed_during_inspection(tmp_path, torch_mod):
    """Small files: streaming the bytes once beats parsing the pickle twice (bench_audit.py)."""
    save_ckpt(tmp_path / "gru.ckpt", "GRU")
    save_ckpt(tmp_path / "st.ckpt", "StackedGRU")
    r = audit(tmp_path)
    assert all(v["weights_sha256"] for v in r.extra["files"].values())


def test_parallel_inspection_and_progress(tmp_path, torch_mod, monkeypatch):
    import ckreg.audit as audit_mod

    monkeypatch.setattr(audit_mod, "INLINE_HASH_BYTES", 0)   # exercise the collision pass too
    for i in range(4):
        save_ckpt(tmp_path / f"GRU_{i}.ckpt", "GRU", seed=i)
    save_ckpt(tmp_path / "GRU_copy.ckpt", "GRU", seed=0, meta={"epoch": 9})
    calls = []
    r2 = audit(tmp_path, jobs=2, progress=lambda stage, done, total: calls.append((stage, done, total)))
    r1 = audit(tmp_path, jobs=1)
    assert r1.findings == r2.findings and r1.checked == r2.checked
    assert ("inspecting", 5, 5) in calls and ("hashing", 5, 5) in calls


# -- the real archive (issue #4, "Done when") -------------------------------------------------------

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "signglove.yaml"
BACKUP = "archive/checkpoints_backup/checkpoints_backup"


@pytest.mark.realdata
def test_real_archive_against_signglove_manifest(archive_dir):
    r = audit(archive_dir, MANIFEST)
    (lm,) = [f for f in by_code(r, "layers-mismatch") if f.path == f"{BACKUP}/GRU_best.ckpt"]
    assert (lm.expected, lm.actual) == (1, 2)
    (dup,) = by_code(r, "duplicate-weights")
    assert (dup.path, dup.expected) == (f"{BACKUP}/GRU_best-v1.ckpt", f"{BACKUP}/GRU_best.ckpt")
    missing = {f.expected["model"] for f in by_code(r, "model-missing")}
    assert missing == {"GRU", "StackedGRU", "MS3DStackedGRU"}
    (amb,) = by_code(r, "scaler-ambiguous")
    assert amb.path == f"{BACKUP}/scaler.pkl" and len(amb.actual) == 3
    status = r.extra["declarations"]
    assert status["MS3DGRU"]["files"] == ["best_model/ms3dgru_best.ckpt"]
    assert status["MSCSGRU"]["files"] == [f"{BACKUP}/MSCSGRU_best.ckpt"]
    assert r.exit_code() == EXIT_FINDINGS


@pytest.mark.realdata
def test_real_archive_without_manifest(archive_dir):
    r = audit(archive_dir)
    assert codes(r) == {"duplicate-weights", "scaler-ambiguous", "scaler-duplicate"}
    # the backup folder's shared scaler is byte for byte best_model's (MS3DGRU's) scaler
    (dup,) = by_code(r, "scaler-duplicate")
    assert dup.path == "archive/checkpoints_backup/checkpoints_backup/scaler.pkl"
    assert dup.expected == "best_model/scaler.pkl" and dup.actual == "same bytes"
    assert r.extra["files"]["best_model/ms3dgru_best.ckpt"]["family"] == "MS3DGRU"
    assert r.extra["scalers"]["best_model/scaler.pkl"]["paired_with"] == ["best_model/ms3dgru_best.ckpt"]


# -- the CLI: thin, report written before exiting ------------------------------------------------------

def test_cli_writes_the_report_then_exits(tmp_path, torch_mod):
    from click.testing import CliRunner

    from ckreg.cli import cli

    archive = tmp_path / "archive"
    save_ckpt(archive / "GRU_best.ckpt", "StackedGRU")
    out = tmp_path / "reports" / "audit.json"
    res = CliRunner().invoke(cli, ["audit", str(archive), "--format", "json", "--output", str(out)])
    assert res.exit_code == EXIT_FINDINGS, res.output
    r = Report.model_validate_json(out.read_text(encoding="utf-8"))
    assert "family-mislabeled" in codes(r)
    assert "exit 1" in res.stderr and res.stdout == ""
    # never overwrite: a second run refuses the existing report (before auditing) unless --force
    out.write_text("yesterday's report", encoding="utf-8")
    res = CliRunner().invoke(cli, ["audit", str(archive), "--format", "json", "--output", str(out)])
    assert res.exit_code == 2 and "--force" in res.output and "Traceback" not in res.output
    assert out.read_text(encoding="utf-8") == "yesterday's report"
    res = CliRunner().invoke(cli, ["audit", str(archive), "--format", "json", "--output", str(out), "--force"])
    assert res.exit_code == EXIT_FINDINGS and "family-mislabeled" in codes(Report.model_validate_json(out.read_text()))
    res = CliRunner().invoke(cli, ["audit", str(archive), "--fail-on", "never", "--format", "sarif"])
    assert res.exit_code == EXIT_OK and json.loads(res.stdout)["version"] == "2.1.0"


def test_cli_exit_codes_and_errors(tmp_path, torch_mod):
    from click.testing import CliRunner

    from ckreg.cli import cli

    runner = CliRunner()
    out = tmp_path / "r.xml"
    res = runner.invoke(cli, ["audit", str(tmp_path / "typo"), "--format", "junit", "-o", str(out)])
    assert res.exit_code == EXIT_USAGE and "no such file or folder" in out.read_text(encoding="utf-8")
    (tmp_path / "empty").mkdir()
    assert runner.invoke(cli, ["audit", str(tmp_path / "empty")]).exit_code == EXIT_NOTHING
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: A, family: GRUU}\n", encoding="utf-8")
    res = runner.invoke(cli, ["audit", str(tmp_path / "empty"), "-m", str(bad)])
    assert res.exit_code == EXIT_USAGE and f"{bad}:2: models[0].family" in res.output
    ckpt = save_ckpt(tmp_path / "x" / "model.ckpt", "GRU")
    res = runner.invoke(cli, ["audit", str(tmp_path / "x"), "-o", str(ckpt)])
    assert res.exit_code == EXIT_USAGE and "refusing to overwrite" in res.output
    assert ckpt.read_bytes()[:2] == b"PK"


# -- the --data hook (issue #5: ckreg.verify implements the verification) ------------------------------

def test_data_hook_passes_pairs_with_declared_accuracy(tmp_path, torch_mod, monkeypatch):
    import ckreg.verify as verify
    from ckreg.findings import Finding

    archive = tmp_path / "a"
    save_ckpt(archive / "gru.ckpt", "GRU")
    save_scaler(archive / "scaler.json")
    (tmp_path / "data").mkdir()
    m = manifest(tmp_path, "models:\n  - {name: G, family: GRU, path: gru.ckpt, metrics: {accuracy: 0.99, tolerance: 0.01}}\n")
    seen = {}

    def fake(pairs, data, results=None, **kw):
        seen["pairs"], seen["data"] = [p.model_dump() for p in pairs], data
        return [Finding.make("accuracy-below-declared", "0.50 < 0.99", path=str(archive / "gru.ckpt"))]

    monkeypatch.setattr(verify, "verify_for_audit", fake)
    r = audit(archive, m, data=tmp_path / "data")
    (pair,) = seen["pairs"]
    assert pair["ckpt"] == str(archive / "gru.ckpt") and pair["scaler"].endswith("scaler.json")
    assert (pair["expect_acc"], pair["tolerance"], pair["model"]) == (0.99, 0.01, "G")
    assert [(f.code, f.path) for f in by_code(r, "accuracy-below-declared")] == [("accuracy-below-declared", "gru.ckpt")]
    with pytest.raises(UsageError, match="--data"):
        audit(archive, m, data=tmp_path / "no-such-data")


def test_pre_commit_hooks_name_real_commands():
    import yaml
    from click.testing import CliRunner

    from ckreg.cli import cli

    hooks = yaml.safe_load((Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml").read_text())
    by_id = {h["id"]: h for h in hooks}
    assert by_id["ckreg-audit"]["entry"] == "ckreg audit" and by_id["ckreg-audit"]["language"] == "python"
    assert by_id["ckreg-audit"]["pass_filenames"] is False
    for hook in hooks:
        words = hook["entry"].split()
        assert words[0] == "ckreg"
        assert CliRunner().invoke(cli, [*words[1:], "--help"]).exit_code == 0


def test_declared_parameter_count_with_buffers(tmp_path, torch_mod):
    save_ckpt(tmp_path / "mscsgru.ckpt", "MSCSGRU")
    params, buffers = param_counts(tiny_spec("MSCSGRU"))
    assert buffers > 0
    ok = manifest(tmp_path, f"models:\n  - {{name: M, family: MSCSGRU, path: mscsgru.ckpt, params: {params + buffers}, "
                            f"params_include_buffers: true}}\n")
    assert "param-count-mismatch" not in codes(audit(tmp_path, ok))
    bad = manifest(tmp_path, f"models:\n  - {{name: M, family: MSCSGRU, path: mscsgru.ckpt, params: {params + buffers}}}\n")
    (f,) = by_code(audit(tmp_path, bad), "param-count-mismatch")
    assert (f.expected, f.actual) == (params + buffers, params)


def _git(repo: Path, *args: str, env=None):
    import subprocess

    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pre_commit_hook_audits_the_staged_files_only(tmp_path, torch_mod):
    """Through the real `pre-commit` tool, offline (a local repo with this hook's args and files pattern):
    an untracked malicious file does not block a clean commit; staged, it does."""
    import os
    import sys

    import yaml

    precommit = shutil.which("pre-commit") or str(Path(sys.executable).with_name("pre-commit"))
    if not Path(precommit).exists():
        pytest.skip("pre-commit is not installed (the dev extra brings it)")
    hook = {h["id"]: h for h in yaml.safe_load(
        (Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml").read_text())}["ckreg-audit"]
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert _git(repo, "init", "-q", env=env).returncode == 0
    local = {k: hook[k] for k in ("id", "name", "args", "pass_filenames", "require_serial", "files")}
    local.update(entry=f"{sys.executable} -m ckreg audit", language="system")
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    save_ckpt(repo / "models" / "gru.ckpt", "GRU")
    save_scaler(repo / "models" / "scaler.json")
    # an untracked file with a payload (posix.system) sits in the working tree
    (repo / "models" / "evil.pkl").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00hiq\x01\x85q\x02Rq\x03.")
    import subprocess

    assert subprocess.run([precommit, "install"], cwd=repo, env=env, capture_output=True).returncode == 0
    _git(repo, "add", ".pre-commit-config.yaml", "models/gru.ckpt", "models/scaler.json", env=env)
    ok = _git(repo, "commit", "-q", "-m", "a clean model", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ckreg audit" in ok.stdout + ok.stderr and "Passed" in ok.stdout + ok.stderr   # the hook did run
    assert (repo / "models" / "evil.pkl").exists()        # untouched, still untracked
    _git(repo, "add", "models/evil.pkl", env=env)
    bad = _git(repo, "commit", "-q", "-m", "a payload", env=env)
    assert bad.returncode != 0 and "unsafe-global" in bad.stdout + bad.stderr


def test_identical_scalers_are_a_finding(tmp_path, torch_mod):
    """Two runs never fit the same scaler: the same bytes, or the same statistics in another format, are flagged."""
    save_ckpt(tmp_path / "a" / "gru.ckpt", "GRU")
    save_scaler(tmp_path / "a" / "scaler.json")
    save_ckpt(tmp_path / "b" / "gru.ckpt", "GRU", seed=1)
    shutil.copy(tmp_path / "a" / "scaler.json", tmp_path / "b" / "scaler.json")           # same bytes
    r = audit(tmp_path)
    (f,) = by_code(r, "scaler-duplicate")
    assert (f.path, f.expected, f.actual) == ("b/scaler.json", "a/scaler.json", "same bytes")
    # the same statistics re-saved as JSON with other formatting: same content, other bytes
    doc = json.loads((tmp_path / "a" / "scaler.json").read_text())
    (tmp_path / "b" / "scaler.json").write_text(json.dumps(doc, indent=4))
    (f,) = by_code(audit(tmp_path), "scaler-duplicate")
    assert f.path == "b/scaler.json" and f.actual == "same mean and scale"
    # a different scaler is not a duplicate
    doc["mean"] = [m + 1.0 for m in doc["mean"]]
    (tmp_path / "b" / "scaler.json").write_text(json.dumps(doc))
    assert not by_code(audit(tmp_path), "scaler-duplicate")
