"""Verification of checkpoint + scaler pairs, scaler recovery and the audit hook (issue #5).

Tiny GRUs are trained on a synthetic glove dataset (tests/verify_helpers.py)
under each scaler recipe, so that the wrong recipe measurably breaks accuracy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ckreg.cli import cli  # noqa: E402
from ckreg.errors import CkregError, UsageError  # noqa: E402
from ckreg.verify import (Pair, clear_data_cache, load_data, normalize_acc, recover_scaler, verify_for_audit,  # noqa: E402
                          verify_pair)
from verify_helpers import accuracy, make_dataset, save_state_dict, train_tiny  # noqa: E402


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def vdata(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("vdata") / "glove.npz")


@pytest.fixture(scope="session")
def vds(vdata):
    return load_data(vdata)


@pytest.fixture(scope="session")
def scalers(vds, tmp_path_factory):
    """{recipe: (Scaler, json path)} fitted on the synthetic data."""
    from ckreg.scaler import fit_scaler, save_json

    d = tmp_path_factory.mktemp("scalers")
    out = {}
    for recipe in ("upstream", "train-split"):
        sc = fit_scaler(vds, recipe)
        out[recipe] = (sc, save_json(sc, d / f"{recipe}.json"))
    return out


def _pair(vds, scalers, recipe, tmp_path_factory):
    sc, sc_path = scalers[recipe]
    # 100 full-batch steps: at 60 the upstream-scaled model sits near the 0.95 line, and the BLAS
    # kernels of another CPU can put it below (0.88 seen); at 100 it is at 1.0 with seed 0
    model, spec = train_tiny(vds, sc, steps=100)
    d = tmp_path_factory.mktemp(f"pair-{recipe}")
    ckpt = save_state_dict(model, d / "tiny.pt")
    return {"ckpt": ckpt, "scaler": sc_path, "model": model, "spec": spec, "dir": d,
            "acc_own": accuracy(model, vds, sc)}


@pytest.fixture(scope="session")
def ts_pair(vds, scalers, tmp_path_factory):
    """A model trained under the train-split scaler (what ckreg's trainer does)."""
    return _pair(vds, scalers, "train-split", tmp_path_factory)


@pytest.fixture(scope="session")
def up_pair(vds, scalers, tmp_path_factory):
    """A model trained under the upstream scaler (what the archive's checkpoints were)."""
    return _pair(vds, scalers, "upstream", tmp_path_factory)


def test_the_synthetic_case_separates_the_recipes(ts_pair, up_pair, vds, scalers):
    """Precondition of the recovery tests: own scaler near perfect, the other recipe clearly worse."""
    assert ts_pair["acc_own"] >= 0.95 and up_pair["acc_own"] >= 0.95
    assert accuracy(ts_pair["model"], vds, scalers["upstream"][0]) < 0.8
    assert accuracy(up_pair["model"], vds, scalers["train-split"][0]) < 0.9


# --------------------------------------------------------------------------- verify_pair


def test_pair_passes_with_its_own_scaler(ts_pair, vdata, vds):
    res = verify_pair(ts_pair["ckpt"], ts_pair["scaler"], vdata, expect_acc=0.95)
    assert res.passed and res.status == "verified" and res.loaded and res.finite
    # the headline is the held-out test split; all episodes come second
    from ckreg.data import split

    test = split(vds).test
    assert res.split == "test" and res.n_episodes == len(test) < len(vds.y)
    assert res.n_episodes_all == len(vds.y)
    assert res.accuracy_all == pytest.approx(ts_pair["acc_own"])
    assert res.data_hash == vds.data_hash
    assert res.family == "GRU" and res.spec["hidden_size"] == 8
    assert list(res.per_class) == list(vds.class_names)
    assert sum(map(sum, res.confusion_matrix)) == res.n_episodes
    assert sum(res.confusion_matrix[i][i] for i in range(4)) == round(res.accuracy * res.n_episodes)
    assert res.scaler_check.ok and res.scaler_check.n_features == 8 and res.scaler_check.model_input == 8
    assert res.findings == []


def test_wrong_scaler_misses_the_declared_accuracy(ts_pair, scalers, vdata):
    res = verify_pair(ts_pair["ckpt"], scalers["upstream"][1], vdata, expect_acc=0.95)
    assert not res.passed and res.loaded and res.finite
    assert res.accuracy < 0.8
    codes = [f.code for f in res.findings]
    assert codes == ["accuracy-below-declared"]
    f = res.findings[0]
    assert f.expected == 0.95 and f.actual == pytest.approx(res.accuracy, abs=1e-6)
    assert f.path == str(ts_pair["ckpt"])


def test_tolerance_is_applied_below_the_declared_accuracy(ts_pair, scalers, vdata):
    acc = verify_pair(ts_pair["ckpt"], scalers["upstream"][1], vdata).accuracy
    declared = min(1.0, acc + 0.004)
    assert verify_pair(ts_pair["ckpt"], scalers["upstream"][1], vdata, expect_acc=declared, tolerance=0.005).passed
    assert not verify_pair(ts_pair["ckpt"], scalers["upstream"][1], vdata, expect_acc=declared + 0.002,
                           tolerance=0.0).passed


def test_percent_and_fraction_are_the_same_declaration():
    assert normalize_acc(99.13) == pytest.approx(0.9913)
    assert normalize_acc(0.9913) == pytest.approx(0.9913)
    with pytest.raises(UsageError):
        normalize_acc(-1)


def test_without_a_target_it_is_unverified_never_verified(ts_pair, vdata):
    """Loading and predicting proves nothing about accuracy: without a target the status is unverified."""
    res = verify_pair(ts_pair["ckpt"], ts_pair["scaler"], vdata)
    assert res.status == "unverified" and not res.passed and not res.accuracy_declared
    assert res.findings == [] and res.accuracy is not None
    assert any("loads and predicts; no target" in r for r in res.reasons)
    res = verify_pair(ts_pair["ckpt"], ts_pair["scaler"], vdata, expect_acc=0.5, target_source="--min-acc")
    assert res.status == "verified" and res.target_source == "--min-acc"


def test_nan_weight_is_verify_failed(ts_pair, tmp_path, vdata):
    import torch

    sd = {k: v.clone() for k, v in ts_pair["model"].state_dict().items()}
    key = next(k for k in sd if k.endswith("weight_hh_l0"))
    sd[key][0, 0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(sd, bad)
    res = verify_pair(bad, ts_pair["scaler"], vdata, expect_acc=0.5)
    assert res.loaded and res.finite is False and not res.passed
    assert [f.code for f in res.findings] == ["verify-failed"]
    assert "not finite" in res.findings[0].message
    assert res.accuracy is None   # no accuracy from NaN logits


def test_drifted_shape_does_not_load_strictly(ts_pair, tmp_path, vdata):
    """A tensor whose shape no longer matches the architecture: strict load fails -> verify-failed, never a crash."""
    import torch

    sd = {k: v.clone() for k, v in ts_pair["model"].state_dict().items()}
    sd["RNN.1.bias_hh_l0"] = torch.zeros(sd["RNN.1.bias_hh_l0"].shape[0] + 3)
    bad = tmp_path / "drift.pt"
    torch.save(sd, bad)
    res = verify_pair(bad, ts_pair["scaler"], vdata, expect_acc=0.5)
    assert not res.passed and not res.loaded and res.finite is None
    assert [f.code for f in res.findings] == ["verify-failed"]


def test_scaler_with_other_feature_count_is_a_mismatch(ts_pair, tmp_path, vdata, scalers):
    from ckreg.scaler import save_json

    sc = scalers["train-split"][0]
    six = sc.model_copy(update={"mean": sc.mean[:6], "scale": sc.scale[:6], "var": sc.var[:6], "n_features": 6,
                                "channel_names": sc.channel_names[:6]})
    path = save_json(six, tmp_path / "six.json")
    res = verify_pair(ts_pair["ckpt"], path, vdata, expect_acc=0.5)
    assert not res.passed and not res.scaler_check.ok
    assert {f.code for f in res.findings} == {"scaler-feature-mismatch"}
    assert res.scaler_check.n_features == 6 and res.scaler_check.model_input == 8
    assert res.accuracy is None   # nothing was run through a scaler that cannot fit


def test_scaler_with_other_channel_names_is_a_mismatch(ts_pair, tmp_path, vdata, scalers):
    from ckreg.scaler import save_json

    sc = scalers["train-split"][0]
    renamed = sc.model_copy(update={"channel_names": list(reversed(sc.channel_names))})
    path = save_json(renamed, tmp_path / "renamed.json")
    res = verify_pair(ts_pair["ckpt"], path, vdata)
    assert not res.passed
    assert [f.code for f in res.findings] == ["scaler-feature-mismatch"]
    assert "channels" in res.findings[0].message


def test_sidecar_scaler_is_found_and_missing_one_fails(ts_pair, tmp_path, vdata):
    import shutil

    ck = tmp_path / "m.pt"
    shutil.copy(ts_pair["ckpt"], ck)
    res = verify_pair(ck, None, vdata)
    assert not res.passed and "no scaler" in res.reasons[0]
    shutil.copy(ts_pair["scaler"], tmp_path / "m.scaler.json")
    res = verify_pair(ck, None, vdata, expect_acc=0.95)
    assert res.passed and res.scaler.endswith("m.scaler.json")


def test_without_data_checks_load_finite_and_scaler_only(ts_pair):
    res = verify_pair(ts_pair["ckpt"], ts_pair["scaler"])
    assert res.status == "unverified" and res.finite and res.accuracy is None and not res.findings
    res = verify_pair(ts_pair["ckpt"], ts_pair["scaler"], expect_acc=0.9)
    assert res.status == "unverified" and not res.passed


def test_dataset_is_loaded_once_per_path(vdata):
    clear_data_cache()
    assert load_data(vdata) is load_data(str(vdata))


def test_bad_paths_are_user_errors(ts_pair, tmp_path):
    with pytest.raises(CkregError):
        verify_pair(tmp_path / "nope.pt", None, None)
    with pytest.raises(CkregError):
        verify_pair(ts_pair["ckpt"], ts_pair["scaler"], tmp_path / "no-data")


# --------------------------------------------------------------------------- recover_scaler


@pytest.mark.parametrize("which,recipe", [("ts", "train-split"), ("up", "upstream")])
def test_recover_picks_the_recipe_the_model_was_trained_with(which, recipe, ts_pair, up_pair, vdata, vds, tmp_path):
    import shutil

    from ckreg.scaler import load_scaler

    pair = ts_pair if which == "ts" else up_pair
    ck = tmp_path / "lost.pt"
    shutil.copy(pair["ckpt"], ck)
    res = recover_scaler(ck, vdata, expect_acc=0.95, out_dir=tmp_path)
    assert res.passed and res.recipe == recipe and res.chosen_by == "declared-accuracy"
    assert {c.recipe for c in res.candidates} == {"upstream", "train-split"}
    wrong = next(c for c in res.candidates if c.recipe != recipe)
    assert wrong.accuracy < res.accuracy
    assert res.path == str(tmp_path / "lost.scaler.json") and res.written
    doc = json.loads(Path(res.path).read_text())
    rec = doc["recovered"]
    assert rec["recipe"] == recipe and rec["data_hash"] == vds.data_hash
    assert rec["accuracy"] == pytest.approx(res.accuracy) and rec["date"] and rec["ckreg_version"]
    # the written scaler is a normal ckreg scaler that makes the pair pass
    assert load_scaler(res.path).recipe == recipe
    assert verify_pair(ck, res.path, vdata, expect_acc=0.95).passed


def test_recover_never_clobbers(ts_pair, vdata, tmp_path):
    import shutil

    ck = tmp_path / "lost.pt"
    shutil.copy(ts_pair["ckpt"], ck)
    taken = tmp_path / "lost.scaler.json"
    taken.write_text("precious")
    first = recover_scaler(ck, vdata, expect_acc=0.95, pkl=True, out_dir=tmp_path)
    second = recover_scaler(ck, vdata, expect_acc=0.95, out_dir=tmp_path)
    assert taken.read_text() == "precious"
    assert first.path == str(tmp_path / "lost.scaler-1.json") and first.pkl_path == str(tmp_path / "lost.scaler-1.pkl")
    assert second.path == str(tmp_path / "lost.scaler-2.json")
    from ckreg.scaler import load_scaler

    assert load_scaler(first.pkl_path).n_features == 8


def test_recover_without_declared_accuracy_keeps_the_best_and_says_so(ts_pair, vdata, tmp_path):
    res = recover_scaler(ts_pair["ckpt"], vdata, out_dir=tmp_path, write=False)
    assert res.passed and res.recipe == "train-split" and res.chosen_by == "best-accuracy"
    assert not res.written and res.path is None and list(tmp_path.iterdir()) == []
    assert any("no accuracy declared" in r for r in res.reasons)


def test_recover_writes_nothing_when_no_recipe_verifies(ts_pair, vdata, tmp_path):
    import torch

    sd = {k: v.clone() for k, v in ts_pair["model"].state_dict().items()}
    for k in sd:
        if k.endswith("weight"):
            sd[k].fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(sd, bad)
    res = recover_scaler(bad, vdata, expect_acc=0.5)
    assert not res.passed and not res.written and res.recipe is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]


def test_recover_writes_outside_the_checkpoint_folder_by_default(ts_pair, vdata, tmp_path, monkeypatch):
    """The audited archive stays as it was: the default is ./ckreg-recovered, or a sibling folder when
    the current folder is the checkpoint's own."""
    import shutil

    archive = tmp_path / "archive" / "run"
    archive.mkdir(parents=True)
    ck = archive / "lost.pt"
    shutil.copy(ts_pair["ckpt"], ck)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = recover_scaler(ck, vdata, expect_acc=0.95)
    assert res.written and Path(res.path) == work / "ckreg-recovered" / "lost.scaler.json"
    assert sorted(p.name for p in archive.iterdir()) == ["lost.pt"]
    monkeypatch.chdir(archive)
    res = recover_scaler(ck, vdata, expect_acc=0.95)
    assert Path(res.path).parent == tmp_path / "archive" / "run-ckreg-recovered"
    assert sorted(p.name for p in archive.iterdir()) == ["lost.pt"]


# --------------------------------------------------------------------------- audit hook


def test_audit_hook_names_the_recipe_that_rescues_a_pair(ts_pair, scalers, vdata):
    results = []
    found = verify_for_audit([
        Pair(ckpt=str(ts_pair["ckpt"]), scaler=str(scalers["upstream"][1]), expect_acc=0.95, model="tiny"),
        (str(ts_pair["ckpt"]), str(ts_pair["scaler"]), 0.95),
    ], vdata, results=results)
    codes = sorted(f.code for f in found)
    assert codes == ["accuracy-below-declared", "scaler-recovered"]
    rec = next(f for f in found if f.code == "scaler-recovered")
    assert rec.actual["recipe"] == "train-split" and rec.actual["accuracy"] >= 0.95
    assert "train-split" in rec.message and rec.message.startswith("tiny: ")
    assert [r.passed for r in results] == [False, True]


def test_audit_hook_without_declared_accuracy_flags_a_scaler_from_another_run(ts_pair, scalers, vdata):
    """Nothing declared (the archive's GRU files): the pair 'passes', but a re-fitted scaler is clearly better."""
    found = verify_for_audit([Pair(ckpt=str(ts_pair["ckpt"]), scaler=str(scalers["upstream"][1])),
                              Pair(ckpt=str(ts_pair["ckpt"]), scaler=str(ts_pair["scaler"]))], vdata)
    assert [f.code for f in found] == ["scaler-recovered"]
    f = found[0]
    assert "no accuracy is declared" in f.message and "does not belong" in f.message
    assert f.actual["recipe"] == "train-split" and f.actual["accuracy"] > f.actual["paired_accuracy"] + 0.01


def test_audit_hook_suggests_a_scaler_for_a_pair_without_one(up_pair, vdata):
    found = verify_for_audit([Pair(ckpt=str(up_pair["ckpt"]), scaler=None, expect_acc=0.95)], vdata)
    assert [f.code for f in found] == ["scaler-recovered"]
    assert found[0].actual["recipe"] == "upstream"


def test_audit_with_data_reports_the_failing_pair_and_its_rescue(ts_pair, scalers, vdata, tmp_path):
    """`ckreg audit --data` end to end on a tiny archive: the paired scaler is the wrong one."""
    import shutil

    from ckreg.audit import audit

    root = tmp_path / "archive"
    (root / "run").mkdir(parents=True)
    shutil.copy(ts_pair["ckpt"], root / "run" / "tiny.pt")
    shutil.copy(scalers["upstream"][1], root / "run" / "scaler.json")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\nmodels:\n  - name: tiny\n    family: GRU\n"
        "    hyperparameters: {input_size: 8, num_classes: 4, hidden_size: 8, num_layers: 1}\n"
        "    path: run/tiny.pt\n    scaler: run/scaler.json\n    metrics: {accuracy: 0.95}\n")
    before = sorted(p.name for p in (root / "run").iterdir())
    report = audit(root, manifest, data=vdata)
    codes = {f.code for f in report.findings}
    assert {"accuracy-below-declared", "scaler-recovered"} <= codes
    assert report.exit_code() == 1
    assert sorted(p.name for p in (root / "run").iterdir()) == before   # the audit writes nothing


