"""The model zoo: every family of the spec as a torch module (issue #3, "Zoo").

`build(spec)` returns a module whose state_dict has exactly the keys and
shapes of `ckreg.inspect.layouts.expected_layout(spec)`, so an inspected file
loads into `build(spec_from_inspection(insp))` with `strict=True`.
`load_checkpoint(path)` does that (safe loaders only), `predict` runs it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["build", "load_checkpoint", "load_state_dict", "predict", "count_parameters",
           "DEFAULT_READOUT", "READOUTS"]


def __getattr__(name: str):
    """DEFAULT_READOUT / READOUTS without importing torch at `import ckreg.zoo` time."""
    if name in ("DEFAULT_READOUT", "READOUTS"):
        from ckreg.zoo import models

        return getattr(models, name)
    raise AttributeError(name)


def build(spec: ArchSpec, *, readout: str | None = None) -> "torch.nn.Module":
    """A freshly initialised module for `spec` (train mode, CPU, float32).

    `readout` overrides the family's readout ("last", "valid", "valid-halved",
    "mean"); the default is the spec's (docs/zoo.md, "Readout").
    Raises SpecError for specs the family cannot take (e.g. MS3D with C != 8).
    """
    from ckreg.zoo.models import model_class

    if not isinstance(spec, ArchSpec):
        raise SpecError(f"build() needs an ArchSpec, got {type(spec).__name__}",
                        hint="use ArchSpec.for_family(name, **overrides)")
    if not spec.builtin:
        return _build_declared(spec)
    for name in ("input_size", "num_classes", "hidden_size", "num_layers", "proj_size", "cnn_filters",
                 "depth", "widen_factor"):
        value = getattr(spec, name)
        if value is not None and int(value) < 1:
            raise SpecError(f"{spec.family}: {name} must be >= 1, got {value}")
    needed = {
        "GRU": ("hidden_size", "num_layers", "proj_size"), "LSTM": ("hidden_size", "num_layers", "proj_size"),
        "StackedGRU": ("hidden_size", "num_layers"), "StackedLSTM": ("hidden_size", "num_layers"),
        "WRN": ("depth", "widen_factor", "conv_dim"),
    }.get(spec.family, ("hidden_size", "num_layers", "cnn_filters", "tower_kernels"))
    missing = [n for n in needed if getattr(spec, n) is None]
    if missing:
        raise SpecError(f"{spec.family} needs {', '.join(missing)} to be built",
                        hint="start from ArchSpec.for_family(family, **overrides)")
    return model_class(spec.family)(spec, readout=readout)


def _build_declared(spec: ArchSpec) -> "torch.nn.Module":
    """A declared family's module: its record's `build` ("package.module:attr") called with its hyperparameters."""
    import importlib

    from torch import nn

    from ckreg.families import get

    rec = get(spec.family)
    where = rec.origin or rec.source
    if not rec.build:
        raise SpecError(f"family {spec.family} ({where}) declares no build:, so it can be inspected and audited "
                        "but not built", hint="add build: \"package.module:Class\" to its declaration")
    mod_name, _, attr = rec.build.partition(":")
    try:
        obj = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"family {spec.family} ({where}): build {rec.build!r} does not import: {exc}",
                        hint="install the package that provides it, or fix build:") from None
    missing = [k for k, v in (spec.hparams or {}).items() if v is None]
    if missing:
        raise SpecError(f"{spec.family} needs {', '.join(missing)} to be built")
    module = obj(**(spec.hparams or {}))
    if not isinstance(module, nn.Module):
        raise SpecError(f"family {spec.family}: build {rec.build!r} returned {type(module).__name__}, "
                        "not a torch.nn.Module", hint="point build: at an nn.Module class or a factory returning one")
    return module


def count_parameters(module: "torch.nn.Module") -> tuple[int, int]:
    """(parameter elements, buffer elements), counted the way the spec's reference figures are."""
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for b in module.buffers())
    return int(params), int(buffers)


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, metadata) from a checkpoint, with safe loaders only (re-exported from `ckreg.zoo.loading`)."""
    from ckreg.zoo.loading import load_state_dict as _load

    return _load(path)


def load_checkpoint(path: str | os.PathLike, *, spec: ArchSpec | None = None, family: str | None = None,
                    readout: str | None = None):
    """Load a checkpoint into the zoo: `(module, spec, inspection)`, strict, eval mode, CPU.

    The architecture comes from `spec` if given, else from a spec ckreg's
    trainer recorded in the file's metadata, else from the inspector
    (`ckreg.inspect.inspect_path` + `spec_from_inspection(insp, family=family)`),
    which reads the weights without unpickling; `family` resolves weights that
    fit several families (MSCSGRU_ScaleAware vs MSCSGRU_ScaleHard). The weights themselves are read with
    `torch.load(weights_only=True)` or safetensors. Raises ReadError for an
    unreadable file, SpecError when the architecture cannot be determined,
    VerificationError when the weights do not load strictly.
    """
    from ckreg.zoo.loading import load_checkpoint as _load

    return _load(path, spec=spec, family=family, readout=readout)


def predict(module: "torch.nn.Module", X_scaled, mask=None, batch_size: int = 256) -> "np.ndarray":
    """Logits [N, K] as float32 numpy for already-scaled `X_scaled` [N, T, C] and `mask` [N, T] (1 = padding).

    Runs in eval mode without gradients, in batches; the module's train/eval
    state is restored afterwards.
    """
    import numpy as np
    import torch

    X = torch.as_tensor(np.asarray(X_scaled, dtype=np.float32))
    M = None if mask is None else torch.as_tensor(np.asarray(mask)).to(torch.uint8)
    if X.dim() < 3:
        raise ValueError(f"X must be [N, T, C], got shape {list(X.shape)}")
    if M is not None and tuple(M.shape) != tuple(X.shape[:2]):
        raise ValueError(f"mask must be [N, T] = {list(X.shape[:2])}, got {list(M.shape)}")
    was_training = module.training
    module.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, X.shape[0], max(1, int(batch_size))):
                xb = X[start:start + batch_size]
                mb = None if M is None else M[start:start + batch_size]
                out.append(module(xb, mb).float().cpu().numpy())
    finally:
        module.train(was_training)
    if not out:
        return np.zeros((0, getattr(module.spec, "num_classes", 0)), dtype=np.float32)
    return np.concatenate(out, axis=0)
