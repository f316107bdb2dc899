"""Pieces `train` and `evaluate` share: input checks, hashing, batched prediction, scoring.

The checks here run BEFORE any training or evaluation starts (issue #3, "Bad
input"): wrong channel count for a family, a scaler whose width differs from
the model's input, labels outside the model's classes, an empty dataset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ckreg.arch import ArchSpec
from ckreg.errors import DataError, ScalerError, SpecError
from ckreg.families.builtin import MS3D_CHANNELS, MS3D_FAMILIES

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from ckreg.data.model import Dataset

# MS3D families reshape [B, T, 8] to [B, 1, T, 4, 2] (spec, "Forward details"): MS3D_FAMILIES, MS3D_CHANNELS.


def as_dataset(data: "str | Path | Dataset") -> "Dataset":
    """A Dataset from a path (SignGlove tree or .npz) or passed through; refuses an empty one."""
    from ckreg.data import Dataset, load_dataset

    if isinstance(data, Dataset):
        ds = data
    else:
        path = Path(data)
        if not path.exists():
            raise DataError("no such file or directory", path=str(path),
                            hint="give a SignGlove folder ({class}/{session}/episode_*.csv) or an .npz file")
        ds = load_dataset(path)
    if len(ds) == 0:
        reasons = "; ".join(f"{p}: {r}" for p, r in list(ds.problems)[:3])
        raise DataError("no episodes found", path=str(getattr(ds, "source", "") or data),
                        hint=("every episode was skipped: " + reasons) if reasons
                        else "expected {class}/{session}/episode_*.csv or an .npz with X [N, T, C]")
    return ds


def check_channels(spec: ArchSpec, n_channels: int, source: str = "") -> None:
    if spec.family in MS3D_FAMILIES and n_channels != MS3D_CHANNELS:
        raise SpecError(
            f"{spec.family} needs {MS3D_CHANNELS} input channels (it reshapes each step to 4x2), "
            f"but the data has {n_channels}",
            path=source or None, hint="use a 1D family (e.g. MSCSGRU) or data with 8 channels")
    if spec.input_size != n_channels:
        raise SpecError(f"the model takes {spec.input_size} input channels but the data has {n_channels}",
                        path=source or None, hint="pass matching data, or --set input_size=N when training")


def resolve_spec(family: str, overrides: dict[str, Any] | None, dataset: "Dataset") -> ArchSpec:
    """The family's reference spec, with the data's width and class count unless the user set them.

    Raises SpecError for an unknown family or `--set` key (via ArchSpec.for_family),
    and for a channel or class count the data contradicts.
    """
    overrides = dict(overrides or {})
    ArchSpec.for_family(family, **overrides)  # unknown family / key -> SpecError naming it
    source = getattr(dataset, "source", "") or ""
    c = dataset.n_channels
    k = dataset.num_classes
    if "input_size" in overrides and int(overrides["input_size"]) != c:
        raise SpecError(f"--set input_size={overrides['input_size']} but the data has {c} channels",
                        path=source or None, hint="drop the override; the trainer takes the width from the data")
    if "num_classes" in overrides and int(overrides["num_classes"]) < k:
        raise SpecError(f"--set num_classes={overrides['num_classes']} but the data has {k} classes",
                        path=source or None)
    overrides.setdefault("input_size", c)
    overrides.setdefault("num_classes", k)
    if family in MS3D_FAMILIES and c != MS3D_CHANNELS:
        check_channels(ArchSpec.for_family(family), c, source)
    spec = ArchSpec.for_family(family, **overrides)
    if spec.family == "WRN" and spec.conv_dim not in (None, 1):
        raise SpecError(f"the trainer feeds raw [B, T, C] signals; WRN with conv_dim={spec.conv_dim} "
                        "expects images (Gramian Angular Fields)", hint="use --set conv_dim=1")
    check_channels(spec, c, source)
    return spec


def check_labels(spec: ArchSpec, dataset: "Dataset") -> None:
    import numpy as np

    if len(dataset) and int(np.max(dataset.y)) >= spec.num_classes:
        raise DataError(f"the data has label {int(np.max(dataset.y))} but the model has only "
                        f"{spec.num_classes} classes", path=getattr(dataset, "source", "") or None)


def scaler_width(scaler: Any) -> int | None:
    n = getattr(scaler, "n_features", None)
    if n is None:
        n = getattr(scaler, "n_features_in_", None)
    if n is None and getattr(scaler, "mean", None) is not None:
        n = len(scaler.mean)
    return None if n is None else int(n)


def check_scaler(spec: ArchSpec, scaler: Any, source: str = "") -> None:
    n = scaler_width(scaler)
    if n is not None and n != spec.input_size:
        raise ScalerError(f"the scaler has {n} features but the model takes {spec.input_size} inputs",
                          path=source or None, hint="pass the scaler.json saved next to this checkpoint")


def scale(scaler: Any, X: "np.ndarray") -> "np.ndarray":
    """Apply a per-channel scaler to [N, T, C] raw values (padding rows included, as upstream did)."""
    import numpy as np

    n, t, c = X.shape
    out = scaler.transform(X.reshape(n * t, c) if X.ndim == 3 else X)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(n, t, c))


def weights_sha256(state_dict: "dict[str, torch.Tensor]") -> str:
    """The inspector's `weights_sha256` of an in-memory state_dict.

    Same definition as `ckreg.inspect.weights_sha256` (names in sorted order, each
    as compact JSON `[name, dtype, shape]` + newline, then the little-endian
    tensor bytes), so a trained model's recorded hash equals what `ckreg inspect
    --hash`, the audit and the registry compute from either output file.
    """
    import torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        head = json.dumps([key, str(t.dtype).removeprefix("torch."), list(t.shape)], separators=(",", ":"))
        h.update(head.encode() + b"\n")
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            a = t.numpy()
            data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        h.update(data)
    return h.hexdigest()


# Images [B, C, S, S] go to the 2D convolutions channels-last (NHWC): oneDNN's convolutions run
# faster on it (measured on one core, WRN-16-1 on 64 x 64 GASF: a training step 0.69 s vs 0.93 s,
# inference 5 ms vs 14 ms per image; bench/bench_kd.py --profile). In eval mode a batch of 32
# images beat 256 (the activations of 256 images at 64 x 64 overflow the caches).
IMAGE_EVAL_BATCH = 32


def to_tensors(X: "np.ndarray", mask: "np.ndarray"):
    import torch

    x = torch.from_numpy(X if X.flags.writeable else X.copy())   # a batch of a cached (read-only) image set
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    # uint8 as `ckreg.zoo.predict` passes it (1 = padding)
    return x, torch.from_numpy(mask.astype("uint8", copy=False))


def predict_logits(model: "torch.nn.Module", X: "np.ndarray", mask: "np.ndarray", batch_size: int = 256):
    """Logits for every episode, eval mode, no autograd; returns a float32 torch tensor [N, K]."""
    import torch

    if getattr(X, "ndim", 0) == 4:
        batch_size = min(int(batch_size), IMAGE_EVAL_BATCH)
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                xb, mb = to_tensors(X[start:start + batch_size], mask[start:start + batch_size])
                outs.append(model(xb, mb).float())
    finally:
        model.train(was_training)
    if not outs:
        return torch.zeros((0, 0))
    return torch.cat(outs)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], k: int) -> list[list[int]]:
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred):
        cm[int(t)][int(p)] += 1
    return cm


def per_class(cm: list[list[int]], class_names: Sequence[str]) -> tuple[dict[str, float | None], dict[str, int]]:
    acc: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for i, name in enumerate(class_names):
        row = cm[i] if i < len(cm) else []
        n = sum(row)
        support[name] = n
        acc[name] = (row[i] / n) if n else None
    return acc, support


def count_params(model: "torch.nn.Module") -> tuple[int, int]:
    """(parameter elements, buffer elements), tied tensors once, as the spec's table counts them."""
    seen: set[int] = set()
    params = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            params += p.numel()
    buffers = sum(b.numel() for b in model.buffers())
    return int(params), int(buffers)


_ST_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def safetensors_bytes(state_dict: "dict[str, torch.Tensor]", metadata: dict[str, str]) -> bytes:
    """A safetensors file with a canonical layout: same tensors and metadata -> same bytes.

    `safetensors.torch.save` orders `__metadata__` by a per-process hash map, so
    two identical runs gave different file bytes; content-addressed storage
    (the registry) and "same seed -> same file" need canonical bytes. Header:
    JSON with sorted keys, tensors in sorted name order, padded with spaces to
    a multiple of 8 (the format's alignment). Loads with `safetensors.safe_open`.
    """
    import torch

    header: dict[str, Any] = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{name}: dtype {dtype} has no safetensors code")
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            a = t.numpy()
            data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)
