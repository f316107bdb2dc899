"""`ckreg train` / `ckreg eval` through CliRunner: bad input exits 2 before training, --json schemas."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from train_factories import make_npz

jsonschema = pytest.importorskip("jsonschema")

EVAL_SCHEMA = {
    "type": "object",
    "required": ["accuracy", "per_class", "confusion_matrix", "latency_ms", "n_episodes", "params", "split"],
    "properties": {
        "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "per_class": {"type": "object",
                      "additionalProperties": {"type": ["number", "null"], "minimum": 0, "maximum": 1}},
        "confusion_matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
        "latency_ms": {"type": "number", "exclusiveMinimum": 0},
        "n_episodes": {"type": "integer", "minimum": 1},
        "params": {"type": "integer", "minimum": 1},
    },
}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _tree_state(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else None


# -- bad input: exit 2, one clear line, nothing written --------------------------------------

@pytest.mark.parametrize("args,message", [
    (["Transformer"], "unknown family 'Transformer'"),
    (["GRU", "--set", "cnn_filters=4"], "family GRU has no hyperparameter 'cnn_filters'"),
    (["GRU", "--set", "hidden_size"], "is not key=value"),
    (["GRU", "--set", "hidden_size=[1, 2"], "cannot parse"),
    (["GRU", "--set", "hidden_size=abc"], "invalid spec for GRU"),
    (["GRU", "--epochs", "0"], "epochs must be >= 1"),
])
def test_train_bad_spec_or_option(glove_tree, tmp_path, args, message):
    out = tmp_path / "out"
    r = run("train", *args, "--data", glove_tree, "--out", out)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_train_ms3d_wrong_channel_count(tmp_path):
    data = make_npz(tmp_path / "six.npz", C=6)
    out = tmp_path / "out"
    r = run("train", "MS3DGRU", "--data", data, "--out", out)
    assert r.exit_code == 2
    assert "MS3DGRU needs 8 input channels" in r.output and "has 6" in r.output
    assert not out.exists()


def test_train_no_episodes(tmp_path):
    empty = tmp_path / "empty"
    (empty / "a" / "1").mkdir(parents=True)
    out = tmp_path / "out"
    r = run("train", "GRU", "--data", empty, "--out", out)
    assert r.exit_code == 2 and "no episodes" in r.output
    assert not out.exists()


def test_train_missing_data(tmp_path):
    r = run("train", "GRU", "--data", tmp_path / "nope", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "no such file or directory" in r.output


def test_train_refuses_existing_outputs(tiny_run, glove_tree):
    _, out = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = run("train", "GRU", "--data", glove_tree, "--out", out, "--set", "hidden_size=8")
    assert r.exit_code == 2 and "--force" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_eval_scaler_width_mismatch(tiny_run, glove_tree, tmp_path):
    """A 6-feature scaler with an 8-input model: exit 2 naming both widths, before scoring."""
    from ckreg.data import load_dataset
    from ckreg.scaler import fit_scaler, save_json

    six = load_dataset(make_npz(tmp_path / "six.npz", C=6))
    save_json(fit_scaler(six, "upstream"), tmp_path / "six.json")
    _, out = tiny_run
    r = run("eval", out / "model.ckpt", "--scaler", tmp_path / "six.json", "--data", glove_tree,
            "--png", tmp_path / "cm.png")
    assert r.exit_code == 2, r.output
    assert "6 features" in r.output and "8" in r.output
    assert not (tmp_path / "cm.png").exists()


def test_eval_data_channel_mismatch(tiny_run, tmp_path):
    _, out = tiny_run
    r = run("eval", out / "model.ckpt", "--scaler", out / "scaler.json", "--data", make_npz(tmp_path / "six.npz", C=6))
    assert r.exit_code == 2 and "8 input channels but the data has 6" in r.output


def test_eval_unreadable_checkpoint(tiny_run, glove_tree, tmp_path):
    _, out = tiny_run
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    r = run("eval", bad, "--scaler", out / "scaler.json", "--data", glove_tree)
    assert r.exit_code == 2 and "Traceback" not in r.output


# -- happy paths -------------------------------------------------------------------------------

def test_train_json_then_eval_json(glove_tree, tmp_path):
    out = tmp_path / "run"
    r = run("train", "GRU", "--data", glove_tree, "--out", out, "--set", "hidden_size=8", "--set", "dropout=0.0",
            "--epochs", "2", "--batch-size", "8", "--seed", "4", "--pkl", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["status"] == "completed" and res["spec"]["dropout"] == 0.0 and res["seed"] == 4
    assert (out / "scaler.pkl").exists() and res["metrics_path"].endswith("metrics.json")

    r = run("eval", out / "model.ckpt", "--scaler", out / "scaler.json", "--data", glove_tree, "--json",
            "--latency-samples", "3")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)                      # ONE object
    jsonschema.validate(ev, EVAL_SCHEMA)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert ev["n_episodes"] == len(metrics["split"]["test"])          # the run's own test episodes
    assert ev["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert ev["confusion_matrix"] == metrics["confusion_matrix"]
    assert sum(map(sum, ev["confusion_matrix"])) == ev["n_episodes"]
    assert set(ev["per_class"]) == {"a", "b", "c"}
    assert ev["latency"]["threads"] == 1 and ev["latency"]["batch"] == 1

    # the safetensors file scores the same, with the seed taken from its metadata
    r = run("eval", out / "weights.safetensors", "--scaler", out / "scaler.pkl", "--data", glove_tree,
            "--json", "--latency-samples", "0")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(ev["accuracy"])


def test_eval_all_with_png_and_heatmap(tiny_run, glove_tree, tmp_path):
    _, out = tiny_run
    png = tmp_path / "cm.png"
    r = run("eval", out / "model.ckpt", "--scaler", out / "scaler.json", "--data", glove_tree, "--split", "all",
            "--png", png, "--latency-samples", "2")
    assert r.exit_code == 0, r.output
    assert "confusion matrix" in r.output and "accuracy" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("eval", out / "model.ckpt", "--scaler", out / "scaler.json", "--data", glove_tree, "--png", png)
    assert r.exit_code == 2 and "refusing to overwrite" in r.output
    r = run("eval", out / "model.ckpt", "--scaler", out / "scaler.json", "--data", glove_tree, "--split", "all",
            "--json", "--latency-samples", "0")
    ev = json.loads(r.stdout)
    assert ev["n_episodes"] == 21 and ev["split"] == "all" and ev["latency_ms"] is None


def test_parse_sets_yaml_values():
    from ckreg.cli.train_cmd import parse_sets

    got = parse_sets(("hidden_size=16", "tower_kernels=[[3], [5]]", "dropout=0.25", "cell=LSTM", "bidirectional=true"))
    assert got == {"hidden_size": 16, "tower_kernels": [[3], [5]], "dropout": 0.25, "cell": "LSTM",
                   "bidirectional": True}


def test_train_ctrl_c_exits_130_and_keeps_best(glove_tree, tmp_path, monkeypatch):
    import torch

    from ckreg.cli import train_cmd

    original = train_cmd._Bar.__call__

    def interrupting(self, ev):
        original(self, ev)
        if ev.kind == "batch" and ev.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd._Bar, "__call__", interrupting)
    out = tmp_path / "out"
    r = run("train", "GRU", "--data", glove_tree, "--out", out, "--set", "hidden_size=8", "--epochs", "5",
            "--batch-size", "8")
    assert r.exit_code == 130
    assert "interrupted: kept the best checkpoint (epoch 1)" in r.output
    assert torch.load(out / "model.ckpt", weights_only=True)["epoch"] == 0
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["status"] == "interrupted"
