"""`ckreg demo`: the seed archive's problems, built with the zoo, found by the audit (issue #4)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ckreg.audit import audit
from ckreg.cli import cli
from ckreg.errors import UsageError
from ckreg.findings import EXIT_FINDINGS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("torch")
    from ckreg.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "d")


def test_demo_reproduces_the_seed_problems(demo):
    r = audit(demo.root, demo.manifest)
    got = {(f.code, f.path) for f in r.findings}
    manifest = str(demo.manifest)
    expected = {
        ("layers-mismatch", "checkpoints/GRU_best.ckpt"),          # mislabeled: 2 layers, 1 declared
        ("duplicate-weights", "checkpoints/GRU_best-v1.ckpt"),     # same weights, other metadata
        ("scaler-missing", "stacked/ms3dstackedgru_best.ckpt"),
        ("shape-drift", "stacked/ms3dstackedgru_best.ckpt"),       # tower2 5x5x5 vs 3x5x3
        ("model-missing", manifest),
    }
    assert expected <= got
    missing = {f.expected["model"] for f in r.findings if f.code == "model-missing"}
    assert missing == {"GRU", "MSCSGRU", "MS3DStackedGRU"}
    drift = next(f for f in r.findings if f.code == "shape-drift")
    assert drift.actual["tower2.0.weight"][-3:] == [5, 5, 5] and drift.expected["tower2.0.weight"][-3:] == [3, 5, 3]
    assert r.extra["declarations"]["MS3DGRU"]["status"] == "satisfied"
    assert not [f for f in r.findings if f.path == "best_model/ms3dgru_best.ckpt"]
    assert r.exit_code() == EXIT_FINDINGS


def test_demo_is_deterministic(demo, tmp_path):
    from ckreg.demo import make_demo

    again = make_demo(tmp_path / "again")
    for rel in ("checkpoints/GRU_best.ckpt", "best_model/ms3dgru_best.ckpt"):
        a = audit(demo.root / rel, hash_policy="all").extra["files"][rel.split("/")[-1]]["weights_sha256"]
        b = audit(again.root / rel, hash_policy="all").extra["files"][rel.split("/")[-1]]["weights_sha256"]
        assert a == b


def test_demo_refuses_a_non_empty_folder(tmp_path):
    pytest.importorskip("torch")
    from ckreg.demo import make_demo

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        make_demo(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    res = CliRunner().invoke(cli, ["demo", str(tmp_path)])
    assert res.exit_code == 2


def test_cli_demo_audits_and_exits_1(tmp_path):
    pytest.importorskip("torch")
    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "new")])
    assert res.exit_code == EXIT_FINDINGS, res.output
    for code in ("layers-mismatch", "duplicate-weights", "shape-drift", "model-missing", "scaler-missing"):
        assert code in res.stdout
    assert (tmp_path / "new" / "manifest.yaml").is_file()
