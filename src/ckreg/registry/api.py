"""`ckreg.load("MS3DGRU@best")`: a registered pair, ready for inference (issue #5).

The model is built with `ckreg.zoo.build(spec)` from the *registered* spec
(which settles what the weights cannot show, e.g. ScaleAware vs ScaleHard),
loaded strictly from the re-hashed blob, in eval mode. `predict` applies the
preprocessing the model was trained with: cut/pad to T = 87 rows, padding
rows raw 1.0 and mask 1, scale every row with the pair's scaler.

Torch is reached only through `ckreg.zoo` (house style: `import torch` only in
zoo/, train/, verify.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ckreg.arch import ArchSpec
from ckreg.errors import DataError, ScalerError
from ckreg.registry.export import preprocessing
from ckreg.registry.model import Version
from ckreg.registry.store import Registry


@dataclass
class Prediction:
    """Predicted class indices `[N]` and probabilities `[N, K]`; unpacks as `(indices, probabilities)`."""

    indices: Any
    probabilities: Any
    labels: list[str] | None = None

    def __iter__(self):
        return iter((self.indices, self.probabilities))

    def __len__(self) -> int:
        return len(self.indices)


def _is_table(obj: Any) -> bool:
    """A table with named columns: a DataFrame-like (`columns` + `to_numpy`), a dict of columns,
    or a numpy structured array."""
    import numpy as np

    if isinstance(obj, dict):
        return True
    if isinstance(obj, np.ndarray):
        return obj.dtype.names is not None
    return hasattr(obj, "columns") and hasattr(obj, "to_numpy")


def _table_columns(obj: Any) -> tuple[list[str], Any]:
    import numpy as np

    if isinstance(obj, dict):
        return [str(k) for k in obj], lambda name: np.asarray(obj[name], dtype=np.float32)
    if isinstance(obj, np.ndarray):
        return list(obj.dtype.names), lambda name: np.asarray(obj[name], dtype=np.float32)
    return [str(c) for c in obj.columns], lambda name: np.asarray(obj[name].to_numpy(), dtype=np.float32)


def order_channels(episodes: Any, channel_names: list[str] | None) -> Any:
    """Tables with named columns -> `[t, C]` arrays in the scaler's channel order; arrays as they are.

    A model scaled channel by channel silently predicts garbage when columns come
    in another order, so a table is reordered by its column names, and refused
    (ScalerError) when a channel is missing, a column is unknown, or the scaler
    records no channel names to check against.
    """
    import numpy as np

    one = _is_table(episodes)
    items = [episodes] if one else (None if isinstance(episodes, np.ndarray) else list(episodes))
    if items is None or not any(_is_table(t) for t in items):
        return episodes
    if not channel_names:
        raise ScalerError("the scaler records no channel names, so a table's columns cannot be checked",
                          hint="pass plain [t, C] arrays in the training order")
    out = []
    for i, table in enumerate(items):
        if not _is_table(table):
            out.append(table)
            continue
        cols, get = _table_columns(table)
        missing = [c for c in channel_names if c not in cols]
        extra = [c for c in cols if c not in channel_names]
        if missing or extra:
            raise ScalerError(f"episode {i}: columns {cols} do not match the scaler's channels {channel_names}"
                              + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""),
                              hint="rename or drop the columns; the order does not matter")
        out.append(np.stack([get(c) for c in channel_names], axis=1))
    return out[0][None] if one else out


def pad_episodes(episodes: Any, T: int, pad_value: float, channels: int, mask: Any = None):
    """Raw episodes -> (`X` float32 `[N, T, C]`, `mask` uint8 `[N, T]`, 1 = padding).

    Accepts a list of `[t, C]` arrays (any t: the first T rows are kept,
    shorter ones are padded with raw `pad_value` rows) or one `[N, t, C]`
    array (rows all valid unless `mask` says otherwise). Same rule as the
    SignGlove loader (`ckreg.data.load_signglove`, ../shared/spec/families.md),
    which pads while parsing CSV and has no helper for in-memory arrays.
    """
    import numpy as np

    if isinstance(episodes, np.ndarray) and episodes.ndim == 3:
        items = list(episodes)
        given_mask = None if mask is None else np.asarray(mask)
        if given_mask is not None and given_mask.shape != episodes.shape[:2]:
            raise DataError(f"mask shape {given_mask.shape} does not match episodes {episodes.shape[:2]}")
    else:
        if isinstance(episodes, np.ndarray) and episodes.ndim == 2:
            items = [episodes]
        else:
            items = list(episodes)
        given_mask = None
        if mask is not None:
            raise DataError("a mask can only accompany one [N, T, C] array")
    arrays = []
    for i, ep in enumerate(items):
        a = np.asarray(ep, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != channels:
            raise DataError(f"episode {i} has shape {tuple(a.shape)}; expected [t, {channels}]")
        if given_mask is not None:
            a = a[given_mask[i] == 0]
        arrays.append(a)
    n = len(arrays)
    X = np.full((n, T, channels), pad_value, dtype=np.float32)
    m = np.ones((n, T), dtype=np.uint8)
    for i, a in enumerate(arrays):
        k = min(len(a), T)
        X[i, :k] = a[:k]
        m[i, :k] = 0
    return X, m


@dataclass
class LoadedModel:
    """A registered model with its scaler; `predict(episodes)` takes raw sensor arrays."""

    model: Any                      # torch.nn.Module, eval mode
    scaler: Any                     # ckreg.scaler.Scaler or None
    spec: ArchSpec
    version: Version
    class_names: list[str] | None = None
    T: int = 87
    pad_value: float = 1.0
    _meta: dict = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        return self.version.ref

    def prepare(self, episodes: Any, mask: Any = None):
        """(scaled X `[N, T, C]`, mask `[N, T]`) exactly as the model was trained on."""
        import numpy as np

        if self.scaler is None:
            raise ScalerError(f"{self.version.ref} was registered without a scaler, so raw episodes cannot be scaled",
                              hint="register the pair with its scaler (`ckreg registry add CKPT --scaler S`)")
        episodes = order_channels(episodes, list(getattr(self.scaler, "channel_names", None) or []))
        n_features = getattr(self.scaler, "n_features", None) or self.spec.input_size
        if n_features != self.spec.input_size:
            raise ScalerError(f"the scaler has {n_features} features, the model takes {self.spec.input_size}")
        X, m = pad_episodes(episodes, self.T, self.pad_value, self.spec.input_size, mask=mask)
        n, t, c = X.shape
        flat = np.asarray(self.scaler.transform(X.reshape(n * t, c)), dtype=np.float32)
        return flat.reshape(n, t, c), m

    def predict(self, episodes: Any, mask: Any = None, batch_size: int = 256) -> Prediction:
        """Predicted class indices and probabilities for raw episodes."""
        import numpy as np

        from ckreg.zoo import predict

        X, m = self.prepare(episodes, mask=mask)
        if len(X) == 0:
            probs = np.zeros((0, self.spec.num_classes), dtype=np.float32)
        else:
            logits = np.asarray(predict(self.model, X, m, batch_size=batch_size), dtype=np.float64)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        idx = probs.argmax(axis=1).astype(np.int64) if len(probs) else np.zeros((0,), dtype=np.int64)
        labels = [self.class_names[i] for i in idx] if self.class_names else None
        return Prediction(indices=idx, probabilities=probs, labels=labels)


def load(ref: str, registry: Any = None) -> LoadedModel:
    """Resolve `ref` in the registry (a `Registry`, a folder, or the default: `$CKREG_REGISTRY_DB`/`_STORE`, `$CKREG_REGISTRY`, `./registry`) and load the pair."""
    from ckreg.zoo.io import load_module

    reg = registry if isinstance(registry, Registry) else Registry(registry)
    version = reg.resolve(ref)
    module = load_module(version.spec, reg.blob_path(version.sha256))
    scaler = None
    if version.scaler is not None:
        from ckreg.scaler import load_scaler

        with warnings.catch_warnings():   # version skew was recorded at registration (Version.scaler.warnings)
            warnings.simplefilter("ignore")
            scaler = load_scaler(reg.blob_path(version.scaler.sha256))
    pre = preprocessing(version)
    return LoadedModel(model=module, scaler=scaler, spec=version.spec, version=version,
                       class_names=version.class_names, T=pre["T"], pad_value=pre["pad_value"])


__all__ = ["LoadedModel", "Prediction", "load", "pad_episodes"]