# --------------------------------------------------------------------------- CLI


def test_cli_verify_exit_codes_and_json(ts_pair, scalers, vdata):
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]), "--data", str(vdata),
                             "--expect-acc", "95", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["passed"] and doc["expect_acc"] == pytest.approx(0.95) and len(doc["confusion_matrix"]) == 4
    bad = runner.invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(scalers["upstream"][1]),
                              "--data", str(vdata), "--expect-acc", "0.95"])
    assert bad.exit_code == 1
    assert "FAIL" in bad.output and "confusion matrix" in bad.output and "per-class" in bad.output
    usage = runner.invoke(cli, ["verify", str(ts_pair["ckpt"]), "--expect-acc", "lots"])
    assert usage.exit_code == 2
    missing = runner.invoke(cli, ["verify", "/no/such.ckpt"])
    assert missing.exit_code == 2


def test_cli_verify_takes_the_declared_accuracy_from_a_manifest(ts_pair, scalers, vdata, tmp_path):
    manifest = tmp_path / "m.yaml"
    rel = Path(ts_pair["ckpt"]).name
    manifest.write_text(f"version: 1\nmodels:\n  - name: tiny\n    family: GRU\n    path: {rel}\n"
                        "    metrics: {accuracy: 0.95, tolerance: 0.01}\n")
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(scalers["upstream"][1]),
                                 "--data", str(vdata), "-m", str(manifest), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert doc["expect_acc"] == pytest.approx(0.95) and doc["tolerance"] == pytest.approx(0.01)


