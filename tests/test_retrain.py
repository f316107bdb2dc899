"""Retraining: the plan's staleness logic (DVC-like), runs with an injected trainer, registration, CLI (issue #5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ckreg.cli import cli  # noqa: E402
from ckreg.retrain import LOCK_NAME, declared_for_checkpoint, plan_retrain, read_lock, run_retrain  # noqa: E402
from verify_helpers import good_and_poor_pair, make_dataset  # noqa: E402

HP = "{input_size: 8, num_classes: 4, hidden_size: 8, num_layers: 1}"
HP_A = "{input_size: 8, num_classes: 4, hidden_size: 8, num_layers: 2}"   # no archive file holds this


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rdata(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("rdata") / "glove.npz")


@pytest.fixture(scope="module")
def trained(rdata, tmp_path_factory):
    """A good and a poor tiny GRU (with their train-split scaler), stand-ins for what a trainer writes."""
    return good_and_poor_pair(rdata, tmp_path_factory.mktemp("trained"))


class FakeTrainer:
    """Has `ckreg.train.train`'s signature; copies a prepared checkpoint instead of training."""

    def __init__(self, trained, which="good"):
        self.trained, self.which, self.calls = trained, which, []

    def __call__(self, family, data, out, overrides=None, seed=0, epochs=None, progress=None, **kw):
        from ckreg.train import TrainResult

        out = Path(out)
        assert out.is_dir() and not any(p.name != "ckreg.inputs.json" for p in out.iterdir()), "a fresh run folder"
        assert (out / "ckreg.inputs.json").is_file(), "inputs are recorded before training"
        self.calls.append({"family": family, "out": out, "overrides": overrides, "seed": seed, "epochs": epochs, **kw})
        shutil.copy(self.trained[self.which], out / "weights.pt")
        shutil.copy(self.trained["scaler"], out / "scaler.json")
        (out / "metrics.json").write_text("{}")
        return TrainResult(out=str(out), family=family, spec={}, seed=seed, test_accuracy=0.9,
                           files={"weights": str(out / "weights.pt"), "scaler_json": str(out / "scaler.json"),
                                  "metrics": str(out / "metrics.json")},
                           metrics={"recipe": {"seed": seed, "max_epochs": epochs},
                                    "split": {"seed": seed, "train": ["a"], "val": ["b"], "test": ["c"]}})


def write_manifest(path: Path, *, epochs=5, hidden=8, accuracy=None, b_scaler="b/scaler.json",
                   min_accuracy=0.5) -> Path:
    acc = f"\n    metrics: {{accuracy: {accuracy}}}" if accuracy is not None else ""
    hp = HP_A.replace("hidden_size: 8", f"hidden_size: {hidden}")
    floor = f"min_accuracy: {min_accuracy}\n" if min_accuracy is not None else ""
    path.write_text(f"""version: 1
name: tiny
{floor}defaults:
  training: {{epochs: {epochs}, lr: 0.01, batch_size: 16, seed: 0, patience: 3}}
models:
  - name: A
    family: StackedGRU
    hyperparameters: {hp}
    path: a/model.pt
    scaler: a/scaler.json{acc}
  - name: B
    family: GRU
    hyperparameters: {HP}
    path: b/model.pt
    scaler: {b_scaler}{acc}
""")
    return path


@pytest.fixture()
def world(tmp_path, trained, rdata):
    """An archive holding B (with its scaler) but not A; a manifest; an out folder and a registry path."""
    archive = tmp_path / "archive"
    (archive / "b").mkdir(parents=True)
    shutil.copy(trained["good"], archive / "b" / "model.pt")
    shutil.copy(trained["scaler"], archive / "b" / "scaler.json")
    return {"archive": archive, "manifest": write_manifest(tmp_path / "m.yaml"), "out": tmp_path / "out",
            "registry": tmp_path / "reg", "data": rdata, "tmp": tmp_path}


def plan(world, **kw):
    kw.setdefault("registry", world["registry"])
    return {i.name: i for i in plan_retrain(world["manifest"], world["data"], archive_root=world["archive"],
                                            out=world["out"], **kw)}


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# --------------------------------------------------------------------------- planning


