"""Image teachers, distillation, SGD schedules and seed runs (tiny models, a few episodes)."""

from __future__ import annotations

import json
import re
import math

import numpy as np
import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import SpecError, UsageError
from ckreg.train import train
from ckreg.train.recipes import ImagingConfig, OptimConfig, Teacher, kd_loss
from ckreg.train.seeds import mean_std, parse_seeds, summarize, train_seeds
from train_factories import TINY_GRU

TINY_WRN = {"conv_dim": 2, "depth": 10, "widen_factor": 1}


@pytest.fixture(scope="module")
def teacher_run(glove_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    r = train("WRN", glove_tree, out, overrides=TINY_WRN, epochs=2, batch_size=8, lr=0.05,
              imaging=ImagingConfig(("gasf", "mtf"), size=8, bins=4),
              optim=OptimConfig(optimizer="sgd", schedule="cosine", lr_min=1e-3))
    return r, out


def test_image_teacher_records_its_recipe(teacher_run, glove_tree):
    r, out = teacher_run
    assert r.spec["conv_dim"] == 2 and r.spec["input_size"] == 2 * 8     # two methods x 8 channels
    rec = r.metrics["recipe"]
    assert rec["optimizer"] == "SGD" and rec["momentum"] == 0.9 and rec["lr_schedule"] == "CosineAnnealingLR"
    img = rec["imaging"]
    assert {k: img[k] for k in ("methods", "size", "bins", "rescale")} == {
        "methods": ["gasf", "mtf"], "size": 8, "bins": 4, "rescale": "train-split"}
    # the range and MTF edges are the TRAINING split's, per channel (a scaler's statistics, for images)
    from ckreg.data import load_dataset, split as make_split
    from ckreg.data.imaging import fit_stats

    ds = load_dataset(glove_tree)
    assert img["stats"] == fit_stats(ds.X, ds.mask, make_split(ds, seed=0).train, 4).to_dict()
    assert img["stats"] != fit_stats(ds.X, ds.mask, None, 4).to_dict()      # not all episodes
    # the cosine schedule ran: the second epoch's learning rate is below the first's
    lrs = [h["lr"] for h in r.metrics["history"]]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] < lrs[0]
    t = Teacher(path=str(out / "weights.safetensors"))
    _m, spec, imaging, scaler, wsha = t.load()
    assert imaging.methods == ("gasf", "mtf") and (imaging.size, imaging.bins) == (8, 4)
    assert imaging.stats is not None and imaging.stats.to_dict() == img["stats"] and wsha == r.weights_sha256


def test_student_distils_and_records_the_teacher(teacher_run, glove_tree, tmp_path):
    from ckreg.lineage import lineage
    from ckreg.readers import read_checkpoint

    t_result, t_out = teacher_run
    teacher = Teacher(path=str(t_out / "weights.safetensors"))
    s = train("GRU", glove_tree, tmp_path / "s", overrides=TINY_GRU, epochs=2, batch_size=8, teacher=teacher,
              kd_temperature=3.0, kd_lambda=0.5)
    rec = s.metrics["recipe"]
    assert rec["loss"] == "distillation" and rec["kd_temperature"] == 3.0 and rec["kd_lambda"] == 0.5
    assert rec["teacher"]["weights_sha256"] == t_result.weights_sha256
    meta = read_checkpoint(tmp_path / "s" / "weights.safetensors").metadata["__metadata__"]
    (edge,) = json.loads(meta["ckreg.lineage"])
    assert edge["relation"] == "distilled-from" and edge["parent"]["weights_sha256"] == t_result.weights_sha256
    r = lineage([tmp_path / "s" / "model.ckpt", t_out / "weights.safetensors"], cache_dir=False)
    dist = [e for e in r.edges if e.relation == "distilled-from"]
    assert [(e.child, e.parent) for e in dist] == [(str(tmp_path / "s" / "model.ckpt"),
                                                   str(t_out / "weights.safetensors"))]
    # the distillation term changes training: the same seed without a teacher gives other weights
    plain = train("GRU", glove_tree, tmp_path / "p", overrides=TINY_GRU, epochs=2, batch_size=8)
    assert plain.weights_sha256 != s.weights_sha256


