"""Per-channel standard scalers: fit, save safely, read old `scaler.pkl` files safely (issue #3, "Scalers").

Two fitting recipes (scikit-learn's StandardScaler underneath, imported lazily):

- ``train-split``: the training episodes' valid (unpadded) rows only; the default for new models.
- ``upstream``: every time step of every episode, padding rows (raw 1.0) included; what
  the existing SignGlove checkpoints were trained with (spec, "Data ..."), needed
  to recover a lost scaler.

A scaler is saved as JSON (safe) and, on request, as a scikit-learn pickle for
inference code that expects ``scaler.pkl``. Existing pickles are read by a
restricted unpickler that resolves only the StandardScaler class (to an inert
stand-in: no scikit-learn code runs) and numpy's array/dtype/scalar
reconstructors; any other global is refused (`ScalerRefusedError`, which is
both a `ScalerError` and an `UnsafeFileError`). joblib files (also compressed)
go through joblib's unpickler with the same restriction.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ckreg.fsutil import write_bytes
from ckreg.errors import ScalerError, UnsafeFileError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ckreg.data import Dataset, Split

RECIPES = ("train-split", "upstream")
JSON_FORMAT = "ckreg-scaler"
JSON_VERSION = 1


class ScalerRefusedError(ScalerError, UnsafeFileError):
    """A scaler pickle references a global a scaler never needs: refused, never executed."""


class ScalerVersionWarning(UserWarning):
    """The pickle was written by another scikit-learn version (read anyway: the fields are plain arrays)."""


class Scaler(BaseModel):
    """A fitted per-channel standard scaler: x' = (x - mean) / scale."""

    model_config = ConfigDict(extra="ignore")

    mean: list[float]
    scale: list[float]
    var: list[float] | None = None
    n_features: int
    n_samples_seen: int | list[int]
    channel_names: list[str] = Field(default_factory=list)
    recipe: str = "unknown"                      # "train-split" | "upstream" | "unknown" (read from a pickle)
    data_hash: str | None = None
    split: dict[str, Any] | None = None          # seed and fractions of the training split (train-split recipe)
    sklearn_version: str | None = None           # version that wrote the pickle / fitted it
    source: str | None = None                    # file it was read from
    source_format: str | None = None             # "json" | "pickle" | "joblib" | None (fitted here)
    warnings: list[str] = Field(default_factory=list)   # e.g. version skew; not saved

    # -- use -----------------------------------------------------------
    def check_input_size(self, n: int, what: str = "the model") -> None:
        """ScalerError when this scaler's feature count differs from `n` (issue #3, "Bad input")."""
        if int(n) != self.n_features:
            where = f" ({self.source})" if self.source else ""
            raise ScalerError(f"scaler{where} has {self.n_features} features but {what} takes {n} input channels",
                              path=self.source, hint="use the scaler that belongs to this checkpoint, "
                                                     "or recover one with the upstream recipe")

    def transform(self, X) -> "np.ndarray":
        """Scale the last axis of X ([N, T, C] or [N, C]); float32 out, padding rows scaled like any row."""
        import numpy as np

        X = np.asarray(X)
        if X.ndim == 0 or X.shape[-1] != self.n_features:
            raise ScalerError(f"scaler has {self.n_features} features, data has "
                              f"{X.shape[-1] if X.ndim else 0} channels", path=self.source)
        mean = np.asarray(self.mean, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        return ((X.astype(np.float64) - mean) / scale).astype(np.float32)

    def inverse_transform(self, X) -> "np.ndarray":
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        return (X * np.asarray(self.scale) + np.asarray(self.mean)).astype(np.float32)

    def to_sklearn(self):
        """An equivalent fitted `sklearn.preprocessing.StandardScaler`."""
        import numpy as np
        from sklearn.preprocessing import StandardScaler

        sk = StandardScaler()
        sk.mean_ = np.asarray(self.mean, dtype=np.float64)
        sk.scale_ = np.asarray(self.scale, dtype=np.float64)
        sk.var_ = np.asarray(self.var if self.var is not None else np.square(self.scale), dtype=np.float64)
        sk.n_features_in_ = int(self.n_features)
        nss = self.n_samples_seen
        sk.n_samples_seen_ = np.asarray(nss, dtype=np.int64) if isinstance(nss, list) else np.int64(nss)
        return sk

    def to_json_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude={"warnings", "source", "source_format"})
        return {"format": JSON_FORMAT, "version": JSON_VERSION, **d}

    # convenience wrappers around the module functions
    def save_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        return save_json(self, path, overwrite=overwrite)

    def save_pickle(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        return save_pickle(self, path, overwrite=overwrite)


# -- fitting ---------------------------------------------------------------

def fit_scaler(dataset: "Dataset", recipe: Literal["train-split", "upstream"] = "train-split",
               split: "Split | None" = None, *, seed: int = 0) -> Scaler:
    """Fit a StandardScaler on `dataset` by `recipe` (module docstring).

    `train-split` uses `split.train` (or `ckreg.data.split(dataset, seed)` when
    no split is given) and only rows with mask == 0; `upstream` uses every row
    of every episode, padding included.
    """
    import numpy as np

    if recipe not in RECIPES:
        raise ScalerError(f"unknown recipe {recipe!r}", hint=f"use one of: {', '.join(RECIPES)}")
    X = np.asarray(dataset.X)
    C = X.shape[-1]
    split_info = None
    if recipe == "upstream":
        rows = X.reshape(-1, C)
    else:
        if split is None:
            from ckreg.data import split as make_split

            split = make_split(dataset, seed=seed)
        if split.data_hash and dataset.data_hash and split.data_hash != dataset.data_hash:
            raise ScalerError("the split was made for another dataset (data hashes differ)",
                              hint="split the dataset you fit on")
        idx = np.asarray(split.train, dtype=np.int64)
        valid = np.asarray(dataset.mask)[idx] == 0
        rows = X[idx][valid]
        split_info = {"seed": split.seed, "val_fraction": split.val_fraction,
                      "test_fraction": split.test_fraction, "n_train_episodes": int(idx.size)}
    if rows.shape[0] == 0:
        raise ScalerError(f"no rows to fit the {recipe} scaler on", path=dataset.source or None)
    from sklearn import __version__ as skv
    from sklearn.preprocessing import StandardScaler

    sk = StandardScaler().fit(rows.astype(np.float64))
    nss = sk.n_samples_seen_
    return Scaler(
        mean=[float(v) for v in sk.mean_], scale=[float(v) for v in sk.scale_],
        var=[float(v) for v in sk.var_], n_features=int(C),
        n_samples_seen=[int(v) for v in nss] if np.ndim(nss) else int(nss),
        channel_names=list(dataset.channel_names), recipe=recipe, data_hash=dataset.data_hash,
        split=split_info, sklearn_version=skv,
    )


def fit_and_save(data: str | os.PathLike, *, recipe: str = "train-split", seed: int = 0,
                 out: str | os.PathLike, pickle_too: bool = False, overwrite: bool = False,
                 keep_degenerate: bool | None = None) -> tuple[Scaler, list[Path]]:
    """`ckreg scaler fit`: load the data, fit by recipe, write JSON (and the pickle). Returns (scaler, files).

    `keep_degenerate` defaults to True for the upstream recipe (upstream kept every
    episode with at least one row, e.g. the one-row episode of the SignGlove data)
    and to False for train-split.
    """
    from ckreg.data import load_dataset

    out = Path(out)
    if out.suffix.lower() == ".pkl":
        json_path, pkl_path = out.with_suffix(".json"), out
        pickle_too = True
    else:
        json_path, pkl_path = out, out.with_suffix(".pkl")
    targets = [json_path] + ([pkl_path] if pickle_too else [])
    if not overwrite:
        for t in targets:
            if t.exists():
                raise ScalerError("refusing to overwrite an existing file", path=str(t),
                                  hint="choose another --out or pass --force")
    if keep_degenerate is None:
        keep_degenerate = recipe == "upstream"
    kwargs = {"keep_degenerate": True} if keep_degenerate and Path(data).is_dir() else {}
    dataset = load_dataset(data, **kwargs)
    scaler = fit_scaler(dataset, recipe, seed=seed)  # type: ignore[arg-type]
    written = [save_json(scaler, json_path, overwrite=overwrite)]
    if pickle_too:
        written.append(save_pickle(scaler, pkl_path, overwrite=overwrite))
    return scaler, written


# -- saving (temp file + rename; never clobber unless told) -----------------

def _atomic_write(path: Path, data: bytes, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ScalerError("refusing to overwrite an existing file", path=str(path),
                          hint="choose another name or pass overwrite=True (--force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data, overwrite=overwrite)
    return path


def save_json(scaler: Scaler, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The safe format: every field as JSON (mean, scale, var, counts, channels, recipe, data hash)."""
    data = json.dumps(scaler.to_json_dict(), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    return _atomic_write(Path(path), data, overwrite)


def save_pickle(scaler: Scaler, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """A scikit-learn StandardScaler pickle, for inference code that expects `scaler.pkl`."""
    data = pickle.dumps(scaler.to_sklearn(), protocol=4)
    return _atomic_write(Path(path), data, overwrite)


# -- reading -------------------------------------------------------------------

class _StandardScalerState:
    """Inert stand-in for sklearn's StandardScaler: records the pickled state, runs no sklearn code."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    core = getattr(np, "_core", None)
    if core is None or not hasattr(core, "multiarray"):  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    else:
        multiarray, numeric = core.multiarray, core.numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    # numpy 2 pickles dtypes by their class in numpy.dtypes (e.g. Float64DType): plain numeric ones only
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                 "Int8DType", "UInt64DType", "UInt32DType", "UInt16DType", "UInt8DType", "BoolDType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            allowed[("numpy.dtypes", name)] = cls
    return allowed


SCALER_CLASSES = (
    ("sklearn.preprocessing._data", "StandardScaler"),
    ("sklearn.preprocessing.data", "StandardScaler"),       # scikit-learn < 0.22
    ("sklearn.preprocessing", "StandardScaler"),
)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import copyreg

    allowed = _numpy_globals()
    for key in SCALER_CLASSES:
        allowed[key] = _StandardScalerState
    # protocol 0/1 pickles rebuild objects through copyreg._reconstructor(cls, object, None)
    allowed[("copyreg", "_reconstructor")] = copyreg._reconstructor
    allowed[("copy_reg", "_reconstructor")] = copyreg._reconstructor
    allowed[("builtins", "object")] = object
    allowed[("__builtin__", "object")] = object
    return allowed


def _refuse(path: str, module: str, name: str) -> ScalerRefusedError:
    return ScalerRefusedError(
        f"refused: the pickle references the global {module}.{name}, which a StandardScaler never needs "
        "(it would be imported and could run code if this file were unpickled)",
        path=path, hint="do not load this file with pickle/joblib; refit with `ckreg scaler fit`")


def _make_find_class(path: str):
    allowed = _allowed_globals()

    def find_class(module: str, name: str):
        obj = allowed.get((module, name))
        if obj is None:
            raise _refuse(path, module, name)
        return obj

    return find_class


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: str):
        super().__init__(fh)
        self._find = _make_find_class(path)
        self._path = path

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        return self._find(module, name)

    def persistent_load(self, pid):  # a scaler never has persistent ids
        raise ScalerRefusedError(f"refused: persistent id {pid!r} in a scaler pickle", path=self._path)


def _joblib_load(path: Path):
    """Unpickle a joblib file (raw or compressed) with the restricted find_class, or None if joblib is absent."""
    try:
        from joblib import numpy_pickle as jnp
    except ImportError:
        return None
    find = _make_find_class(str(path))
    wrapper = getattr(jnp, "NumpyArrayWrapper", None)

    class _Restricted(jnp.NumpyUnpickler):
        def find_class(self, module: str, name: str):
            if wrapper is not None and (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
                return wrapper
            return find(module, name)

        def persistent_load(self, pid):
            raise ScalerRefusedError(f"refused: persistent id {pid!r} in a scaler pickle", path=str(path))

    with open(path, "rb") as fh:
        with jnp._validate_fileobject_and_memmap(fh, str(path), None) as (fobj, _):
            if isinstance(fobj, str):   # joblib < 0.10 layout: arrays in side files
                raise ScalerRefusedError("refused: joblib < 0.10 multi-file pickle", path=str(path),
                                         hint="refit with `ckreg scaler fit`")
            unpickler = _Restricted(str(path), fobj, ensure_native_byte_order=True)
            return unpickler.load()


_COMPRESSED_MAGIC = (b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")


def _installed_sklearn_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("scikit-learn")
    except Exception:
        return None


def _from_state(obj: Any, path: Path, fmt: str) -> Scaler:
    import numpy as np

    if not isinstance(obj, _StandardScalerState) or not isinstance(getattr(obj, "state", None), dict):
        raise ScalerError(f"not a StandardScaler pickle (top-level object: {type(obj).__name__})", path=str(path))
    st = obj.state

    def arr(name: str, required: bool = True):
        v = st.get(name)
        if v is None:
            if required:
                raise ScalerError(f"StandardScaler pickle has no {name} (not fitted, or with_mean/with_std off)",
                                  path=str(path))
            return None
        a = np.asarray(v)
        if a.dtype.kind not in "fiu" or a.ndim != 1:
            raise ScalerError(f"{name} must be a 1-D numeric array, got {a.dtype} {list(a.shape)}", path=str(path))
        return [float(x) for x in a]

    scale = arr("scale_", required=False)
    mean = arr("mean_", required=False)
    var = arr("var_", required=False)
    n = st.get("n_features_in_")
    if n is None:
        n = len(scale or mean or [])
    n = int(n)
    if mean is None and scale is None:
        raise ScalerError("StandardScaler pickle has neither mean_ nor scale_ (not fitted)", path=str(path))
    mean = mean if mean is not None else [0.0] * n
    scale = scale if scale is not None else [1.0] * n
    if not (len(mean) == len(scale) == n) or (var is not None and len(var) != n):
        raise ScalerError(f"inconsistent StandardScaler: n_features_in_={n}, mean_ {len(mean)}, "
                          f"scale_ {len(scale)}", path=str(path))
    nss = st.get("n_samples_seen_", 0)
    nss = [int(v) for v in np.asarray(nss).ravel()] if np.ndim(nss) else int(nss)
    names = st.get("feature_names_in_")
    channel_names = [str(v) for v in np.asarray(names).ravel()] if names is not None else []
    version = st.get("_sklearn_version")
    notes: list[str] = []
    installed = _installed_sklearn_version()
    if version and installed and str(version) != installed:
        msg = (f"{path}: written by scikit-learn {version}, installed {installed}; read without scikit-learn "
               "code (mean_, scale_, var_ are plain arrays), so the values are exact")
        notes.append(msg)
        warnings.warn(msg, ScalerVersionWarning, stacklevel=3)
    return Scaler(mean=mean, scale=scale, var=var, n_features=n, n_samples_seen=nss,
                  channel_names=channel_names, recipe="unknown", data_hash=None,
                  sklearn_version=str(version) if version else None, source=str(path), source_format=fmt,
                  warnings=notes)


def load_scaler(path: str | os.PathLike) -> Scaler:
    """Read a scaler: ckreg JSON, or a scikit-learn StandardScaler pickle (plain or joblib) read safely.

    Never unpickles arbitrary code: only the StandardScaler class (mapped to an
    inert stand-in) and numpy's reconstructors are resolved; any other global
    raises ScalerRefusedError naming the file and the global. A scikit-learn
    version other than the installed one gives a ScalerVersionWarning (and a
    line in `Scaler.warnings`), not a failure.
    """
    p = Path(path)
    if not p.is_file():
        raise ScalerError("no such file", path=str(p))
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ScalerError(f"cannot read: {exc}", path=str(p)) from exc
    if not raw:
        raise ScalerError("empty file", path=str(p))
    if raw.lstrip()[:1] == b"{":
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ScalerError(f"invalid JSON: {exc}", path=str(p)) from exc
        if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
            raise ScalerError(f"not a ckreg scaler JSON (format is {doc.get('format') if isinstance(doc, dict) else None!r})",
                              path=str(p))
        try:
            sc = Scaler(**{k: v for k, v in doc.items() if k not in ("format", "version")})
        except ValueError as exc:
            raise ScalerError(f"invalid scaler JSON: {' '.join(str(exc).split())[:300]}", path=str(p)) from exc
        if not (len(sc.mean) == len(sc.scale) == sc.n_features) or any(s == 0 for s in sc.scale):
            raise ScalerError("inconsistent scaler JSON: mean/scale lengths must equal n_features, scale non-zero",
                              path=str(p))
        return sc.model_copy(update={"source": str(p), "source_format": "json"})

    compressed = raw.startswith(_COMPRESSED_MAGIC) and not raw.startswith(b"\x80")
    try:
        obj = _joblib_load(p)
        fmt = "joblib"
        if obj is None:
            if compressed:
                raise ScalerError("compressed joblib file, but joblib is not installed", path=str(p))
            obj = _RestrictedUnpickler(io.BytesIO(raw), str(p)).load()
            fmt = "pickle"
    except ScalerError:
        raise
    except Exception as exc:  # malformed stream: pickle raises many types
        raise ScalerError(f"not a readable scaler pickle: {type(exc).__name__}: {exc}", path=str(p)) from exc
    if fmt == "joblib" and not compressed and b"joblib.numpy_pickle" not in raw:
        fmt = "pickle"
    return _from_state(obj, p, fmt)


__all__ = ["Scaler", "fit_scaler", "fit_and_save", "save_json", "save_pickle", "load_scaler",
           "ScalerRefusedError", "ScalerVersionWarning", "RECIPES"]