def test_plan_trains_only_the_missing_model_and_writes_nothing(world):
    before = tree(world["tmp"])
    p = plan(world)
    assert p["A"].action == "train" and "model-missing" in p["A"].reason
    assert p["A"].out_dir == str(world["out"] / "A" / "v1")
    assert p["B"].action == "skip" and "b/model.pt" in p["B"].reason
    assert tree(world["tmp"]) == before
    # the recipe the run will use is the manifest's over the trainer's defaults
    kw = p["A"].train_kwargs
    assert (kw["epochs"], kw["lr"], kw["batch_size"], kw["patience"]) == (5, 0.01, 16, 3)
    assert kw["overrides"]["hidden_size"] == 8
    assert not plan(world, missing=False)["A"].action == "train"


def test_run_trains_verifies_registers_and_locks(world, trained):
    from ckreg.registry import Registry

    fake = FakeTrainer(trained)
    result = run_retrain(list(plan(world).values()), trainer=fake)
    assert result.exit_code() == 0
    a = next(o for o in result.outcomes if o.name == "A")
    assert a.status == "trained" and a.verified and a.accuracy >= 0.95
    assert a.version == 1 and "best" in a.aliases and a.alias_moved
    assert len(fake.calls) == 1 and fake.calls[0]["out"] == world["out"] / "A" / "v1"
    assert fake.calls[0]["epochs"] == 5 and fake.calls[0]["overrides"]["hidden_size"] == 8
    lock = read_lock(world["out"] / "A" / LOCK_NAME)
    assert lock["verification"]["passed"] and lock["registered"]["ref"] == "A@1"
    assert set(lock["hashes"]) == {"family", "hyperparameters", "recipe", "data"}
    v = Registry(world["registry"]).resolve("A@best")
    assert v.verified and v.provenance["source"] == "ckreg retrain"
    assert v.provenance["data_hash"] is None or isinstance(v.provenance["data_hash"], str)
    assert v.provenance["inputs"]["recipe"]["epochs"] == 5 and v.provenance["trainer_version"].startswith("ckreg.train")
    assert v.provenance["input_hash"] == lock["input_hash"]
    assert v.verification.data_hash == lock["inputs"]["data_hash"]


def test_unchanged_inputs_are_up_to_date(world, trained):
    run_retrain(list(plan(world).values()), trainer=FakeTrainer(trained))
    fake = FakeTrainer(trained)
    p = plan(world)
    assert p["A"].action == "skip" and p["A"].reason.startswith("up to date") and "A@1" in p["A"].reason
    result = run_retrain(list(p.values()), trainer=fake)
    assert fake.calls == [] and {o.status for o in result.outcomes} == {"skipped"}


def test_changed_recipe_hyperparameters_or_data_retrain_into_a_new_version(world, trained, tmp_path):
    run_retrain(list(plan(world).values()), trainer=FakeTrainer(trained))
    write_manifest(world["manifest"], epochs=7)
    p = plan(world)
    assert p["A"].action == "train" and "recipe (epochs: 5 -> 7)" in p["A"].reason
    assert p["A"].out_dir == str(world["out"] / "A" / "v2")
    write_manifest(world["manifest"], hidden=9)
    p = plan(world)
    assert p["A"].action == "train" and "hyperparameters (hidden_size: 8 -> 9)" in p["A"].reason
    write_manifest(world["manifest"])
    other = make_dataset(tmp_path / "other.npz", seed=5)
    p = {i.name: i for i in plan_retrain(world["manifest"], other, archive_root=world["archive"], out=world["out"])}
    assert p["A"].action == "train" and p["A"].reason.startswith("data (hash")
    assert plan(world)["A"].action == "skip"   # back to the recorded inputs: up to date again


def test_a_removed_or_altered_output_is_retrained_and_never_overwritten(world, trained):
    run_retrain(list(plan(world).values()), trainer=FakeTrainer(trained))
    weights = world["out"] / "A" / "v1" / "weights.pt"
    weights.write_bytes(weights.read_bytes() + b"x")
    p = plan(world)
    assert p["A"].action == "train" and "changed since the run" in p["A"].reason
    fake = FakeTrainer(trained)
    run_retrain(list(p.values()), trainer=fake)
    assert fake.calls[0]["out"] == world["out"] / "A" / "v2"
    assert weights.read_bytes().endswith(b"x")             # the old run's file is left alone
    weights.unlink()
    assert plan(world)["A"].action == "skip"            # the lock now records v2


