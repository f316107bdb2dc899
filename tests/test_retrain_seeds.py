"""Declared recipes in retrain: `training.seeds` (one run per seed, one model, @best by validation),
image teachers and a distilled student naming its teacher in the registry (tiny models, seconds)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ckreg.cli import cli  # noqa: E402
from ckreg.errors import ManifestError  # noqa: E402
from ckreg.manifest import load_manifest, manifest_schema, parse_manifest  # noqa: E402
from ckreg.retrain import LOCK_NAME, plan_retrain, read_lock, run_retrain  # noqa: E402
from verify_helpers import good_and_poor_pair, make_dataset  # noqa: E402

HP = "{input_size: 8, num_classes: 4, hidden_size: 8, num_layers: 1}"


@pytest.fixture(scope="module")
def sdata(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("sdata") / "glove.npz")


@pytest.fixture(scope="module")
def pair(sdata, tmp_path_factory):
    """A good and a poor tiny GRU with their train-split scaler (what a trainer would write)."""
    return good_and_poor_pair(sdata, tmp_path_factory.mktemp("pair"))


class SeedFake:
    """`ckreg.train.train`'s signature: per seed a distinct copy of a prepared checkpoint (same
    predictions), with the validation and test accuracy the test chooses."""

    def __init__(self, pair, scores, poor=()):
        self.pair, self.scores, self.poor, self.calls = pair, scores, set(poor), []

    def __call__(self, family, data, out, overrides=None, seed=0, epochs=None, progress=None, **kw):
        import torch

        from ckreg.train import TrainResult

        out = Path(out)
        assert out.is_dir() and not any(out.iterdir()), "a fresh folder per seed"
        self.calls.append({"seed": seed, "out": out, "epochs": epochs, **kw})
        sd = torch.load(self.pair["poor" if seed in self.poor else "good"])
        first = sorted(sd)[0]
        sd[first] = sd[first] + 1e-5 * (seed + 1)          # another file, the same predictions
        torch.save(sd, out / "weights.pt")
        shutil.copy(self.pair["scaler"], out / "scaler.json")
        val, test = self.scores[seed]
        return TrainResult(out=str(out), family=family, spec={}, seed=seed, test_accuracy=test, best_epoch=1,
                           epochs_run=1, best_val_loss=1.0 - val, epoch_times_s=[0.1],
                           files={"weights": str(out / "weights.pt"), "scaler_json": str(out / "scaler.json")},
                           metrics={"recipe": {"seed": seed, "max_epochs": epochs}, "history": [{"val_acc": val}],
                                    "split": {"seed": seed, "train": ["a"], "val": ["b"], "test": ["c"]}})


def write_manifest(path: Path, training: str, min_accuracy=0.5) -> Path:
    path.write_text(f"""version: 1
name: seeded
min_accuracy: {min_accuracy}
models:
  - name: A
    family: GRU
    hyperparameters: {HP}
    path: a/model.pt
    training: {training}
