"""`ckreg eval`'s scale ablation: accuracy with each scale's input chunk zeroed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ckreg.arch import ArchSpec
from ckreg.cli import cli
from ckreg.train.ablation import scale_ablation


def _zero_weights(model, cell: str, k: str):
    """Zeroing chunk k of the input is the same as zeroing W_{z,r,h}k (linear, no bias)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for g in "zrh":
            getattr(getattr(m, cell).cell, f"W_{g}{k}").weight.zero_()
    return m


@pytest.mark.parametrize("family,cell", [("MSCSGRU_ScaleAware", "gru1"), ("MSCGRU_ScaleAware", "gru"),
                                         ("MSCSGRU_ScaleHard", "gru1")])
def test_ablation_equals_zeroing_that_scales_weights(family, cell):
    from ckreg import zoo
    from ckreg.train.common import predict_logits

    torch.manual_seed(0)
    model = zoo.build(ArchSpec.for_family(family, hidden_size=8, cnn_filters=4, num_classes=4)).eval()
    with torch.no_grad():   # make the scales matter (freshly initialised, the bias terms dominate)
        for name, p in model.named_parameters():
            if ".cell.W_" in name or name.startswith("output_layers"):
                p.mul_(6)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12, 8)).astype(np.float32) * 3
    mask = np.zeros((40, 12), dtype=np.uint8)
    mask[::3, 9:] = 1                                             # ragged episodes
    base = predict_logits(model, X, mask).argmax(dim=1).numpy()
    y = base.copy()
    y[::4] = (y[::4] + 1) % 4                                     # 75% accurate by construction
    res = scale_ablation(model, X, mask, y)
    assert res["cell"] == cell and res["accuracy"] == pytest.approx(0.75)
    for k in "357":
        want = predict_logits(_zero_weights(model, cell, k), X, mask).argmax(dim=1).numpy()
        got = res["scales"][k]
        assert got["accuracy"] == pytest.approx(float((want == y).mean()))
        assert got["agreement"] == pytest.approx(float((want == base).mean()))
        assert got["drop"] == pytest.approx(0.75 - got["accuracy"])
    assert any(res["scales"][k]["agreement"] < 1.0 for k in "357"), "zeroing a scale changed nothing"
    # the hook is gone: the model predicts as before
    assert (predict_logits(model, X, mask).argmax(dim=1).numpy() == base).all()


def test_other_families_have_no_ablation():
    from ckreg import zoo

    model = zoo.build(ArchSpec.for_family("MSCSGRU", hidden_size=8, cnn_filters=4, num_classes=3))
    assert scale_ablation(model, np.zeros((2, 6, 8), np.float32), np.zeros((2, 6), np.uint8), np.zeros(2)) is None


@pytest.fixture(scope="module")
def scale_run(glove_tree, tmp_path_factory):
    """A freshly built MSCGRU_ScaleAware (scales made to matter) with a scaler fitted on the tree."""
    from ckreg import zoo
    from ckreg.data import load_dataset
    from ckreg.scaler import fit_scaler

    out = tmp_path_factory.mktemp("scale")
    torch.manual_seed(1)
    model = zoo.build(ArchSpec.for_family("MSCGRU_ScaleAware", hidden_size=8, cnn_filters=4, num_classes=3))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".cell.W_" in name:
                p.mul_(6)
    torch.save(model.state_dict(), out / "model.ckpt")
    fit_scaler(load_dataset(glove_tree)).save_json(out / "scaler.json")
    return out


def test_eval_cli_table_json_and_png(scale_run, glove_tree, tmp_path):
    from ckreg.inspect import inspect_path

    png = tmp_path / "scales.png"
    args = ["eval", str(scale_run / "model.ckpt"), "--scaler", str(scale_run / "scaler.json"), "--data",
            str(glove_tree), "--split", "all", "--latency-samples", "0"]
    r = CliRunner().invoke(cli, args + ["--scales-png", str(png)], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "scale 3" in r.output and "scale 7" in r.output and "weight norm" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert max(len(line) for line in r.output.splitlines()) <= 80
    r2 = CliRunner().invoke(cli, args + ["--scales-png", str(png)])
    assert r2.exit_code == 2 and "refusing to overwrite" in r2.output
    j = CliRunner().invoke(cli, args + ["--json"])
    ev = json.loads(j.stdout)
    ab = ev["scale_ablation"]
    assert ab["cell"] == "gru" and ab["accuracy"] == pytest.approx(ev["accuracy"])
    assert set(ab["scales"]) == {"3", "5", "7"} and ab["n_episodes"] == ev["n_episodes"]
    want = inspect_path(str(scale_run / "model.ckpt")).scales.cells[0].per_scale
    assert ev["scale_norms"] == pytest.approx(want)


def test_scales_png_for_a_family_without_scales_is_a_usage_error(tiny_run, glove_tree, tmp_path):
    _, out = tiny_run
    png = tmp_path / "s.png"
    r = CliRunner().invoke(cli, ["eval", str(out / "model.ckpt"), "--scaler", str(out / "scaler.json"), "--data",
                                 str(glove_tree), "--latency-samples", "0", "--scales-png", str(png)])
    assert r.exit_code == 2 and "no scale-aware cell" in r.output
    assert not png.exists()
