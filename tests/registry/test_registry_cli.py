"""`ckreg registry ...` and `ckreg export` through CliRunner, checked through the library (issue #5)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.registry import Registry
from reghelpers import add_revision, flip_byte, stub_add

VERIFIED = {"accuracy": 0.9, "passed": True, "per_class": {"a": 0.9}, "data_hash": "d", "confusion_matrix": [[9]]}


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _one_error_line(res):
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def test_add_ls_show_alias_events_through_the_cli(tmp_path, gru_ckpt, scaler_file):
    rp = tmp_path / "reg"
    path, _ = gru_ckpt(0)
    ver = tmp_path / "ver.json"
    ver.write_text(json.dumps(VERIFIED))
    prov = tmp_path / "prov.json"
    prov.write_text(json.dumps({"recipe": "train-split"}))
    res = run("registry", "add", path, "--scaler", scaler_file(0), "--alias", "best", "--verification", ver,
              "--provenance", prov, "--registry", rp)
    assert res.exit_code == 0, res.output
    assert "registered GRU@1" in res.stdout and "passed" in res.stdout
    v = Registry(rp).resolve("GRU@best")
    assert v.version == 1 and v.verified and v.provenance == {"recipe": "train-split"} and v.scaler is not None

    res = run("registry", "--registry", rp, "add", path, "--scaler", scaler_file(0))   # group-level --registry
    assert res.exit_code == 0 and "already registered as GRU@1" in res.stdout
    path2, _ = gru_ckpt(1)
    assert run("registry", "add", path2, "--name", "glove", "--registry", rp).exit_code == 0

    res = run("registry", "ls", "--json", "--registry", rp)
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [(r["name"], r["version"], r["aliases"], r["family"], r["accuracy"], r["verified"]) for r in rows] == [
        ("GRU", 1, ["best"], "GRU", 0.9, True), ("glove", 1, [], "GRU", None, False)]
    res = run("registry", "ls", "--registry", rp)
    assert res.exit_code == 0 and "GRU@1" in res.stdout and "glove@1" in res.stdout

    res = run("registry", "show", "GRU@best", "--json", "--registry", rp)
    assert res.exit_code == 0
    detail = json.loads(res.stdout)
    assert detail["version"]["sha256"] == v.sha256 and detail["verifications"][0]["accuracy"] == 0.9
    assert run("registry", "show", "GRU@best", "--registry", rp).exit_code == 0

    assert run("registry", "alias", "glove", "prod", "1", "--expect", "none", "--registry", rp).exit_code == 0
    res = run("registry", "alias", "glove", "prod", "1", "--expect", "none", "--registry", rp)
    assert res.exit_code == 2 and "moved meanwhile" in _one_error_line(res)
    assert Registry(rp).resolve("glove@prod").version == 1
    assert run("registry", "alias", "glove", "prod", "--delete", "--registry", rp).exit_code == 0
    assert Registry(rp).resolve("glove").aliases == []

    res = run("registry", "events", "--json", "--registry", rp)
    kinds = [e["kind"] for e in json.loads(res.stdout)]
    assert kinds == ["registry-created", "registered", "verified", "alias-moved", "registered", "alias-moved",
                     "alias-removed"]
    res = run("registry", "events", "--name", "glove", "--registry", rp)
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3


def test_registry_verify_exits_1_on_a_flipped_byte(tmp_path, blob_file):
    rp = tmp_path / "reg"
    with Registry(rp) as reg:
        v = stub_add(reg, blob_file(1))
    res = run("registry", "verify", "--registry", rp)
    assert res.exit_code == 0 and "ok: 1 blob(s)" in res.stdout
    flip_byte(Registry(rp).blobs.path_for(v.sha256))
    res = run("registry", "verify", "--registry", rp)
    assert res.exit_code == 1 and "corrupt" in res.stdout and "GRU@1" in res.stdout
    res = run("registry", "verify", "--json", "--registry", rp)
    assert res.exit_code == 1 and json.loads(res.stdout)["problems"][0]["kind"] == "corrupt"


def test_gc_is_a_dry_run_unless_applied(tmp_path, blob_file):
    rp = tmp_path / "reg"
    with Registry(rp) as reg:
        stub_add(reg, blob_file(1))
        orphan = reg.blobs.put_file(blob_file(2))
    res = run("registry", "gc", "--grace", "0", "--registry", rp)
    assert res.exit_code == 0 and "would remove 1 blob(s)" in res.stdout and orphan.path.exists()
    res = run("registry", "gc", "--grace", "0", "--apply", "--registry", rp)
    assert res.exit_code == 0 and "removed 1 blob(s)" in res.stdout and not orphan.path.exists()
    assert Registry(rp).verify() == []


def test_export_cli_and_its_refusals(tmp_path, gru_ckpt, scaler_file, monkeypatch):
    rp = tmp_path / "reg"
    path, _ = gru_ckpt(2)
    monkeypatch.setenv("CKREG_REGISTRY", str(rp))                       # the env var picks the registry
    assert run("registry", "add", path, "--scaler", scaler_file(2), "--alias", "prod").exit_code == 0
    out = tmp_path / "out"
    res = run("export", "GRU@prod", "--to", out, "--pkl")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.py", "scaler.json", "scaler.pkl", "weights.safetensors"]
    (out / "README.md").write_text("edited")
    res = run("export", "GRU@prod", "--to", out)
    assert res.exit_code == 2 and "refusing to overwrite" in _one_error_line(res)
    assert (out / "README.md").read_text() == "edited"
    assert run("export", "GRU@prod", "--to", out, "--force").exit_code == 0
    assert (out / "README.md").read_text().startswith("---\n")
    res = run("export", "GRU@staging", "--to", tmp_path / "o2")
    assert res.exit_code == 2 and "no alias 'staging'" in _one_error_line(res)


def test_user_errors_are_one_line_exit_2(tmp_path, blob_file):
    res = run("registry", "ls", "--registry", tmp_path / "nothing")
    assert res.exit_code == 2
    assert _one_error_line(res) == f"error: no registry at {tmp_path / 'nothing'}; create one with `ckreg registry add`"
    res = run("export", "GRU", "--to", tmp_path / "o", "--registry", tmp_path / "nothing")
    assert res.exit_code == 2 and "no registry at" in _one_error_line(res)
    with Registry(tmp_path / "reg") as reg:
        stub_add(reg, blob_file(1))
    res = run("registry", "show", "LSTM@best", "--registry", tmp_path / "reg")
    assert res.exit_code == 2 and "unknown model 'LSTM'" in _one_error_line(res)
    res = run("registry", "alias", "GRU", "best", "--registry", tmp_path / "reg")
    assert res.exit_code == 2 and "VERSION" in _one_error_line(res)


def test_upgrade_cli(tmp_path, blob_file, monkeypatch):
    rp = tmp_path / "reg"
    with Registry(rp) as reg:
        stub_add(reg, blob_file(1))
    new = add_revision(monkeypatch, tmp_path)
    res = run("registry", "ls", "--registry", rp)
    assert res.exit_code == 2 and "ckreg registry upgrade" in _one_error_line(res)
    res = run("registry", "upgrade", "--registry", rp)
    assert res.exit_code == 0 and f"from schema {new - 1} to {new}" in res.stdout
    assert run("registry", "ls", "--registry", rp).exit_code == 0
    res = run("registry", "upgrade", "--registry", rp)
    assert res.exit_code == 0 and "nothing to do" in res.stdout


HANGUL = ["ㄱ", "ㄴ", "ㄷ", "ㄹ", "ㅁ", "ㅂ", "ㅅ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ",
          "ㅍ", "ㅎ", "ㅏ", "ㅑ", "ㅓ", "ㅕ", "ㅗ", "ㅛ", "ㅜ", "ㅠ", "ㅡ", "ㅣ"]


def _big_verification():
    cm = [[50 if i == j else 1 for j in range(24)] for i in range(24)]
    per = {n: (0.5 if i == 3 else 0.97) for i, n in enumerate(HANGUL)}
    return {"accuracy": 0.9531, "passed": True, "expect_acc": 0.95, "per_class": per, "data_hash": "f" * 64,
            "confusion_matrix": cm, "class_names": HANGUL}


def test_show_is_a_concise_summary_and_ls_fits_80_columns(tmp_path, blob_file):
    rp = tmp_path / "reg"
    deep = tmp_path / "archive" / "checkpoints_backup" / "checkpoints_backup" / "runs" / "2024-05-01"
    deep.mkdir(parents=True)
    src = deep / "MSCSGRU_ScaleAware_best.ckpt"
    src.write_bytes(blob_file(3).read_bytes())
    with Registry(rp) as reg:
        from ckreg.arch import ArchSpec

        spec = ArchSpec.for_family("GRU", hidden_size=8, num_classes=24)
        v = stub_add(reg, src, name="mscsgru-scaleaware-glove", spec=spec, verification=_big_verification(),
                     aliases=["best", "production", "candidate"])
    env = {"COLUMNS": "80"}
    show = run("registry", "show", f"{v.name}@best", "--registry", rp, env=env)
    assert show.exit_code == 0, show.output
    lines = show.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    assert len(lines) <= 20, "a summary, not a dump"
    assert "95.31% (passed, target 95.00%)" in show.stdout
    assert "lowest" in show.stdout and "ㄹ 50.00%" in show.stdout
    assert "--json" in show.stdout.splitlines()[-1]
    assert "50, 1, 1" not in show.stdout and "confusion_matrix" not in show.stdout
    full = json.loads(run("registry", "show", f"{v.name}@best", "--json", "--registry", rp).stdout)
    assert full["version"]["verification"]["confusion_matrix"][0][0] == 50     # everything is in --json

    ls = run("registry", "ls", "--registry", rp, env=env)
    assert ls.exit_code == 0
    rows = ls.stdout.splitlines()
    assert max(len(line) for line in rows) <= 80, rows
    assert any(f"{v.name}@1" in r and "95.31%" in r and "verified" in r for r in rows), rows
