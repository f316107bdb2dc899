"""`ckreg.train.train`: outputs load, runs are deterministic, Ctrl-C keeps the best checkpoint (issue #3)."""

from __future__ import annotations

import json

import pytest

from ckreg.arch import ArchSpec
from ckreg.errors import CkregError, SpecError, UsageError
from ckreg.train import OUTPUT_FILES, ProgressEvent, train
from ckreg.fsutil import TMP_PREFIX, leftover_temps, write_bytes, write_with

from train_factories import TINY_GRU, make_npz

torch = pytest.importorskip("torch")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_outputs_exist_and_load(tiny_run):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ckreg import zoo
    from ckreg.scaler import load_scaler
    from ckreg.train.common import weights_sha256

    result, out = tiny_run
    names = {p.name for p in out.iterdir()}
    assert set(OUTPUT_FILES) - {"scaler.pkl"} == names
    assert "scaler.pkl" not in names            # only on request
    assert not leftover_temps(out)

    ck = torch.load(out / "model.ckpt", weights_only=True, map_location="cpu")
    for key in ("state_dict", "epoch", "global_step", "pytorch-lightning_version", "hyper_parameters"):
        assert key in ck
    hp = ck["hyper_parameters"]
    spec = ArchSpec(**{k: v for k, v in hp.items() if k in ArchSpec.model_fields})
    assert spec.family == "GRU" and spec.hidden_size == 8 and spec.num_classes == 3 and spec.input_size == 8
    assert hp["optimizer"] == "AdamW" and hp["seed"] == 3 and hp["scaler_recipe"] == "train-split"
    assert ck["epoch"] == result.best_epoch - 1 and ck["global_step"] > 0
    model = zoo.build(spec)
    model.load_state_dict(ck["state_dict"], strict=True)   # the family's key names, no prefix

    sd = load_file(str(out / "weights.safetensors"))
    assert sd.keys() == ck["state_dict"].keys()
    assert all(torch.equal(sd[k], ck["state_dict"][k]) for k in sd)
    with safe_open(str(out / "weights.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert ArchSpec.model_validate_json(meta["ckreg.spec"]) == spec
    assert meta["ckreg.weights_sha256"] == weights_sha256(sd) == result.weights_sha256
    assert meta["ckreg.data_hash"] == result.data_hash
    # one definition of weights_sha256 across the project: the inspector's, from either file
    from ckreg.inspect import inspect_path

    for name in ("model.ckpt", "weights.safetensors"):
        assert inspect_path(out / name, hash_weights=True).weights_sha256 == result.weights_sha256

    loaded, lspec, _ = zoo.load_checkpoint(out / "weights.safetensors")   # the zoo reads our metadata
    assert lspec == spec

    scaler = load_scaler(out / "scaler.json")
    assert scaler.n_features == 8 and scaler.recipe == "train-split"
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["status"] == "completed" and m["seed"] == 3 and m["data_hash"] == result.data_hash
    assert m["epochs_run"] == 3 == len(m["epoch_times_s"]) == len(m["history"])
    assert m["ckreg_version"] and m["recipe"]["lr"] > 0 and m["wall_time_s"] > 0
    test_ids = m["split"]["test"]
    assert len(test_ids) == result.n_test > 0 and not set(test_ids) & set(m["split"]["train"])
    cm = m["confusion_matrix"]
    assert len(cm) == 3 and sum(map(sum, cm)) == len(test_ids)
    assert m["test_accuracy"] == pytest.approx(sum(cm[i][i] for i in range(3)) / len(test_ids))
    assert set(m["per_class_accuracy"]) == {"a", "b", "c"}


def test_same_seed_same_weights_other_seed_differs(glove_tree, tmp_path):
    runs = [train("GRU", glove_tree, tmp_path / f"r{i}", overrides=TINY_GRU, seed=s, epochs=2, batch_size=8)
            for i, s in enumerate((5, 5, 6))]
    assert runs[0].weights_sha256 == runs[1].weights_sha256
    for name in ("weights.safetensors", "model.ckpt"):   # canonical bytes: content-addressable
        assert (tmp_path / "r0" / name).read_bytes() == (tmp_path / "r1" / name).read_bytes()
    strip = lambda h: [(e["train_loss"], e["val_loss"], e["val_acc"]) for e in h]  # noqa: E731
    assert strip(runs[0].metrics["history"]) == strip(runs[1].metrics["history"])
    assert runs[2].weights_sha256 != runs[0].weights_sha256


def test_caller_rng_and_torch_settings_untouched(glove_tree, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    train("GRU", glove_tree, tmp_path / "o", overrides=TINY_GRU, epochs=1, batch_size=8)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_ctrl_c_keeps_complete_best_checkpoint(glove_tree, tmp_path):
    from ckreg import zoo

    seen: list[ProgressEvent] = []

    def progress(ev: ProgressEvent) -> None:
        seen.append(ev)
        if ev.kind == "batch" and ev.epoch == 3 and ev.step == 1:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    result = train("GRU", glove_tree, out, overrides=TINY_GRU, seed=1, epochs=10, batch_size=4,
                   patience=10, progress=progress)
    assert result.interrupted and result.stop_reason == "interrupted"
    assert result.epochs_run == 2 and 1 <= result.best_epoch <= 2
    assert not leftover_temps(out)
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
    module, spec, _ = zoo.load_checkpoint(out / "model.ckpt")      # strict load
    ck = torch.load(out / "model.ckpt", weights_only=True)
    assert ck["epoch"] == result.best_epoch - 1
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["status"] == "interrupted" and m["best_epoch"] == result.best_epoch
    assert m["test_accuracy"] is not None                          # scored with the kept weights
    assert any(ev.kind == "saved" for ev in seen)


def test_ctrl_c_before_first_epoch_leaves_nothing(glove_tree, tmp_path):
    def progress(ev):
        if ev.kind == "batch":
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train("GRU", glove_tree, out, overrides=TINY_GRU, epochs=3, batch_size=4, progress=progress)
    assert not out.exists()


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.ckpt"
    target.write_bytes(b"old")

    def writer(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_with(target, writer, overwrite=True)
    assert target.read_bytes() == b"old"
    assert not leftover_temps(tmp_path)
    write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new" and not leftover_temps(tmp_path)


def test_refuses_existing_outputs_unless_force(tiny_run, glove_tree, tmp_path):
    _, out = tiny_run
    before = _snapshot(out)
    with pytest.raises(UsageError, match="already holds training outputs"):
        train("GRU", glove_tree, out, overrides=TINY_GRU, epochs=1)
    assert _snapshot(out) == before

    other = tmp_path / "o"
    other.mkdir()
    (other / "notes.txt").write_text("mine")          # a user's file: untouched, not a reason to refuse
    (other / "scaler.pkl").write_bytes(b"stale")
    with pytest.raises(UsageError):
        train("GRU", glove_tree, other, overrides=TINY_GRU, epochs=1)
    r = train("GRU", glove_tree, other, overrides=TINY_GRU, epochs=1, batch_size=8, force=True)
    assert r.status == "completed"
    assert (other / "notes.txt").read_text() == "mine"
    assert not (other / "scaler.pkl").exists()        # a previous run's scaler never sits beside new weights


def test_pkl_on_request(glove_tree, tmp_path):
    from ckreg.scaler import load_scaler

    out = tmp_path / "o"
    train("GRU", glove_tree, out, overrides=TINY_GRU, epochs=1, batch_size=8, pkl=True, png=False)
    assert load_scaler(out / "scaler.pkl").mean == pytest.approx(load_scaler(out / "scaler.json").mean)
    assert not (out / "confusion_matrix.png").exists()


@pytest.mark.parametrize("family,overrides,exc,match", [
    ("Transformer", {}, SpecError, "unknown family"),
    ("GRU", {"cnn_filters": 4}, SpecError, "no hyperparameter 'cnn_filters'"),
    ("GRU", {"input_size": 6}, SpecError, "8 channels"),
])
def test_bad_spec_before_training(glove_tree, tmp_path, family, overrides, exc, match):
    with pytest.raises(exc, match=match):
        train(family, glove_tree, tmp_path / "o", overrides=overrides, epochs=1)
    assert not (tmp_path / "o").exists()


def test_ms3d_needs_eight_channels(tmp_path):
    data = make_npz(tmp_path / "six.npz", C=6)
    with pytest.raises(SpecError, match="needs 8 input channels"):
        train("MS3DGRU", data, tmp_path / "o", epochs=1)
    assert not (tmp_path / "o").exists()


def test_tiny_conv_family_on_npz(tmp_path):
    """A non-SignGlove dataset (6 channels, T=10) trains a 1D conv family: the trainer is not tied to one dataset."""
    data = make_npz(tmp_path / "six.npz", C=6)
    r = train("MSCGRU", data, tmp_path / "o", overrides={"hidden_size": 8, "cnn_filters": 4}, epochs=2,
              batch_size=6, png=False)
    assert r.spec["input_size"] == 6 and r.spec["num_classes"] == 3 and r.epochs_run == 2


@pytest.mark.parametrize("kwargs", [dict(epochs=0), dict(batch_size=0), dict(lr=-1.0), dict(patience=-1)])
def test_bad_options(glove_tree, tmp_path, kwargs):
    with pytest.raises(CkregError):
        train("GRU", glove_tree, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_early_stopping(glove_tree, tmp_path):
    r = train("GRU", glove_tree, tmp_path / "o", overrides=TINY_GRU, epochs=50, batch_size=8, lr=1e-30,
              patience=1, png=False)
    assert r.stop_reason == "early-stopping" and r.epochs_run < 50
    assert r.epochs_run - r.best_epoch == 1


@pytest.mark.parametrize("family", __import__("ckreg.arch", fromlist=["FAMILIES"]).FAMILIES)
def test_every_family_trains_and_reloads_as_itself(glove_tree, tmp_path, family):
    """One tiny epoch per family; both files reload into the zoo as the SAME family
    (ScaleAware vs ScaleHard is told apart only by the recorded spec)."""
    from ckreg import zoo

    overrides = {} if family == "WRN" else {"hidden_size": 8}
    if family not in ("GRU", "LSTM", "StackedGRU", "StackedLSTM", "WRN"):
        overrides["cnn_filters"] = 4
    r = train(family, glove_tree, tmp_path / "o", overrides=overrides, epochs=1, batch_size=8, png=False)
    for name in ("model.ckpt", "weights.safetensors"):
        _, spec, _ = zoo.load_checkpoint(tmp_path / "o" / name)
        assert spec.family == family and spec.model_dump(mode="json") == r.spec