""")
    return path


# --------------------------------------------------------------------------- the manifest


def test_manifest_declares_seeds(tmp_path):
    m = parse_manifest("version: 1\nname: x\ndefaults:\n  training: {seed: 3}\nmodels:\n"
                       "  - {name: a, family: GRU, training: {seeds: [0, 1, 2]}}\n  - {name: b, family: GRU}\n")
    a, b = m.models
    assert m.training_for(a).seeds == [0, 1, 2] and m.training_for(a).seed is None   # the model's seeds win
    assert m.training_for(b).seed == 3 and m.training_for(b).seeds is None
    for bad, why in (("seeds: [0, 0]", "distinct"), ("seeds: [-1]", "distinct"), ("seeds: []", "seeds"),
                     ("seed: 1, seeds: [1, 2]", "not both")):
        with pytest.raises(ManifestError, match=why):
            parse_manifest(f"version: 1\nname: x\nmodels:\n  - {{name: a, family: GRU, training: {{{bad}}}}}\n")
    props = manifest_schema()["$defs"]["Training"]["properties"]
    assert {"seeds", "imaging", "image_rescale", "teacher", "kd_temperature", "kd_lambda", "optimizer",
            "schedule", "lr_min", "momentum"} <= set(props)
    r = CliRunner().invoke(cli, ["manifest", "schema"])
    assert r.exit_code == 0 and "never by test" in r.output


# --------------------------------------------------------------------------- seeded runs


def plan(man, data, out, registry, **kw):
    return {i.name: i for i in plan_retrain(man, data, out=out, registry=registry, **kw)}


def test_seeded_model_trains_one_run_per_seed_and_aliases_best_by_validation(tmp_path, sdata, pair):
    from ckreg.registry import Registry

    man = write_manifest(tmp_path / "m.yaml", "{epochs: 2, seeds: [0, 1, 2]}")
    out, reg = tmp_path / "out", tmp_path / "reg"
    p = plan(man, sdata, out, reg)
    kw = p["A"].train_kwargs
    assert p["A"].action == "train" and kw["seeds"] == [0, 1, 2] and "seed" not in kw
    assert p["A"].inputs["recipe"]["seeds"] == [0, 1, 2]
    # seed 2 has the best TEST accuracy, seed 1 the best validation accuracy: validation chooses
    fake = SeedFake(pair, {0: (0.90, 0.91), 1: (0.97, 0.90), 2: (0.95, 0.99)})
    res = run_retrain(list(p.values()), trainer=fake)
    assert res.exit_code() == 0, res.outcomes
    a = res.outcomes[0]
    assert [c["seed"] for c in fake.calls] == [0, 1, 2]
    assert [c["out"] for c in fake.calls] == [out / "A" / "v1" / f"seed-{s}" for s in (0, 1, 2)]
    assert a.status == "trained" and a.best_seed == 1 and a.verified
    assert [r["seed"] for r in a.runs] == [0, 1, 2] and all(r["verified"] for r in a.runs)
    assert a.test_accuracy_mean == pytest.approx((0.91 + 0.90 + 0.99) / 3)
    registry = Registry(reg)
    versions = registry.ls("A")
    assert len(versions) == 3
    best = registry.resolve("A@best")
    assert best.provenance["seed"] == 1 and best.version == a.version
    assert {v.provenance["group"] for v in versions} == {str(out / "A" / "v1")}
    assert sorted(v.provenance["seed"] for v in versions) == [0, 1, 2]
    assert best.provenance["val_accuracy"] == 0.97 and best.provenance["seeds"] == [0, 1, 2]
    table = json.loads((out / "A" / "v1" / "seeds.json").read_text())
    assert table["best_seed"] == 1 and [r["seed"] for r in table["runs"]] == [0, 1, 2]
    lock = read_lock(out / "A" / LOCK_NAME)
    assert {f"seed-{s}/weights" for s in (0, 1, 2)} <= set(lock["outputs"]) and lock["best_seed"] == 1
    assert lock["registered"]["versions"] == {str(r["seed"]): f"A@{r['version']}" for r in a.runs}
    # unchanged inputs: up to date; one seed's weights altered: the whole group is retrained
    p = plan(man, sdata, out, reg)
    assert p["A"].action == "skip" and p["A"].reason.startswith("up to date")
    w = out / "A" / "v1" / "seed-2" / "weights.pt"
    w.write_bytes(w.read_bytes() + b"x")
    assert plan(man, sdata, out, reg)["A"].action == "train"
    # other seeds are another recipe
    write_manifest(man, "{epochs: 2, seeds: [0, 1]}")
    p = plan(man, sdata, out, reg)
    assert p["A"].action == "train" and "seeds" in p["A"].reason and p["A"].out_dir == str(out / "A" / "v2")


def test_cli_retrain_reports_the_seeds_and_the_best_by_validation(tmp_path, sdata, pair, monkeypatch):
    import ckreg.train

    man = write_manifest(tmp_path / "m.yaml", "{epochs: 1, seeds: [3, 5]}")
    fake = SeedFake(pair, {3: (0.9, 0.95), 5: (0.95, 0.85)})
    monkeypatch.setattr(ckreg.train, "train", fake)
    args = ["retrain", "-m", str(man), "--data", str(sdata), "--out", str(tmp_path / "out"),
            "--registry", str(tmp_path / "reg")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "A: seeds 3,5: test 90.00 ± 7.07%; A@best = seed 5 (by validation)" in r.output
    assert [c["seed"] for c in fake.calls] == [3, 5]
    r = CliRunner().invoke(cli, args + ["--dry-run", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["action"] == "skip", r.output


def test_a_seed_that_fails_verification_is_not_registered_and_never_best(tmp_path, sdata, pair):
    from ckreg.registry import Registry

    man = write_manifest(tmp_path / "m.yaml", "{epochs: 1, seeds: [0, 1]}", min_accuracy=0.9)
    out, reg = tmp_path / "out", tmp_path / "reg"
    # the poor seed 1 claims the best validation accuracy; it fails verification, so seed 0 is best
    fake = SeedFake(pair, {0: (0.8, 0.9), 1: (0.99, 0.99)}, poor={1})
    res = run_retrain(list(plan(man, sdata, out, reg).values()), trainer=fake)
    a = res.outcomes[0]
    assert a.status == "failed" and "seed 1" in a.error and res.exit_code() == 1
    assert [r["verified"] for r in a.runs] == [True, False]
    registry = Registry(reg)
    assert [v.provenance["seed"] for v in registry.ls("A")] == [0]
    assert registry.resolve("A@best").provenance["seed"] == 0 and a.best_seed == 0
    p = plan(man, sdata, out, reg)
    assert p["A"].action == "skip" and "failed verification" in p["A"].reason


def test_seeded_run_without_target_is_registered_later(tmp_path, sdata, pair):
    from ckreg.registry import Registry

    man = tmp_path / "m.yaml"
    man.write_text(write_manifest(tmp_path / "x.yaml", "{epochs: 1, seeds: [0, 1]}").read_text()
                   .replace("min_accuracy: 0.5\n", ""))
    out, reg = tmp_path / "out", tmp_path / "reg"
    fake = SeedFake(pair, {0: (0.8, 0.9), 1: (0.85, 0.8)})
    a = run_retrain(list(plan(man, sdata, out, reg).values()), trainer=fake).outcomes[0]
    assert a.status == "unverified" and a.version is None and not Registry(reg).exists()
    p = plan(man, sdata, out, reg, min_acc=0.5)
    assert p["A"].action == "register"
    a = run_retrain(list(p.values())).outcomes[0]
    assert a.status == "registered" and a.best_seed == 1, a
    registry = Registry(reg)
    assert len(registry.ls("A")) == 2 and registry.resolve("A@best").provenance["seed"] == 1
    assert plan(man, sdata, out, reg, min_acc=0.5)["A"].action == "skip"


# --------------------------------------------------------------------------- teacher and student


def test_image_teacher_and_distilled_student_from_the_manifest(tmp_path, sdata):
    """Real trainer: a seeded GASF teacher, a student that names `teacher@best`; the student waits for
    it, records distilled-from, and is retrained when its teacher is."""
    from ckreg.registry import Registry

    man = tmp_path / "m.yaml"
    man.write_text("""version: 1
