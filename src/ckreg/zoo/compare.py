"""Does another module compute what the zoo's does? (the export's generated model.py is checked with it)."""

from __future__ import annotations

from typing import Any

import torch

from ckreg.arch import ArchSpec


def logits_agree(other: torch.nn.Module, spec: ArchSpec, state: dict[str, Any], T: int, samples: int = 4,
                 rtol: float = 1e-5, atol: float = 1e-6) -> tuple[bool, float]:
    """Load `state` strictly into `other` and into `ckreg.zoo.build(spec)`; compare logits on seeded random
    input with ragged padding. Returns (agree, max |difference|)."""
    from ckreg.zoo import build

    ours = build(spec)
    for module in (other, ours):
        module.load_state_dict(state, strict=True)
        module.eval()
    g = torch.Generator().manual_seed(0)
    if spec.family == "WRN" and spec.conv_dim == 2:            # images [B, C, H, W], no mask
        x, mask = torch.randn(samples, int(spec.input_size), 16, 16, generator=g), None
    else:
        x = torch.randn(samples, T, int(spec.input_size), generator=g)
        mask = torch.zeros(samples, T, dtype=torch.uint8)
        for i in range(samples):
            mask[i, max(1, T - i * max(1, T // samples)):] = 1      # different padding per row
    with torch.inference_mode():
        a, b = other(x, mask), ours(x, mask)
    if a.shape != b.shape:
        return False, float("inf")
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol)), diff





def torch_version() -> str:
    return str(torch.__version__)
__all__ = ["logits_agree", "torch_version"]
