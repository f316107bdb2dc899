"""Factories for tiny checkpoints (built with torch in tmp dirs) and hostile files.

Hostile builders are named after the advisory they reproduce; they write raw
pickle opcodes or patch zip bytes, so the payloads are real (a test proves
`pickle.load` would run them) but only ever *read* symbolically here.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest


@pytest.fixture
def tiny_state_dict(torch_mod):
    """A small GRU-family-like state_dict: linear + GRU + BatchNorm buffers (incl. 0-d int64)."""
    torch = torch_mod
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    sd["RNN.0.weight"] = torch.randn(16, 8, generator=g)
    sd["RNN.0.bias"] = torch.randn(16, generator=g)
    sd["RNN.1.weight_ih_l0"] = torch.randn(24, 16, generator=g)
    sd["RNN.1.weight_hh_l0"] = torch.randn(24, 8, generator=g)
    sd["bn.running_mean"] = torch.zeros(4)
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["head.weight"] = torch.randn(3, 8, generator=g).double()
    sd["head.bias"] = torch.arange(3, dtype=torch.float16)
    return sd


@pytest.fixture
def save(tmp_path, torch_mod):
    """save(obj, name, **torch_save_kwargs) -> Path (torch.save into tmp_path)."""

    def _save(obj, name="ckpt.pt", **kw):
        path = tmp_path / name
        torch_mod.save(obj, path, **kw)
        return path

    return _save


@pytest.fixture
def write(tmp_path):
    """write(name, data: bytes) -> Path."""

    def _write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return _write


def lightning_like(state_dict, torch):
    """A dict shaped like a Lightning 2.x checkpoint (what `Trainer.save_checkpoint` writes)."""
    import numpy as np

    return {
        "epoch": 12,
        "global_step": 3400,
        "pytorch-lightning_version": "2.2.2",
        "state_dict": OrderedDict(("model." + k, v) for k, v in state_dict.items()),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 13}}}},
        "callbacks": {
            "EarlyStopping{'monitor': 'val/loss', 'mode': 'min'}": {
                "wait_count": 2, "stopped_epoch": 0, "best_score": torch.tensor(0.125), "patience": 15},
            "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min', 'every_n_train_steps': 0}": {
                "monitor": "val/loss", "best_model_score": torch.tensor(0.125),
                "best_model_path": "/runs/best.ckpt", "kth_best_model_path": "", "best_k_models": {}},
        },
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}},
                              "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0]}]}],
        "lr_schedulers": [{"factor": 0.5, "best": 0.0666}],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "input_size": 8, "hidden_size": 64, "num_classes": 24, "dropout": 0.3, "cell": "GRU",
            "data_dir": Path("/data/signglove"),
            "lr": np.float64(0.001), "seed": np.int64(42), "class_weights": np.array([1.0, 2.0], dtype=np.float32),
            "kernel_sizes": (3, 5, 7), "labels": ["a", "b"], "nested": {"bidirectional": False, "proj": None},
        },
    }


@pytest.fixture
def lightning_ckpt(save, tiny_state_dict, torch_mod):
    return save(lightning_like(tiny_state_dict, torch_mod), "lightning.ckpt")