def test_teacher_logits_are_computed_once_and_runs_stay_deterministic(teacher_run, glove_tree, tmp_path):
    """The frozen teacher's logits are remembered per data; the cached images and logits change no result."""
    from ckreg.data import load_dataset
    from ckreg.data.imaging import clear_cache

    r, out = teacher_run
    ds = load_dataset(glove_tree)
    t = Teacher(path=str(out / "weights.safetensors"))
    module = t.load()[0]
    calls = []
    hook = module.register_forward_hook(lambda *a: calls.append(1))
    first = t.logits(ds.X, ds.mask)
    n = len(calls)
    assert n > 0 and t.logits(ds.X.copy(), ds.mask) is first and len(calls) == n
    assert len(t.logits(ds.X[:3], ds.mask[:3])) == 3 and len(calls) > n    # other episodes: computed
    hook.remove()
    clear_cache()
    fresh = Teacher(path=str(out / "weights.safetensors")).logits(ds.X, ds.mask)
    assert np.array_equal(fresh, first)
    # the same seed gives the same weights whether the images come from the cache or not
    kw = dict(overrides=TINY_WRN, epochs=2, batch_size=8, lr=0.05, imaging=ImagingConfig(("gasf", "mtf"), size=8, bins=4),
              optim=OptimConfig(optimizer="sgd", schedule="cosine", lr_min=1e-3))
    again = train("WRN", glove_tree, tmp_path / "again", **kw)
    clear_cache()
    cold = train("WRN", glove_tree, tmp_path / "cold", **kw)
    assert again.weights_sha256 == cold.weights_sha256 == r.weights_sha256


def test_kd_loss_by_hand(torch_mod):
    torch = torch_mod
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.2, 3.0, -1.0]])
    y = torch.tensor([1])
    T, lam = 4.0, 0.7
    ps, pt = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    kl = float((pt * (pt.log() - ps.log())).sum())
    ce = float(-torch.log_softmax(s, 1)[0, 1])
    assert float(kd_loss(s, y, t, T, lam)) == pytest.approx((1 - lam) * ce + lam * T * T * kl, rel=1e-5)
    assert float(kd_loss(s, y, t, T, 0.0)) == pytest.approx(ce)


