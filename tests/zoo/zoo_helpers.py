"""Zoo test helpers (a uniquely named module: conftest.py names clash across test folders)."""

from __future__ import annotations

import torch

# Reference parameter counts, ../shared/spec/families.md, table "Families" (C=8, H=64, K=24, F=32).
SPEC_PARAMS = {
    ("GRU", ()): 49_816,
    ("GRU", (("num_layers", 2),)): 74_776,
    ("LSTM", ()): 95_512,
    ("StackedGRU", ()): 50_584,
    ("StackedGRU", (("num_layers", 3),)): 75_544,
    ("CNNGRU", ()): 31_096,
    ("CNNStackedGRU", ()): 56_056,
    ("MSCGRU", ()): 46_840,
    ("MSCSGRU", ()): 71_800,
    ("MSCSGRU", (("num_classes", 34),)): 73_090,
    ("MS3DGRU", ()): 58_840,
    ("MS3DStackedGRU", ()): 167_032,
    ("MSCSGRU_ScaleAware", ()): 95_992,
    ("MSCSGRU_ScaleHard", ()): 95_992,
    ("MSCGRU_ScaleAware", ()): 46_648,
}


def randomize(module) -> None:
    """Non-default BN statistics and weights, so a load that drops a buffer would show."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif name.endswith("num_batches_tracked"):
                t.fill_(7)