name: kd
min_accuracy: 0.0
models:
  - name: student
    family: WRN
    hyperparameters: {conv_dim: 1, depth: 10, widen_factor: 1}
    path: s/weights.safetensors
    training: {epochs: 1, batch_size: 16, optimizer: sgd, lr: 0.05, teacher: teacher@best,
               kd_temperature: 4, kd_lambda: 0.7}
  - name: teacher
    family: WRN
    hyperparameters: {conv_dim: 2, depth: 10, widen_factor: 1}
    path: t/weights.safetensors
    training: {epochs: 1, batch_size: 16, optimizer: sgd, schedule: cosine, lr: 0.05, lr_min: 0.0001,
               imaging: gasf, image_size: 8, seeds: [0, 1]}
""")
    out, reg = tmp_path / "out", tmp_path / "reg"
    p = plan(man, sdata, out, reg)
    assert p["student"].after == ["teacher"] and p["teacher"].train_kwargs["imaging"]["size"] == 8
    assert any("not in the registry" in n for n in p["student"].notes) is False    # the plan trains it
    res = run_retrain(list(p.values()))
    assert res.exit_code() == 0, [o.error for o in res.outcomes]
    s, t = res.outcomes                      # in the manifest's order, trained teacher first
    assert t.status == "trained" and len(t.runs) == 2 and all(r["image"] for r in t.runs)
    registry = Registry(reg)
    tbest = registry.resolve("teacher@best")
    assert tbest.scaler is None and tbest.provenance["recipe"]["imaging"]["rescale"] == "train-split"
    assert s.status == "trained" and s.version == 1
    lock = read_lock(out / "student" / LOCK_NAME)
    assert lock["inputs"]["teacher"]["ref"] == tbest.ref and lock["inputs"]["teacher"]["sha256"] == tbest.sha256
    r = CliRunner().invoke(cli, ["registry", "--registry", str(reg), "show", "student@best"])
    assert r.exit_code == 0 and re.search(rf"lineage\s+distilled-from {re.escape(tbest.ref)}", r.output), r.output
    # up to date; a retrained teacher makes the student stale in the same plan
    p = plan(man, sdata, out, reg)
    assert p["teacher"].action == "skip" and p["student"].action == "skip", (p["teacher"].reason, p["student"].reason)
    (out / "teacher" / "v1" / "seed-0" / "weights.safetensors").write_bytes(b"gone")
    p = plan(man, sdata, out, reg)
    assert p["teacher"].action == "train" and p["student"].action == "train"
    assert "its teacher teacher is retrained" in p["student"].reason


def test_a_registry_teacher_without_a_registry_is_a_clear_failure(tmp_path, sdata):
    man = tmp_path / "m.yaml"
    man.write_text("""version: 1
name: kd
min_accuracy: 0.0
models:
  - name: student
    family: GRU
    hyperparameters: {hidden_size: 8}
    path: s/weights.safetensors
    training: {epochs: 1, teacher: nosuch@best}
""")
    p = plan(man, sdata, tmp_path / "out", None)
    assert any("nosuch@best" in n for n in p["student"].notes)
    o = run_retrain(list(p.values())).outcomes[0]
    assert o.status == "failed" and "registry" in o.error and "--registry" in o.error
    assert not (tmp_path / "out" / "student").exists() or not any((tmp_path / "out" / "student").rglob("*.safetensors"))