def test_bad_recipes_fail_before_training(glove_tree, tmp_path):
    with pytest.raises(SpecError):     # images need a 2D WRN
        train("GRU", glove_tree, tmp_path / "a", overrides=TINY_GRU, epochs=1, imaging=ImagingConfig(("gasf",)))
    with pytest.raises(UsageError):
        train("GRU", glove_tree, tmp_path / "b", overrides=TINY_GRU, epochs=1, optim=OptimConfig(optimizer="lbfgs"))
    with pytest.raises(UsageError):
        train("GRU", glove_tree, tmp_path / "c", overrides=TINY_GRU, epochs=1,
              teacher=Teacher(path="nope"), kd_lambda=1.5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_step_schedule(glove_tree, tmp_path):
    r = train("GRU", glove_tree, tmp_path / "s", overrides=TINY_GRU, epochs=3, batch_size=8, lr=0.1, patience=10,
              optim=OptimConfig(optimizer="sgd", schedule="step", step_size=2, gamma=0.5))
    assert [h["lr"] for h in r.metrics["history"]] == pytest.approx([0.1, 0.1, 0.05])


def test_seeds_mean_std_and_best_by_validation(glove_tree, tmp_path):
    res = train_seeds("GRU", glove_tree, tmp_path / "runs", "0,1", overrides=TINY_GRU, epochs=1, batch_size=8)
    accs = [r.test_accuracy for r in res.runs]
    m = sum(accs) / 2
    assert res.test_accuracy_mean == pytest.approx(m)
    assert res.test_accuracy_std == pytest.approx(math.sqrt(sum((a - m) ** 2 for a in accs)))
    saved = json.loads((tmp_path / "runs" / "seeds.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and (tmp_path / "runs" / "seed-1" / "model.ckpt").is_file()
    with pytest.raises(UsageError):   # no clobbering the table
        train_seeds("GRU", glove_tree, tmp_path / "runs", "0", overrides=TINY_GRU, epochs=1)


def test_best_is_chosen_by_validation_never_test():
    from ckreg.train.results import TrainResult

    def fake(seed, val_acc, val_loss, test_acc):
        return TrainResult(out=f"o{seed}", family="GRU", spec={}, seed=seed, best_epoch=1, epochs_run=1,
                           best_val_loss=val_loss, test_accuracy=test_acc,
                           metrics={"history": [{"val_acc": val_acc}]})

    res = summarize("GRU", "o", [fake(0, 0.9, 0.3, 1.0), fake(1, 0.95, 0.5, 0.5), fake(2, 0.95, 0.4, 0.6)])
    assert res.best_seed == 2          # highest validation accuracy, then the lower validation loss
    assert mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(UsageError):
        parse_seeds("0,0")
    with pytest.raises(UsageError):
        parse_seeds("a,b")


def test_cli_teacher_student_registry(glove_tree, tmp_path):
    reg = tmp_path / "reg"
    r = CliRunner().invoke(cli, ["train", "WRN", "--data", str(glove_tree), "--out", str(tmp_path / "t"),
                                 "--set", "conv_dim=2", "--set", "depth=10", "--imaging", "gasf", "--image-size", "8",
                                 "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05",
                                 "--register", "teacher", "--min-acc", "0", "--registry", str(reg)])
    assert r.exit_code == 0, r.output
    assert "teacher@best -> teacher@1" in r.output
    r = CliRunner().invoke(cli, ["train", "GRU", "--data", str(glove_tree), "--out", str(tmp_path / "s"),
                                 "--set", "hidden_size=8", "--teacher", "teacher@best", "--registry", str(reg),
                                 "--kd-temperature", "4", "--kd-lambda", "0.7", "--epochs", "1",
                                 "--seeds", "0,1", "--register", "student", "--min-acc", "0", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["registered"]["versions"] == {"0": "student@1", "1": "student@2"}
    assert data["registered"]["best"] in ("student@1", "student@2")
    assert data["seeds"]["test_accuracy_mean"] is not None
    r = CliRunner().invoke(cli, ["registry", "--registry", str(reg), "show", "student@2"])
    assert re.search(r"lineage\s+distilled-from teacher@1", r.output), r.output
    r = CliRunner().invoke(cli, ["train", "GRU", "--data", str(glove_tree), "--out", str(tmp_path / "x"),
                                 "--teacher", "nosuch@1", "--registry", str(reg), "--epochs", "1"])
    assert r.exit_code == 2 and "nosuch@1" in r.output


def test_register_only_verified_runs(glove_tree, tmp_path):
    """--register verifies every run against --min-acc first: no target, no registration; a run below it stays out."""
    from ckreg.registry import Registry

    reg = tmp_path / "reg"
    base = ["train", "GRU", "--data", str(glove_tree), "--set", "hidden_size=8", "--epochs", "1",
            "--registry", str(reg)]
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a"), "--register", "gru"])
    assert r.exit_code == 2 and "--min-acc" in r.output and not (tmp_path / "a").exists()
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"), "--min-acc", "0.5"])
    assert r.exit_code == 2 and "--register" in r.output
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "c"), "--seeds", "0,1", "--register", "gru",
                                 "--min-acc", "99.9", "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)["registered"]
    assert out["not_registered"] and out["min_acc"] == pytest.approx(0.999)
    registered = {s for s in ("0", "1") if s in out["versions"]}
    assert registered | set(out["not_registered"]) == {"0", "1"} and not registered & set(out["not_registered"])
    with Registry(reg) as rg:
        versions = rg.ls("gru") if registered else []
        assert all(v.verified for v in versions)
    assert out["best"] is None if not registered else out["best"] in out["versions"].values()


def test_manifest_declares_the_recipe(teacher_run, glove_tree, tmp_path):
    """A manifest's `training` declares SGD, imaging and a teacher; retrain passes them to the trainer."""
    from ckreg.manifest import load_manifest
    from ckreg.retrain import _train_kwargs, compute_inputs

    _t, t_out = teacher_run
    m = tmp_path / "m.yaml"
    m.write_text(f"""version: 1
name: lab
models:
  - name: teacher
    family: WRN
    hyperparameters: {{conv_dim: 2, depth: 10, widen_factor: 1}}
    path: t/weights.safetensors
    training: {{epochs: 1, optimizer: sgd, schedule: step, step_size: 5, gamma: 0.5, lr: 0.05,
               imaging: gasf+gadf, image_size: 8}}
  - name: student
    family: GRU
    hyperparameters: {{hidden_size: 8}}
    path: s/weights.safetensors
    training: {{epochs: 1, teacher: {t_out}, kd_temperature: 2, kd_lambda: 0.5}}
""")
    man = load_manifest(m)
    teacher_decl, student_decl = man.models
    inputs, _h, _ = compute_inputs(man, teacher_decl, "x")
    kw = _train_kwargs(teacher_decl, inputs)
    assert kw["optim"] == {"optimizer": "sgd", "schedule": "step", "step_size": 5, "gamma": 0.5}
    assert kw["imaging"] == {"methods": ["gasf", "gadf"], "size": 8, "bins": 8, "rescale": "train-split"}
    family = kw.pop("family")
    r = train(family, glove_tree, tmp_path / "t", **kw)
    assert r.spec["input_size"] == 16 and r.metrics["recipe"]["lr_schedule"] == "StepLR"
    skw = _train_kwargs(student_decl, compute_inputs(man, student_decl, "x")[0])
    assert skw["teacher"] == str(t_out) and skw["kd_lambda"] == 0.5
    family = skw.pop("family")
    s = train(family, glove_tree, tmp_path / "s", **skw)
    assert s.metrics["recipe"]["loss"] == "distillation"
    bad = tmp_path / "bad.yaml"
    bad.write_text(m.read_text().replace("imaging: gasf+gadf", "imaging: fft"))
    from ckreg.errors import ManifestError

    with pytest.raises(ManifestError):
        load_manifest(bad)
