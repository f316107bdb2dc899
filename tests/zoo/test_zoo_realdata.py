"""The real archive: MS3DGRU + its scaler.pkl must score 99.4% over all 1,444 episodes (issue #3, "Check")."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def signglove_all(signglove_dir):
    from ckreg.data import load_signglove

    return load_signglove(signglove_dir, keep_degenerate=True)


def test_ms3dgru_best_scores_99_4_percent(archive_dir, signglove_all):
    from ckreg.scaler import ScalerVersionWarning, load_scaler
    from ckreg.zoo import load_checkpoint, predict

    ds = signglove_all
    assert len(ds) == 1444
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalerVersionWarning)
        scaler = load_scaler(archive_dir / "best_model" / "scaler.pkl")
    module, spec, insp = load_checkpoint(archive_dir / "best_model" / "ms3dgru_best.ckpt")
    assert spec.family == "MS3DGRU" and spec.pool == [2, 4, 2]
    scaler.check_input_size(spec.input_size)
    pred = predict(module, scaler.transform(ds.X), ds.mask).argmax(axis=1)
    acc = float((pred == ds.y).mean())
    assert round(acc * 100, 1) == 99.4, acc


def test_gru_best_loads_strictly_with_the_spec_key_names(archive_dir):
    from ckreg.zoo import load_checkpoint

    path = archive_dir / "archive" / "checkpoints_backup" / "checkpoints_backup" / "GRU_best.ckpt"
    module, spec, _ = load_checkpoint(path)
    assert (spec.family, spec.num_layers, spec.proj_size) == ("GRU", 2, 128)
    assert "RNN.1.weight_ih_l1" in module.state_dict()
