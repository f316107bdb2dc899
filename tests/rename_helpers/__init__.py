"""Factories for the rename tests (issue #4, "Rename").

Two kinds of checkpoint:
- *fake* ones: a small JSON document standing for a checkpoint, read by
  `fake_inspector` into a real `Inspection` (content-based, like the real
  inspector), so planning, applying, undo and the kill -9 test run without
  torch and in milliseconds;
- *real* ones: tiny torch state_dicts with the spec's key layouts
  (`../shared/spec/families.md`), for the end-to-end tests through the
  real inspector and the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ckreg.inspect.model import Inspection

HERE = Path(__file__).resolve().parent

# Hyperparameters the fake checkpoints declare, by family (small but valid).
FAKE_HP = {
    "GRU": dict(input_size=8, hidden_size=64, num_layers=1, num_classes=24, cell="GRU", bidirectional=False, proj_size=128),
    "StackedGRU": dict(input_size=8, hidden_size=64, num_layers=2, num_classes=24, cell="GRU", bidirectional=False),
    "MSCSGRU": dict(input_size=8, hidden_size=64, num_layers=2, num_classes=24, cell="GRU", cnn_filters=32, conv_dim=1,
                    tower_kernels=[[3], [5], [7]]),
    "MS3DGRU": dict(input_size=8, hidden_size=64, num_layers=1, num_classes=24, cell="GRU", cnn_filters=32, conv_dim=3,
                    tower_kernels=[[3, 3, 3], [3, 5, 3], [7, 7, 7]]),
    "WRN": dict(input_size=8, num_classes=24, conv_dim=1, depth=16, widen_factor=1),
}


def write_fake(path: Path, family: str, weights: str, *, wrapper: str = "", **hp) -> Path:
    """A fake checkpoint: `weights` stands for the tensor bytes, `wrapper` changes the file bytes only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"fake-checkpoint": 1, "family": family, "hp": {**FAKE_HP.get(family, {}), **hp}, "weights": weights,
           "wrapper": wrapper}
    path.write_text(json.dumps(doc, sort_keys=True))
    return path


def fake_inspect(path: str | os.PathLike) -> Inspection:
    raw = Path(path).read_bytes()
    try:
        doc = json.loads(raw)
        assert doc.get("fake-checkpoint") == 1
    except Exception:  # noqa: BLE001 - mirrors the real inspector: never raises
        return Inspection(path=str(path), size=len(raw), error="not a checkpoint (fake reader)")
    fam = doc["family"]
    return Inspection(path=str(path), size=len(raw), family=fam, confidence=1.0 if fam not in ("unknown", "ambiguous") else 0.0,
                      ambiguous_between=["MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"] if fam == "ambiguous" else [],
                      hyperparameters=doc["hp"], sha256=hashlib.sha256(raw).hexdigest(),
                      weights_sha256=hashlib.sha256(doc["weights"].encode()).hexdigest(),
                      evidence=[f"fake: {fam}"])


def fake_inspector(paths, jobs=1):
    return [fake_inspect(p) for p in paths]


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file, ignoring ckreg's own journal folder."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".ckreg" or not p.is_file():
            continue
        out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------ real (torch) checkpoints


def state_dict(family: str, seed: int = 0, *, H: int = 16, F: int = 8, C: int = 8, K: int = 24, L: int | None = None,
               kernels=None):
    """A tiny state_dict with the spec's key names and shapes for `family` (families.md, table "Families")."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    m = nn.Module()

    def mlp_head():
        return nn.Sequential(nn.Linear(H, 2 * H), nn.ReLU(), nn.Dropout(), nn.Linear(2 * H, K))

    def rnn_head():
        head = nn.Module()
        head.output_layers = nn.Sequential(nn.Linear(H, 2 * H), nn.Dropout(), nn.Tanh(), nn.Linear(2 * H, K))
        return head

    if family == "GRU":
        m.RNN = nn.Sequential(nn.Linear(C, 2 * H), nn.GRU(2 * H, H, L or 1, batch_first=True))
        m.output_layers = rnn_head()
    elif family == "StackedGRU":
        m.RNN = nn.GRU(C, H, L or 2, batch_first=True)
        m.output_layers = rnn_head()
    elif family == "CNNGRU":
        m.cnn = nn.Sequential(nn.Conv1d(C, F, 3, padding=1), nn.BatchNorm1d(F))
        m.gru = nn.GRU(F, H, batch_first=True)
        m.output_layers = mlp_head()
    elif family == "MSCSGRU":
        for i, k in enumerate(kernels or (3, 5, 7), 1):
            setattr(m, f"tower{i}", nn.Sequential(nn.Conv1d(C, F, k, padding=k // 2), nn.BatchNorm1d(F)))
        m.cnn_post = nn.Sequential(nn.BatchNorm1d(3 * F))
        m.gru1 = nn.GRU(3 * F, H, batch_first=True)
        m.gru2 = nn.GRU(H, H, batch_first=True)
        m.output_layers = mlp_head()
    elif family == "MS3DGRU":
        for i, k in enumerate(kernels or ((3, 3, 3), (5, 5, 5), (7, 7, 7)), 1):
            setattr(m, f"tower{i}", nn.Sequential(nn.Conv3d(1, F, k, padding=tuple(x // 2 for x in k)), nn.BatchNorm3d(F)))
        m.cnn_post = nn.Sequential(nn.BatchNorm3d(3 * F))
        m.gru = nn.GRU(3 * F, H, batch_first=True)
        m.output_layers = mlp_head()
    else:
        raise ValueError(family)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.5, 0.5)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def save_real(path: Path, sd, *, lightning: bool = True, epoch: int = 0, prefix: str = "model.") -> Path:
    """torch.save a state_dict, bare or in a Lightning-like wrapper (different bytes, same weights)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if lightning:
        obj = {"state_dict": {prefix + k: v for k, v in sd.items()}, "epoch": epoch, "global_step": 10 * epoch,
               "pytorch-lightning_version": "2.1.0"}
    else:
        obj = sd
    torch.save(obj, path)
    return path
