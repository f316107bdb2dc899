"""`ckreg.load(ref).predict(episodes)`: raw sensor arrays in, classes out, as trained (issue #5)."""

from __future__ import annotations

import pytest

import ckreg
from ckreg.errors import DataError, RegistryError, ScalerError
from ckreg.registry.api import pad_episodes
from reghelpers import reg_env

np = pytest.importorskip("numpy")


def test_pad_episodes_cuts_and_pads_like_the_signglove_loader():
    short = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    long = np.arange(100 * 2, dtype=np.float32).reshape(100, 2)
    X, mask = pad_episodes([short, long], T=87, pad_value=1.0, channels=2)
    assert X.shape == (2, 87, 2) and X.dtype == np.float32 and mask.dtype == np.uint8
    assert np.array_equal(X[0, :3], short) and np.all(X[0, 3:] == 1.0)
    assert mask[0].tolist() == [0] * 3 + [1] * 84
    assert np.array_equal(X[1], long[:87]) and not mask[1].any()
    # one [N, T, C] array with its mask: the padded rows are re-padded, the valid ones kept
    X2, mask2 = pad_episodes(X, T=87, pad_value=1.0, channels=2, mask=mask)
    assert np.array_equal(X2, X) and np.array_equal(mask2, mask)
    with pytest.raises(DataError, match="expected \\[t, 2\\]"):
        pad_episodes([np.zeros((4, 3))], T=87, pad_value=1.0, channels=2)


@pytest.fixture
def loaded_reg(reg, gru_ckpt, scaler_file):
    path, _ = gru_ckpt(3)
    reg.add(path, scaler_file(3), aliases=["best"],
            verification={"accuracy": 1.0, "passed": True, "class_names": ["w", "x", "y", "z"]})
    return reg


def test_load_predicts_like_the_zoo_on_padded_scaled_input(loaded_reg, torch_mod):
    from ckreg.scaler import load_scaler
    from ckreg.zoo import build, predict
    from ckreg.zoo.io import read_state_dict

    m = ckreg.load("GRU@best", registry=loaded_reg)
    assert not m.model.training and m.spec.hidden_size == 8 and m.class_names == ["w", "x", "y", "z"]
    rng = np.random.default_rng(0)
    episodes = [rng.normal(size=(n, 8)).astype(np.float32) for n in (1, 40, 87, 120)]
    pred = m.predict(episodes)
    indices, probs = pred
    assert indices.shape == (4,) and probs.shape == (4, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert pred.labels == [m.class_names[i] for i in indices]

    # the same thing by hand: pad with raw 1.0 rows, scale everything, run the zoo module
    v = loaded_reg.resolve("GRU@best")
    X = np.ones((4, 87, 8), dtype=np.float32)
    mask = np.ones((4, 87), dtype=np.uint8)
    for i, ep in enumerate(episodes):
        k = min(len(ep), 87)
        X[i, :k], mask[i, :k] = ep[:k], 0
    scaler = load_scaler(loaded_reg.blob_path(v.scaler.sha256))
    module = build(v.spec)
    module.load_state_dict(read_state_dict(loaded_reg.blob_path(v.sha256)), strict=True)
    logits = predict(module, scaler.transform(X), mask)
    assert np.array_equal(indices, logits.argmax(axis=1))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-5)

    # one [N, T, C] array with its mask gives the same answer
    again = m.predict(X, mask=mask)
    assert np.array_equal(again.indices, indices) and np.allclose(again.probabilities, probs)


def test_load_uses_the_environment_registry_and_refuses_bad_input(loaded_reg, monkeypatch, torch_mod):
    reg_env(loaded_reg, monkeypatch)
    m = ckreg.load("GRU")
    assert m.ref == "GRU@1"
    with pytest.raises(DataError, match="expected \\[t, 8\\]"):
        m.predict([np.zeros((10, 5))])
    with pytest.raises(RegistryError, match="no alias 'prod'"):
        ckreg.load("GRU@prod")


def test_predict_needs_the_scaler(reg, gru_ckpt, torch_mod):
    path, _ = gru_ckpt(4)
    reg.add(path)
    m = ckreg.load("GRU", registry=reg)
    with pytest.raises(ScalerError, match="without a scaler"):
        m.predict([np.zeros((10, 8))])


def test_predict_reorders_or_refuses_named_columns(loaded_reg, torch_mod, tmp_path):
    """The scaler carries channel names: a table is put in training order, or refused; a wrong width is refused."""
    from ckreg.data import SIGNGLOVE_CHANNELS, load_episode_csv

    m = ckreg.load("GRU@best", registry=loaded_reg)
    assert m.scaler.channel_names == list(SIGNGLOVE_CHANNELS)
    rng = np.random.default_rng(1)
    ep = rng.normal(size=(30, 8)).astype(np.float32)
    want = m.predict([ep]).probabilities
    shuffled = list(reversed(SIGNGLOVE_CHANNELS))
    as_dict = {c: ep[:, SIGNGLOVE_CHANNELS.index(c)] for c in shuffled}
    assert np.allclose(m.predict(as_dict).probabilities, want, atol=1e-6)          # reordered by name
    structured = np.zeros(30, dtype=[(c, "f4") for c in shuffled])
    for c in shuffled:
        structured[c] = ep[:, SIGNGLOVE_CHANNELS.index(c)]
    assert np.allclose(m.predict([structured]).probabilities, want, atol=1e-6)

    class Frame:   # what pandas offers: columns and per-column to_numpy
        def __init__(self, d):
            self.d, self.columns = d, list(d)

        def __getitem__(self, k):
            return type("Col", (), {"to_numpy": lambda _s, v=self.d[k]: v})()

        def to_numpy(self):
            return np.stack(list(self.d.values()), axis=1)

    assert np.allclose(m.predict(Frame(as_dict)).probabilities, want, atol=1e-6)
    with pytest.raises(ScalerError, match="missing \\['yaw'\\]"):
        m.predict({c: v for c, v in as_dict.items() if c != "yaw"})
    with pytest.raises(ScalerError, match="unknown \\['temp'\\]"):
        m.predict({**as_dict, "temp": ep[:, 0]})
    with pytest.raises(DataError, match="expected \\[t, 8\\]"):
        m.predict([ep[:, :7]])
    # the public CSV episode loader reads by header name, whatever the column order
    csv = tmp_path / "episode_1.csv"
    csv.write_text("timestamp," + ",".join(shuffled) + "\n" + "\n".join(
        f"{i}," + ",".join(str(float(ep[i, SIGNGLOVE_CHANNELS.index(c)])) for c in shuffled) for i in range(30)) + "\n")
    loaded = load_episode_csv(csv)
    assert loaded.shape == (30, 8) and np.allclose(loaded, ep, atol=1e-5)
    assert np.allclose(m.predict([loaded]).probabilities, want, atol=1e-5)
    csv.write_text("flex1,flex2\n1,2\n")
    with pytest.raises(DataError, match="missing columns"):
        load_episode_csv(csv)