def test_failed_retrains_a_broken_pair_but_not_a_recoverable_one(world, trained):
    import torch

    # B's scaler is the wrong recipe: verification fails, a re-fitted scaler rescues it -> not retrained
    shutil.copy(trained["upstream"], world["archive"] / "b" / "scaler.json")
    write_manifest(world["manifest"], accuracy=0.95)
    p = plan(world, failed=True, missing=False)
    assert p["B"].action == "skip" and "recoverable" in p["B"].reason and "train-split" in p["B"].reason
    # B's weights are NaN: nothing rescues it -> retrain
    sd = torch.load(trained["good"])
    sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in sd.items()}
    torch.save(sd, world["archive"] / "b" / "model.pt")
    p = plan(world, failed=True, missing=False)
    assert p["B"].action == "train" and "fails verification" in p["B"].reason
    assert p["A"].action == "skip"


def test_best_alias_moves_only_when_better(world, trained):
    from ckreg.registry import Registry

    write_manifest(world["manifest"], min_accuracy=0.0)   # a target the poor model meets too
    run_retrain(list(plan(world).values()), trainer=FakeTrainer(trained, "good"))
    res = run_retrain(list(plan(world, force=True).values()), trainer=FakeTrainer(trained, "poor"))
    a = next(o for o in res.outcomes if o.name == "A")
    assert a.status == "trained" and a.version == 2 and not a.alias_moved
    reg = Registry(world["registry"])
    assert reg.resolve("A@best").version == 1
    assert [v.version for v in reg.ls("A")] == [1, 2]


def test_a_run_that_fails_verification_is_not_registered(world, trained):
    write_manifest(world["manifest"], accuracy=0.99)
    res = run_retrain(list(plan(world).values()), trainer=FakeTrainer(trained, "poor"))
    a = next(o for o in res.outcomes if o.name == "A")
    assert a.status == "failed" and a.verified is False and a.version is None
    assert res.exit_code() == 1
    p = plan(world)
    assert p["A"].action == "skip" and "failed verification" in p["A"].reason
    assert plan(world, failed=True)["A"].action == "train"


def test_register_existing_recovers_the_scaler(world, trained):
    from ckreg.registry import Registry

    shutil.copy(trained["upstream"], world["archive"] / "b" / "scaler.json")
    write_manifest(world["manifest"], accuracy=0.95)
    p = plan(world, register_existing=True)
    assert p["B"].action == "register"
    res = run_retrain(list(p.values()), trainer=FakeTrainer(trained))
    b = next(o for o in res.outcomes if o.name == "B")
    assert b.status == "registered" and b.scaler_recipe == "train-split" and b.accuracy >= 0.95
    assert Path(b.scaler).parent == world["out"] / "B" / "scalers"
    v = Registry(world["registry"]).resolve("B@best")
    assert v.provenance["scaler"]["recovered"] and v.provenance["scaler"]["recipe"] == "train-split"
    assert v.scaler.recipe == "train-split"
    assert (world["archive"] / "b" / "scaler.json").read_bytes() == Path(trained["upstream"]).read_bytes()
    # a second run registers nothing new ...
    again = plan(world, register_existing=True)["B"]
    assert again.action == "skip" and "already registered as B@1" in again.reason
    # ... and with another registry it reuses the recovered scaler instead of writing another one
    scalers_before = sorted((world["out"] / "B" / "scalers").iterdir())
    res = run_retrain([plan(world, register_existing=True, registry=world["tmp"] / "reg2")["B"]])
    assert res.outcomes[0].status == "registered" and res.outcomes[0].scaler == b.scaler
    assert sorted((world["out"] / "B" / "scalers").iterdir()) == scalers_before


def test_declared_for_checkpoint_matches_by_path(world):
    write_manifest(world["manifest"], accuracy=0.97)
    acc, tol, name = declared_for_checkpoint(world["manifest"], world["tmp"] / "x" / "a" / "model.pt")
    assert (acc, tol, name) == (0.97, 0.005, "A")
    assert declared_for_checkpoint(world["manifest"], world["tmp"] / "nothing.pt") == (None, None, None)


# --------------------------------------------------------------------------- CLI


