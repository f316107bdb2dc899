"""Factories for the deployment tests: a tiny learnable .npz dataset, tiny zoo models trained a few
steps on it, registered with their scaler in a tmp registry."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

T, C, K = 12, 8, 3


def make_npz(path: Path, n: int = 36, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    t = np.arange(T)[None, :, None]
    X = (50 * y[:, None, None] + 20 * np.sin((y[:, None, None] + 1) * t / 3.0)
         + rng.normal(0, 3, size=(n, T, C)) + 100).astype(np.float32)
    mask = np.zeros((n, T), np.uint8)
    for i in range(n):                       # ragged: a third of the episodes end early
        if i % 3 == 1:
            cut = 5 + i % 6
            mask[i, cut:] = 1
            X[i, cut:] = 1.0                 # padding rows hold the raw value 1.0
    np.savez(path, X=X, y=y.astype(np.int64), mask=mask, class_names=np.asarray(["a", "b", "c"]),
             channel_names=np.asarray(["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]))
    return path


def fit_tiny(family: str, data: Path, out: Path, steps: int | None = None, seed: int = 0):
    """A tiny zoo model, fitted for a few full-batch steps where that is cheap (GRU/LSTM).

    The scale-aware cell is a Python loop; on a busy 2-core machine fitting it
    costs minutes, and the deployment tests compare the artifact with the float
    model, not the float model with the labels, so those stay as initialised.
    """
    if steps is None:
        steps = 25 if family in ("GRU", "LSTM") else 0
    import torch

    from ckreg import zoo
    from ckreg.arch import ArchSpec
    from ckreg.data import load_dataset
    from ckreg.scaler import fit_scaler
    from verify_helpers import fit_full_batch

    torch.set_num_threads(1)
    ds = load_dataset(data)
    scaler = fit_scaler(ds)
    torch.manual_seed(seed)
    extra = {} if family in ("GRU", "LSTM") else {"cnn_filters": 4}
    model = zoo.build(ArchSpec.for_family(family, hidden_size=8, num_classes=K, input_size=C, **extra))
    X = torch.from_numpy(scaler.transform(ds.X.reshape(-1, C)).reshape(ds.X.shape).astype("float32"))
    fit_full_batch(model, X, torch.from_numpy(ds.mask), torch.from_numpy(ds.y), steps, lr=0.03)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    scaler.save_json(out / "scaler.json", overwrite=True)
    return out / "model.pt", out / "scaler.json"


@pytest.fixture(scope="session")
def npz(tmp_path_factory) -> Path:
    return make_npz(tmp_path_factory.mktemp("data") / "d.npz")


@pytest.fixture(scope="session")
def registered(tmp_path_factory, npz):
    """registered(family) -> (Registry root, ref) of a tiny fitted model with its scaler (cached per family)."""
    from ckreg.registry import Registry

    root = tmp_path_factory.mktemp("reg")
    done: dict[str, str] = {}

    def make(family: str):
        if family not in done:
            ck, sc = fit_tiny(family, npz, root / "src" / family)
            with Registry(root / "registry") as reg:
                v = reg.add(ck, sc, name=family.replace("_", "-"), family=family)
            done[family] = v.ref
        return root / "registry", done[family]

    return make


@pytest.fixture
def fit():
    """fit(family, data, out) -> (checkpoint, scaler) of a tiny model fitted on `data` (see fit_tiny)."""
    return fit_tiny
