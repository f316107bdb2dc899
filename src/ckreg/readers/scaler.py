"""`read_scaler_summary`: what a scaler file holds, without sklearn, numpy or unpickling.

Three formats:
- a pickled `sklearn.preprocessing.StandardScaler` (any protocol): the
  symbolic machine gives the estimator's `__setstate__` dict, whose numpy
  arrays (`_reconstruct` + BUILD) carry their raw bytes, decoded with `struct`;
- a joblib dump of one: joblib writes each array's bytes straight into the
  stream right after the `NumpyArrayWrapper`'s BUILD opcode (object arrays as
  a nested pickle, which is scanned like any other); zlib/gzip-compressed
  joblib files are inflated first, capped;
- ckreg's scaler JSON (`mean`, `scale`, `var`, `n_features`,
  `n_samples_seen`, `channel_names`, `recipe`, `data_hash`).

Globals outside the allowlist (`SCALER_TIERS`: the weights tiers plus the
StandardScaler class and joblib's wrapper) are findings; nothing is executed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ckreg.errors import ScalerError
from ckreg.findings import Finding
from ckreg.readers.allowlist import SCALER_TIERS, tier_of
from ckreg.readers.containers import COMPRESSED, ContainerProblem, decompress, sniff_container
from ckreg.readers.core import _check_path
from ckreg.readers.fileio import read_all, size_of
from ckreg.readers.joblib_arrays import WRAPPERS as _WRAPPERS, joblib_hook as _joblib_hook
from ckreg.readers.pickle_vm import Call, NumpyArray, NumpyScalar, run_pickle

MAX_SCALER_BYTES = 64 << 20


@dataclass
class ScalerSummary:
    """A scaler described: enough to pair it with a model and to recover one (issue #3)."""

    path: str
    format: str                              # "pickle" | "joblib" | "json"
    class_name: str | None = None            # e.g. "sklearn.preprocessing._data.StandardScaler"
    n_features: int | None = None
    mean: list[float] | None = None
    scale: list[float] | None = None
    var: list[float] | None = None
    n_samples_seen: int | list[int] | None = None
    sklearn_version: str | None = None
    feature_names: list[str] | None = None
    with_mean: bool | None = None
    with_std: bool | None = None
    recipe: str | None = None                # ckreg JSON only
    data_hash: str | None = None             # ckreg JSON only
    findings: list[Finding] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    bytes_read: int = 0

    @property
    def unsafe(self) -> bool:
        return any(f.code == "unsafe-global" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "path", "format", "class_name", "n_features", "mean", "scale", "var", "n_samples_seen",
            "sklearn_version", "feature_names", "with_mean", "with_std", "recipe", "data_hash", "globals")}
        out["findings"] = [f.model_dump(mode="json") for f in self.findings]
        return out


def _floats(v: Any) -> list[float] | None:
    if isinstance(v, NumpyArray):
        vals = v.values()
        if vals is None:
            return None
        return [float(x) for x in vals]
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [float(x) for x in v]
    return None


def _count(v: Any) -> int | list[int] | None:
    if isinstance(v, NumpyScalar):
        v = v.value
    if isinstance(v, NumpyArray):
        vals = v.values()
        if vals is None:
            return None
        ints = [int(x) for x in vals]
        return ints[0] if ints and all(x == ints[0] for x in ints) else ints
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