def test_cli_scaler_recover_json(up_pair, vdata, tmp_path):
    import shutil

    from ckreg.scaler import load_scaler

    ck = tmp_path / "m.ckpt"
    shutil.copy(up_pair["ckpt"], ck)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["scaler", "recover", str(ck), "--data", str(vdata), "--expect-acc", "0.95", "--json",
                                 "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["recipe"] == "upstream" and 0.95 <= doc["accuracy"] <= 1.0
    assert doc["path"] == str(out / "m.scaler.json")
    assert load_scaler(doc["path"]).recipe == "upstream"
    r = CliRunner().invoke(cli, ["scaler", "recover", str(ck), "--data", str(vdata), "--expect-acc", "0.95",
                                 "--out-dir", str(out)])
    assert r.exit_code == 0 and "m.scaler-1.json" in r.output   # says where; never over the first one


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_ms3dgru_pair_verifies(archive_dir, signglove_dir):
    """The archive's best_model pair (issue #3: 99.4% over all episodes); inference only."""
    res = verify_pair(archive_dir / "best_model" / "ms3dgru_best.ckpt", archive_dir / "best_model" / "scaler.pkl",
                      signglove_dir, expect_acc=0.9913)
    assert res.family == "MS3DGRU", res.reasons
    assert res.n_episodes_all >= 1440 and res.accuracy_all >= 0.99     # over all episodes, as upstream reported
    assert res.split == "test" and 200 <= res.n_episodes < 300 and not res.split_recorded
    # every episode file is either loaded or named as skipped, with its reason
    n_files = sum(1 for _ in signglove_dir.rglob("episode_*.csv"))
    assert res.n_episodes_all + len(res.skipped_episodes) == n_files
    assert all(e["path"] and e["reason"] for e in res.skipped_episodes)
    assert math.isclose(sum(map(sum, res.confusion_matrix)), res.n_episodes)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_archive_scaler_is_not_mscsgrus_and_upstream_recovers_it(archive_dir, signglove_dir):
    ck = archive_dir / "archive" / "checkpoints_backup" / "checkpoints_backup" / "MSCSGRU_best.ckpt"
    sc = ck.with_name("scaler.pkl")
    found = verify_for_audit([Pair(ckpt=str(ck), scaler=str(sc), expect_acc=0.993)], signglove_dir)
    codes = {f.code: f for f in found}
    assert "accuracy-below-declared" in codes
    assert codes["scaler-recovered"].actual["recipe"] == "upstream"
    assert codes["scaler-recovered"].actual["accuracy"] >= 0.99


def test_cli_verify_without_a_target_says_unverified(ts_pair, vdata):
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]),
                                 "--data", str(vdata)])
    assert r.exit_code == 0, r.output
    assert "UNVERIFIED" in r.output and "loads and predicts; no target" in " ".join(r.output.split())
    assert "VERIFIED" not in r.output.replace("UNVERIFIED", "")
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]),
                                 "--data", str(vdata), "--min-acc", "0.5", "--json"])
    doc = json.loads(r.output)
    assert r.exit_code == 0 and doc["status"] == "verified" and doc["target_source"] == "--min-acc"
    assert doc["split"] == "test" and doc["accuracy_all"] is not None and doc["n_episodes_all"] > doc["n_episodes"]


