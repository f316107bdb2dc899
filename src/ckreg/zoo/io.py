"""Torch-side file I/O for the registry's export and `ckreg.load` (issue #5).

Lives in the zoo because `import torch` is allowed only in zoo/, train/ and
verify.py (house style, "Imports point inward"); the registry calls these
functions and never touches torch itself.

Reading goes through the zoo's safe loader (`torch.load(weights_only=True)`
or safetensors, containers and prefixes unwrapped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ckreg.errors import VerificationError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint file (Lightning .ckpt, plain .pt/.pth, safetensors).

    Safe loaders only (`torch.load(weights_only=True)` or safetensors); the
    unwrapping is the zoo's (`ckreg.zoo.loading.load_state_dict`).
    """
    from ckreg.zoo.loading import load_state_dict

    return load_state_dict(path)[0]


def _plain(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or strided storage: give every tensor its own contiguous copy
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(state_dict.items())}


def write_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write a safetensors file with a `__metadata__` string map (spec and hashes)."""
    from safetensors.torch import save_file

    save_file(_plain(state_dict), str(path), metadata={str(k): str(v) for k, v in metadata.items()})


def write_lightning_ckpt(state_dict: Mapping[str, torch.Tensor], spec: Any, path: str | Path,
                         extra: Mapping[str, Any] | None = None) -> None:
    """A Lightning-style `.ckpt`: `state_dict` under the `model.` prefix and `hyper_parameters` from the spec.

    Only plain containers and tensors, so `torch.load(weights_only=True)`
    reads it back and the inspector sees the same layout as the archive's.
    """
    spec_dict = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in _plain(state_dict).items()},
        "hyper_parameters": {k: v for k, v in spec_dict.items() if v is not None},
        "hparams_name": "kwargs",
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.1.0",
        "ckreg": dict(extra or {}),
    }
    torch.save(ckpt, str(path))


def load_module(spec: Any, source: str | Path | Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """`ckreg.zoo.build(spec)` with the weights loaded strictly, in eval mode."""
    from ckreg.zoo import build

    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    module = build(spec)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VerificationError(f"the weights do not load strictly into {spec.family}: {exc}".splitlines()[0],
                                path=str(source) if isinstance(source, (str, Path)) else None) from exc
    module.eval()
    return module