def _scalar_int(v: Any) -> int | None:
    if isinstance(v, NumpyScalar):
        v = v.value
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def read_scaler_summary(path: str | os.PathLike, *, tiers: tuple[str, ...] = SCALER_TIERS) -> ScalerSummary:
    """Describe a scaler file. Raises `ScalerError` when it is unreadable or not a StandardScaler-like object."""
    p = os.fspath(path)
    try:
        _check_path(p)
    except Exception as exc:  # ReadError -> the scaler area's error type, same message
        raise ScalerError(str(exc), path=p, hint=getattr(exc, "hint", None)) from None
    size = size_of(p)
    if size > MAX_SCALER_BYTES:
        raise ScalerError(f"{size} bytes: too large for a scaler", path=p)
    try:
        data = read_all(p)
    except OSError as exc:
        raise ScalerError(f"cannot be read: {exc.strerror or exc}", path=p, hint=getattr(exc, "hint", None)) \
            from None
    head = data.lstrip()[:1]
    if head == b"{":
        return _from_json(p, data)
    fmt = "pickle"
    kind = sniff_container(data[:512])
    if kind in COMPRESSED:
        try:
            data = decompress(data, kind, MAX_SCALER_BYTES)
        except ContainerProblem as exc:
            if data[:1] not in (b"(", b"c", b"}", b"]", b"\x80"):
                raise ScalerError(f"not a scaler: {exc}", path=p) from None
        else:
            fmt = "joblib"
    if len(data) > MAX_SCALER_BYTES:
        raise ScalerError("decompressed scaler exceeds the size cap (zip bomb?)", path=p)
    if not data or (data[:1] != b"\x80" and data[:1] not in (b"(", b"c", b"}", b"]")):
        raise ScalerError("not a scaler: neither pickle, joblib nor JSON", path=p)
    nested: list = []
    run = run_pickle(data, 0, build_hook=_joblib_hook(nested))
    runs = [run] + nested
    summary = ScalerSummary(path=p, format=fmt, bytes_read=size)
    seen: dict[str, str | None] = {}
    for r in runs:
        for g in r.globals:
            if g.full in seen:
                continue
            seen[g.full] = tier_of(g.module, g.name, tiers)
            if g.full in _WRAPPERS:
                summary.format = "joblib"
            if seen[g.full] is None:
                summary.findings.append(Finding.make(
                    "unsafe-global", f"{p}: unsafe global {g.full} in the scaler pickle (byte {g.pos}): "
                                     f"unpickling it would import it", path=p, actual=g.full))
        if not r.clean:
            summary.findings.append(Finding.make(
                "pickle-malformed", f"{p}: {r.error} at byte {r.error_pos}; the stream is not clean",
                path=p, actual=r.error))
    summary.globals = list(seen)
    root = run.value if run.clean else run.partial
    if run.truncated and root is None:
        err = ScalerError(f"truncated pickle ({run.error})", path=p)
        err.findings = summary.findings  # type: ignore[attr-defined]
        raise err
    if not isinstance(root, Call) or not isinstance(root.state, dict):
        if isinstance(root, dict) and ("mean" in root or "mean_" in root):
            state = root
        else:
            err = ScalerError("the pickle does not hold a fitted scaler object", path=p)
            err.findings = summary.findings  # type: ignore[attr-defined]
            raise err
    else:
        state = root.state
        summary.class_name = root.func_name
    _fill(summary, state)
    return summary


def _fill(s: ScalerSummary, state: dict) -> None:
    get = lambda *names: next((state[n] for n in names if n in state), None)  # noqa: E731
    s.mean = _floats(get("mean_", "mean"))
    s.var = _floats(get("var_", "var"))
    s.scale = _floats(get("scale_", "scale"))
    s.n_samples_seen = _count(get("n_samples_seen_", "n_samples_seen"))
    s.n_features = _scalar_int(get("n_features_in_", "n_features"))
    if s.n_features is None:
        for arr in (s.mean, s.scale, s.var):
            if arr is not None:
                s.n_features = len(arr)
                break
    v = get("_sklearn_version")
    s.sklearn_version = v if isinstance(v, str) else None
    names = get("feature_names_in_", "feature_names", "channel_names")
    if isinstance(names, NumpyArray):
        names = names.values()
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        s.feature_names = list(names)
    for attr in ("with_mean", "with_std"):
        val = state.get(attr)
        if isinstance(val, bool):
            setattr(s, attr, val)


def _from_json(p: str, data: bytes) -> ScalerSummary:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScalerError(f"scaler JSON does not parse ({exc})", path=p) from None
    if not isinstance(obj, dict) or "mean" not in obj:
        raise ScalerError("scaler JSON has no 'mean' field", path=p)
    s = ScalerSummary(path=p, format="json", bytes_read=len(data))
    s.class_name = obj.get("class") if isinstance(obj.get("class"), str) else "ckreg.scaler.Scaler"
    _fill(s, obj)
    for attr in ("recipe", "data_hash", "sklearn_version"):
        if isinstance(obj.get(attr), str):
            setattr(s, attr, obj[attr])
    return s