def test_cli_dry_run_writes_nothing(world):
    before = tree(world["tmp"])
    r = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                 "--archive", str(world["archive"]), "--out", str(world["out"]),
                                 "--registry", str(world["registry"]), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    doc = {i["name"]: i for i in json.loads(r.output)}
    # by default the existing verified pair is registered too, so every declared model ends
    # up with a verified pair in the registry (issue #5, "Done when" 2)
    assert doc["A"]["action"] == "train" and doc["B"]["action"] == "register"
    r = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                 "--archive", str(world["archive"]), "--out", str(world["out"]),
                                 "--registry", str(world["registry"]), "--dry-run", "--json",
                                 "--no-register-existing"])
    doc = {i["name"]: i for i in json.loads(r.output)}
    assert doc["A"]["action"] == "train" and doc["B"]["action"] == "skip"
    assert tree(world["tmp"]) == before


def test_cli_retrain_runs_the_plan(world, trained, monkeypatch):
    import ckreg.train

    fake = FakeTrainer(trained)
    monkeypatch.setattr(ckreg.train, "train", fake)
    r = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                 "--archive", str(world["archive"]), "--out", str(world["out"]),
                                 "--registry", str(world["registry"]), "--missing", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "A@1" in r.output and len(fake.calls) == 1 and fake.calls[0]["epochs"] == 2
    r2 = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                  "--archive", str(world["archive"]), "--out", str(world["out"]), "--epochs", "2",
                                  "--registry", str(world["registry"]), "--dry-run"])
    assert r2.exit_code == 0 and "up to date" in r2.output


def test_cli_retrain_usage_errors(world):
    r = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                 "--only", "Nope", "--dry-run"])
    assert r.exit_code == 2 and "Nope" in r.output


def test_no_target_trains_but_never_registers_or_aliases_best(world, trained):
    """Without an accuracy target a trained model is `unverified`: kept, never registered, never @best."""
    from ckreg.registry import Registry

    write_manifest(world["manifest"], min_accuracy=None)
    p = plan(world, register_existing=True)
    assert p["A"].action == "train" and p["A"].expect_acc is None
    assert any("no accuracy target" in n for n in p["A"].notes)
    assert p["B"].action == "skip" and "no accuracy target" in p["B"].reason   # the existing pair is not registered
    res = run_retrain(list(p.values()), trainer=FakeTrainer(trained, "good"))
    a = next(o for o in res.outcomes if o.name == "A")
    assert a.status == "unverified" and a.verified is False and a.version is None and not a.aliases
    assert "no target" in a.error and res.exit_code() == 1
    reg = Registry(world["registry"])
    assert not reg.exists() or reg.ls("A") == []
    # the same run, given a target afterwards, is verified and registered without retraining
    p = plan(world, min_acc=0.9)
    assert p["A"].action == "register" and "unverified" in p["A"].reason
    res = run_retrain([p["A"]])
    assert res.outcomes[0].status == "registered" and Registry(world["registry"]).resolve("A@best").verified


def test_real_trainer_two_epochs_is_not_verified_by_loading(world):
    """`retrain --epochs 2`: a barely trained model must not be registered as verified nor aliased best."""
    from ckreg.registry import Registry

    write_manifest(world["manifest"], epochs=2, min_accuracy=None)
    res = run_retrain(list(plan(world, only=["A"]).values()))
    a = res.outcomes[0]
    assert a.ckpt.endswith("weights.safetensors") and a.accuracy is not None, a
    assert a.status == "unverified" and a.version is None
    res = run_retrain(list(plan(world, only=["A"], min_acc=0.99, force=True).values()))
    a = res.outcomes[0]
    assert a.accuracy < 0.99 and a.status == "failed" and a.verified is False and a.version is None
    reg = Registry(world["registry"])
    assert not reg.exists() or reg.ls("A") == []


def test_retrain_never_writes_inside_the_archive(world):
    from ckreg.errors import UsageError

    before = tree(world["archive"])
    with pytest.raises(UsageError, match="inside the archive"):
        plan_retrain(world["manifest"], world["data"], archive_root=world["archive"], out=world["archive"] / "runs")
    r = CliRunner().invoke(cli, ["retrain", "-m", str(world["manifest"]), "--data", str(world["data"]),
                                 "--archive", str(world["archive"]), "--out", str(world["archive"] / "runs"),
                                 "--dry-run"])
    assert r.exit_code == 2 and "inside the archive" in r.output and "Traceback" not in r.output
    assert tree(world["archive"]) == before
