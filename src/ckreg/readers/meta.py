"""Checkpoint metadata as plain JSON values (issue #2, "Metadata").

Lightning checkpoints carry `epoch`, `global_step`, `pytorch-lightning_version`,
`hyper_parameters` (often with paths, numpy scalars or OmegaConf containers),
`hparams_name`, callback states (`monitor`, `best_model_score` as a 0-d
tensor) and optimizer state. Everything is converted from inert records; a
0-d tensor becomes a number only when its bytes are a handful and cheap to
read (`scalar_reader`), else null.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable

from ckreg.readers.pickle_vm import (Call, ExtRef, Global, NumpyArray, NumpyDtype, NumpyScalar, PersistentRef,
                                     StorageRec, TensorRef, Unhashable)

ScalarReader = Callable[[TensorRef], Any]

_OMEGA_CONTAINERS = {"omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig"}
_OMEGA_NODE_PREFIX = "omegaconf.nodes."
_ATTR_DICTS = {
    "lightning_fabric.utilities.data.AttributeDict", "lightning.fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict", "lightning.pytorch.utilities.parsing.AttributeDict",
}


def _num(x: float) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # "nan", "inf": strict JSON has no such numbers
    return x


def decode_scalar(raw: bytes, dtype: str) -> Any:
    """One element of a torch dtype from little-endian bytes (None when unknown)."""
    codes = {"float32": "<f", "float64": "<d", "float16": "<e", "int64": "<q", "int32": "<i", "int16": "<h",
             "int8": "<b", "uint8": "<B", "bool": "<?", "uint16": "<H", "uint32": "<I", "uint64": "<Q"}
    if dtype == "bfloat16" and len(raw) == 2:
        return _num(struct.unpack("<f", b"\x00\x00" + raw)[0])
    code = codes.get(dtype)
    if code is None or len(raw) != struct.calcsize(code):
        return None
    return _num(struct.unpack(code, raw)[0])


def to_json(value: Any, scalar_reader: ScalarReader | None = None, _depth: int = 0, _seen: set | None = None) -> Any:
    """Plain JSON values from inert records (never raises; deep or cyclic parts become markers)."""
    seen = set() if _seen is None else _seen
    if _depth > 40:
        return "<nested too deeply>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, complex):
        return {"real": _num(value.real), "imag": _num(value.imag)}
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii") if len(value) <= 256 and value.isascii() else f"<{len(value)} bytes>"
    if isinstance(value, Unhashable):
        return to_json(value.value, scalar_reader, _depth + 1, seen)
    ident = id(value)
    if isinstance(value, (dict, list, tuple, set, frozenset, Call)):
        if ident in seen:
            return "<cycle>"
        seen = seen | {ident}
    rec = lambda v: to_json(v, scalar_reader, _depth + 1, seen)  # noqa: E731
    if isinstance(value, dict):
        return {_key(k): rec(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rec(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [rec(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, TensorRef):
        if value.shape == () and scalar_reader is not None:
            got = scalar_reader(value)
            if got is not None:
                return got
        return {"tensor": {"dtype": value.dtype, "shape": list(value.shape)}}
    if isinstance(value, NumpyScalar):
        v = value.value
        return _num(v) if v is not None else None
    if isinstance(value, NumpyArray):
        out = value.tolist(limit=1 << 16)
        if out is not None:
            return rec(out)
        return {"ndarray": {"dtype": value.dtype.name if isinstance(value.dtype, NumpyDtype) else None,
                            "shape": list(value.shape)}}
    if isinstance(value, NumpyDtype):
        return value.name
    if isinstance(value, Global):
        return f"<global {value.full}>"
    if isinstance(value, Call):
        name = value.func_name
        st = value.state
        if name in _OMEGA_CONTAINERS and isinstance(st, dict):
            return rec(st.get("_content"))
        if name.startswith(_OMEGA_NODE_PREFIX) and isinstance(st, dict):
            return rec(st.get("_val"))
        if name in _ATTR_DICTS or name == "argparse.Namespace":
            merged: dict = {}
            for src in (value.args if isinstance(value.args, tuple) else (), ):
                if isinstance(src, dict):
                    merged.update(src)
            if isinstance(value.kwargs, dict):
                merged.update(value.kwargs)
            if isinstance(st, dict):
                merged.update(st)
            for k, v in value.setitems:
                merged[k] = v
            return rec(merged)
        return f"<object {name}>"
    if isinstance(value, (StorageRec, PersistentRef)):
        return "<storage>"
    if isinstance(value, ExtRef):
        return f"<extension {value.code}>"
    return f"<{type(value).__name__}>"


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (int, float, bool)) or k is None:
        return str(k)
    j = to_json(k)
    return j if isinstance(j, str) else repr(j)


def extract_metadata(root: Any, scalar_reader: ScalarReader | None = None) -> dict[str, Any]:
    """Lightning and generic checkpoint metadata from the root object."""
    meta: dict[str, Any] = {}
    if not isinstance(root, dict):
        if isinstance(root, Call):
            meta["root_type"] = root.func_name
        return meta
    meta["keys"] = [_key(k) for k in root]
    for k in ("epoch", "global_step"):
        v = root.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            meta[k] = v
    for k in ("pytorch-lightning_version", "hparams_name"):
        v = root.get(k)
        if isinstance(v, str):
            meta[k] = v
    for k in ("hyper_parameters", "hparams"):
        if k in root:
            meta["hyper_parameters"] = to_json(root[k], scalar_reader)
            break
    callbacks = root.get("callbacks")
    if isinstance(callbacks, dict):
        cbs: dict[str, Any] = {}
        for name, state in callbacks.items():
            if not isinstance(state, dict):
                continue
            entry: dict[str, Any] = {}
            for field in ("monitor", "mode", "best_model_score", "best_score", "best_model_path",
                          "kth_best_model_path", "last_model_path", "wait_count", "stopped_epoch", "patience"):
                if field in state:
                    entry[field] = to_json(state[field], scalar_reader)
            cbs[_key(name)] = entry
        meta["callbacks"] = cbs
        for entry in cbs.values():
            if "best_model_score" in entry:
                meta.setdefault("monitor", entry.get("monitor"))
                meta.setdefault("best_model_score", entry["best_model_score"])
        if "monitor" not in meta:
            for entry in cbs.values():
                if "monitor" in entry:
                    meta["monitor"] = entry["monitor"]
                    break
    opt = root.get("optimizer_states", root.get("optimizer_state_dict", root.get("optimizer")))
    meta["has_optimizer_state"] = bool(opt) if isinstance(opt, (list, tuple, dict)) else opt is not None
    if "lr_schedulers" in root:
        meta["has_lr_schedulers"] = bool(root["lr_schedulers"])
    return meta
