"""`ckreg demo`: a small archive with the seed archive's problems, and its manifest (issue #4).

The README's main-job command on a fresh machine: models come from the zoo
(`ckreg.zoo.build`), weights are drawn from a fixed-seed numpy generator (the
same bytes on every machine and torch version), and files are written as
Lightning-like checkpoints by `ckreg.zoo.io.write_lightning_ckpt` (torch stays
inside zoo/). What it reproduces, and what the audit should say:

| file | problem | findings |
|---|---|---|
| `checkpoints/GRU_best.ckpt` | a 2-layer GRU where the manifest declares 1 layer | layers-mismatch, param-count-mismatch, model-missing (GRU) |
| `checkpoints/GRU_best-v1.ckpt` | same weights, different metadata (bytes differ) | duplicate-weights |
| `checkpoints/scaler.pkl` | one scaler for both GRU files | scaler-ambiguous |
| `stacked/ms3dstackedgru_best.ckpt` | tower2 kernel 5x5x5 where 3x5x3 is declared; no scaler | shape-drift, scaler-missing |
| (none) | MSCSGRU declared, never trained | model-missing (MSCSGRU) |
| `best_model/ms3dgru_best.ckpt` + `scaler.pkl` | nothing: the one good pair | - |
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ckreg import fsutil, yamlio
from ckreg.arch import ArchSpec
from ckreg.errors import UsageError

SEED = 20240601
MANIFEST_NAME = "manifest.yaml"
CHANNELS = ["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]
DECLARED_TOWER2 = [3, 5, 3]


@dataclass(frozen=True)
class Demo:
    directory: Path     # what the user named (or the temp folder)
    root: Path          # the archive to audit
    manifest: Path      # the demo manifest, next to the archive


def _state_dict(spec: ArchSpec, seed: int) -> dict:
    """A zoo module's state_dict with fixed-seed weights (buffers keep their initial values)."""
    import numpy as np

    from ckreg.inspect.layouts import is_buffer_name
    from ckreg.zoo import build

    rng = np.random.default_rng(seed)
    state = build(spec).state_dict()
    out = {}
    for name, tensor in state.items():
        if is_buffer_name(name) or not tensor.is_floating_point():
            out[name] = tensor.clone()
            continue
        fan_in = int(np.prod(tensor.shape[1:])) if tensor.dim() > 1 else int(tensor.shape[0])
        values = rng.normal(0.0, 1.0 / max(1, fan_in) ** 0.5, size=tuple(tensor.shape)).astype("float32")
        out[name] = tensor.new_tensor(values)
    return out


def _scaler(seed: int):
    import numpy as np

    from ckreg.scaler import Scaler

    rng = np.random.default_rng(seed)
    mean = rng.normal(500.0, 200.0, size=len(CHANNELS)).round(3)
    scale = rng.uniform(5.0, 50.0, size=len(CHANNELS)).round(3)
    return Scaler(mean=mean.tolist(), scale=scale.tolist(), var=(scale ** 2).tolist(), n_features=len(CHANNELS),
                  n_samples_seen=1444 * 87, channel_names=CHANNELS, recipe="upstream")


def _manifest() -> dict:
    return {
        "version": 1,
        "name": "ckreg-demo",
        "description": "The demo archive's intent (ckreg demo): one model per family, each with its own scaler.",
        "defaults": {"training": {"epochs": 100, "lr": 0.001, "batch_size": 64, "seed": 0},
                     "tags": ["demo"]},
        "models": [
            {"name": "GRU", "family": "GRU",
             "hyperparameters": {"num_layers": 1, "hidden_size": 64, "proj_size": 128},
             "params": 49816, "path": "checkpoints/GRU_best*.ckpt", "scaler": "checkpoints/scaler.pkl"},
            {"name": "MS3DGRU", "family": "MS3DGRU", "hyperparameters": {"num_layers": 1, "hidden_size": 64},
             "params": 58840, "path": "best_model/ms3dgru_best.ckpt", "scaler": "best_model/scaler.pkl",
             "metrics": {"accuracy": 0.9913}},
            {"name": "MS3DStackedGRU", "family": "MS3DStackedGRU",
             "hyperparameters": {"num_layers": 2, "tower_kernels": [[3, 3, 3], DECLARED_TOWER2, [7, 7, 7]]},
             "path": "stacked/ms3dstackedgru_best.ckpt"},
            {"name": "MSCSGRU", "family": "MSCSGRU", "hyperparameters": {"num_layers": 2},
             "params": 71800, "path": "checkpoints/MSCSGRU_best.ckpt", "scaler": "checkpoints/scaler.pkl",
             "metrics": {"accuracy": 0.993}},
        ],
    }


def make_demo(directory: str | Path | None = None) -> Demo:
    """Write the demo archive and manifest into `directory` (default: a new temp folder).

    Refuses a folder that exists and is not empty (never overwrites a user's files).
    Needs torch (the [train] extra): the models come from the zoo.
    """
    try:
        from ckreg.zoo.io import write_lightning_ckpt  # torch lives behind the zoo
    except ImportError as exc:
        raise UsageError(f"ckreg demo builds its models with the zoo and needs torch ({exc})",
                         hint="pip install 'ckreg[train]'") from None
    if directory is None:
        target = Path(tempfile.mkdtemp(prefix="ckreg-demo-"))
    else:
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise UsageError(f"{target} exists and is not a folder")
        if target.is_dir() and any(target.iterdir()):
            raise UsageError(f"{target} is not empty; give a new or empty folder (the demo never overwrites files)")
        target.mkdir(parents=True, exist_ok=True)

    root = target / "archive"
    for sub in ("best_model", "checkpoints", "stacked"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    # the one good pair
    ms3d = ArchSpec.for_family("MS3DGRU")
    write_lightning_ckpt(_state_dict(ms3d, SEED + 1), ms3d, root / "best_model" / "ms3dgru_best.ckpt",
                         extra={"epoch": 66, "demo": "good pair"})
    _scaler(SEED + 10).save_pickle(root / "best_model" / "scaler.pkl")

    # mislabeled: a two-layer GRU saved as GRU_best.ckpt; and its duplicate with other metadata
    gru2 = ArchSpec.for_family("GRU", num_layers=2)
    weights = _state_dict(gru2, SEED + 2)
    write_lightning_ckpt(weights, gru2, root / "checkpoints" / "GRU_best.ckpt", extra={"epoch": 57})
    write_lightning_ckpt(weights, gru2, root / "checkpoints" / "GRU_best-v1.ckpt", extra={"epoch": 58})
    _scaler(SEED + 11).save_pickle(root / "checkpoints" / "scaler.pkl")

    # drifted shapes (tower2 is 5x5x5 in the weights; the manifest says 3x5x3) and no scaler
    stacked = ArchSpec.for_family("MS3DStackedGRU")
    write_lightning_ckpt(_state_dict(stacked, SEED + 3), stacked, root / "stacked" / "ms3dstackedgru_best.ckpt",
                         extra={"epoch": 40})

    manifest = target / MANIFEST_NAME
    header = ("# ckreg demo manifest: what the demo archive should hold.\n"
              "# Audit: ckreg audit archive -m manifest.yaml\n")
    fsutil.write_text(manifest, header + yamlio.dump(_manifest()))
    return Demo(directory=target, root=root, manifest=manifest)


__all__ = ["Demo", "make_demo", "SEED"]
