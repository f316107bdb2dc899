"""Factories for the verify/retrain tests: a tiny synthetic glove dataset and tiny models trained on it.

The dataset imitates SignGlove where it matters for scalers: raw flex values
near 800, angles near 0, ragged episodes padded with the raw value 1.0. That
makes the two scaler recipes (issue #3) very different: `upstream` counts the
padding rows, `train-split` does not, so a model trained under one recipe
loses most of its accuracy under the other. Classes differ by a per-class
offset on one flex channel, so a hidden-8 model learns them in a few hundred
full-batch steps (about a second on one core).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHANNELS = ["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]


def make_dataset(path: Path, k: int = 4, per_class: int = 30, T: int = 16, seed: int = 0) -> Path:
    """An .npz dataset (ckreg.data.load_npz format); returns its path."""
    rng = np.random.default_rng(seed)
    n = k * per_class
    y = np.repeat(np.arange(k), per_class)
    X = np.ones((n, T, 8), dtype=np.float32)            # padding rows: raw 1.0
    mask = np.ones((n, T), dtype=np.uint8)
    for i in range(n):
        L = int(rng.integers(T // 3, T + 1))
        flex = 800 + rng.normal(0, 8, size=(L, 5))
        flex[:, y[i] % 5] += 60                          # the class signal
        angles = rng.normal(0, 3, size=(L, 3)) + np.array([-20.0, 30.0, 5.0])
        X[i, :L] = np.concatenate([flex, angles], axis=1)
        mask[i, :L] = 0
    np.savez(path, X=X, y=y.astype(np.int64), mask=mask,
             ids=np.asarray([f"ep{i:04d}" for i in range(n)]),
             class_names=np.asarray([f"c{i}" for i in range(k)]),
             channel_names=np.asarray(CHANNELS))
    return path


def train_tiny(dataset, scaler, family: str = "GRU", hidden: int = 8, steps: int = 60, seed: int = 0):
    """A zoo module trained full-batch on `dataset` scaled by `scaler` (deterministic on CPU, one thread)."""
    import torch

    from ckreg.arch import ArchSpec
    from ckreg.zoo import build

    key = (dataset.data_hash, tuple(scaler.mean), tuple(scaler.scale), family, hidden, steps, seed)
    if key in _CACHE:          # test_verify and test_retrain train the same tiny model: once per session
        return _CACHE[key]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: threads only add overhead on a shared 2-core machine
    try:
        _CACHE[key] = _train(dataset, scaler, family, hidden, steps, seed, torch, ArchSpec, build)
    finally:
        torch.set_num_threads(threads)
    return _CACHE[key]


_CACHE: dict = {}


def _train(dataset, scaler, family, hidden, steps, seed, torch, ArchSpec, build):
    torch.manual_seed(seed)
    overrides = {"hidden_size": hidden, "num_classes": len(dataset.class_names), "input_size": 8}
    if family == "GRU":
        overrides["num_layers"] = 1
    spec = ArchSpec.for_family(family, **overrides)
    model = build(spec)
    X = torch.as_tensor(scaler.transform(dataset.X))
    fit_full_batch(model, X, torch.as_tensor(dataset.mask), torch.as_tensor(dataset.y), steps, lr=0.02)
    return model, spec


def fit_full_batch(model, X, M, y, steps: int, lr: float):
    """A few full-batch Adam steps on (already scaled) X: enough for tiny test models; leaves eval mode."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X, M), y).backward()
        opt.step()
    model.eval()
    return model


def save_state_dict(model, path: Path) -> Path:
    """A plain `torch.save(state_dict)` checkpoint (what many projects write)."""
    import torch

    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    return path


def accuracy(model, dataset, scaler) -> float:
    from ckreg.zoo import predict

    logits = predict(model, scaler.transform(dataset.X), dataset.mask)
    return float((logits.argmax(1) == dataset.y).mean())


def good_and_poor_pair(data_path: Path, out: Path) -> dict[str, Path]:
    """A good and a poor tiny GRU with their train-split scaler (what a trainer would write), plus the
    `upstream` refit scaler: stand-ins for trained runs in retrain tests."""
    from ckreg.data import load_dataset
    from ckreg.scaler import fit_scaler, save_json

    ds = load_dataset(data_path)
    sc = fit_scaler(ds, "train-split")
    good, _ = train_tiny(ds, sc, steps=60)
    poor, _ = train_tiny(ds, sc, steps=3, seed=1)
    return {"good": save_state_dict(good, out / "good.pt"), "poor": save_state_dict(poor, out / "poor.pt"),
            "scaler": save_json(sc, out / "scaler.json"), "upstream": save_json(fit_scaler(ds, "upstream"), out / "up.json")}