def test_cli_verify_takes_the_manifest_min_accuracy(ts_pair, vdata, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nmin_accuracy: 0.999\nmodels:\n  - name: other\n    family: GRU\n"
                        "    path: elsewhere.pt\n")
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]),
                                 "--data", str(vdata), "-m", str(manifest), "--json"])
    doc = json.loads(r.output)
    assert doc["expect_acc"] == pytest.approx(0.999) and doc["target_source"] == "manifest min_accuracy"
    assert r.exit_code == (0 if doc["accuracy"] >= 0.999 else 1)


def test_cli_verify_on_an_ambiguous_family_is_a_usage_error(tmp_path, vdata):
    """ScaleAware vs ScaleHard: the weights cannot tell; like `eval`, exit 2 and say --family."""
    from verify_helpers import save_state_dict

    from ckreg.arch import ArchSpec
    from ckreg.zoo import build

    module = build(ArchSpec.for_family("MSCSGRU_ScaleHard", hidden_size=8, num_classes=4))
    ck = save_state_dict(module, tmp_path / "model.pt")
    r = CliRunner().invoke(cli, ["verify", str(ck)])
    assert r.exit_code == 2, r.output
    assert "--family" in r.output and "Traceback" not in r.output


def test_an_injected_bug_exits_4_and_never_reads_as_a_finding(ts_pair, vdata, monkeypatch):
    """A bug inside verification (here: the zoo's predict) is a crash, exit 4, a short message; not verify-failed."""
    import ckreg.zoo

    def broken(*a, **k):
        return 1 / 0

    monkeypatch.setattr(ckreg.zoo, "predict", broken)
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]),
                                 "--data", str(vdata), "--expect-acc", "0.5"])
    assert r.exit_code == 4, r.output
    assert "ZeroDivisionError" in r.output and "bug" in r.output and "verify-failed" not in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 2


def test_an_injected_bug_in_loading_exits_4(ts_pair, vdata, monkeypatch):
    import ckreg.verify

    def broken(*a, **k):
        raise TypeError("unexpected")

    monkeypatch.setattr(ckreg.verify, "_load_model", broken)
    r = CliRunner().invoke(cli, ["verify", str(ts_pair["ckpt"]), "--scaler", str(ts_pair["scaler"]),
                                 "--data", str(vdata)])
    assert r.exit_code == 4 and "TypeError" in r.output and "does not load" not in r.output
