"""`add(..., data=...)`: the pair is verified on the way in with `ckreg.verify.verify_pair` (issue #5)."""

from __future__ import annotations

import pytest

from ckreg.data import SIGNGLOVE_CHANNELS
from ckreg.errors import UsageError
from reghelpers import stub_add

np = pytest.importorskip("numpy")


@pytest.fixture
def npz_for(tmp_path):
    """npz_for(ckpt, scaler) -> a 12-episode .npz labelled with the model's own predictions (accuracy 1.0)."""
    def make(ckpt, scaler_path):
        from ckreg.scaler import load_scaler
        from ckreg.zoo import load_checkpoint, predict

        rng = np.random.default_rng(1)
        X = rng.normal(size=(12, 87, 8)).astype(np.float32)
        mask = np.zeros((12, 87), dtype=np.uint8)
        mask[::2, 50:] = 1
        X[mask == 1] = 1.0
        module, _, _ = load_checkpoint(ckpt)
        y = predict(module, load_scaler(scaler_path).transform(X), mask).argmax(axis=1).astype(np.int64)
        path = tmp_path / "tiny.npz"
        np.savez(path, X=X, y=y, mask=mask, class_names=np.asarray(["w", "x", "y", "z"]),
                 channel_names=np.asarray(SIGNGLOVE_CHANNELS))
        return path

    return make


def test_add_with_data_records_the_verification(reg, gru_ckpt, scaler_file, npz_for):
    from ckreg.data import load_npz

    ckpt, _ = gru_ckpt(5)
    scaler = scaler_file(5)
    data = npz_for(ckpt, scaler)
    v = reg.add(ckpt, scaler, data=data, expect_acc=0.99, aliases=["best"])
    assert v.verified and v.accuracy == 1.0
    assert v.verification.data_hash == load_npz(data).data_hash
    assert v.class_names == ["w", "x", "y", "z"]
    assert [e.kind for e in reg.events(name="GRU")] == ["registered", "verified", "alias-moved"]


def test_add_with_data_needs_the_scaler_and_no_ready_result(reg, blob_file):
    with pytest.raises(UsageError, match="needs the pair's scaler"):
        stub_add(reg, blob_file(1), data="anything.npz")
    with pytest.raises(UsageError, match="needs data"):
        stub_add(reg, blob_file(1), expect_acc=0.9)
    assert not reg.exists()
