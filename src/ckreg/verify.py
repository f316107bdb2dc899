"""Verified pairs: does this checkpoint, with this scaler, do what it claims? (issue #5)

A checkpoint alone proves nothing: the archive pairs one scaler with three
checkpoints it does not belong to (issue #4), and a model scaled with the
wrong statistics loads fine and predicts garbage. So a *pair* is verified by
running it: build the zoo model from the inspected architecture, load it
strictly, check the scaler against the model input, push the data through,
and compare the accuracy with the declared one.

`verify_pair` answers for one pair; `recover_scaler` re-fits the scaler by the
known recipes (issue #3: `upstream`, `train-split`) and keeps the one that
verifies; `verify_for_audit` is the audit's `--data` hook. torch is allowed
here (tests/test_layering.py), but only imported inside functions so that
importing this module stays cheap for the audit and the CLI.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ckreg.fsutil import file_sha256
from ckreg import __version__
from ckreg.errors import AmbiguousFamilyError, CkregError, DataError, ScalerError, UsageError
from ckreg.findings import Finding

DEFAULT_TOLERANCE = 0.005
# With no declared accuracy, a re-fitted scaler this much (a fraction) better than the paired one
# proves the paired scaler belongs to another run (the archive's shared scaler.pkl: 88.8% vs 99.4%).
RECOVERY_MARGIN = 0.01
RECIPES: tuple[str, ...] = ("upstream", "train-split")
SPLITS = ("all", "train", "val", "test")
# The headline accuracy is measured on the held-out test split; all episodes are reported second.
DEFAULT_SPLIT = "test"
NO_TARGET = ("loads and predicts; no target (declare `metrics.accuracy` or `min_accuracy` in the manifest, "
             "or pass --min-acc)")
Status = Literal["verified", "unverified", "failed"]


# --------------------------------------------------------------------------- results


class ScalerCheck(BaseModel):
    """The scaler against the model input and the data (issue #5: feature count and channel names)."""

    path: str | None = None
    recipe: str | None = None
    n_features: int | None = None
    model_input: int | None = None
    data_channels: list[str] = Field(default_factory=list)
    scaler_channels: list[str] = Field(default_factory=list)
    ok: bool = True
    problems: list[str] = Field(default_factory=list)


class VerifyResult(BaseModel):
    """One pair's verification. `accuracy` is a fraction; `per_class` maps class name to a fraction."""

    model_config = ConfigDict(extra="forbid")

    ckpt: str
    scaler: str | None = None
    data: str | None = None
    split: str = DEFAULT_SPLIT
    # "verified": an explicit accuracy target was met on `split`; "unverified": it loads and predicts
    # but there was no target (or no data) to hold it to; "failed": a finding. `passed` is status == verified.
    status: Status = "failed"
    passed: bool = False
    loaded: bool = False
    finite: bool | None = None
    family: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    accuracy: float | None = None
    per_class: dict[str, float | None] = Field(default_factory=dict)
    class_names: list[str] = Field(default_factory=list)
    confusion_matrix: list[list[int]] = Field(default_factory=list)   # rows = true, columns = predicted
    n_episodes: int = 0                  # episodes in `split` (what `accuracy` is measured on)
    split_args: dict[str, Any] = Field(default_factory=dict)   # seed, val, test of the split used
    split_recorded: bool = False         # the checkpoint records the split it was trained with
    accuracy_all: float | None = None    # secondary: over every loaded episode (training ones included)
    n_episodes_all: int = 0
    skipped_episodes: list[dict[str, str]] = Field(default_factory=list)   # {path, reason}, skipped while loading
    data_hash: str | None = None
    scaler_check: ScalerCheck = Field(default_factory=ScalerCheck)
    expect_acc: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    accuracy_declared: bool = False
    target_source: str | None = None     # where the target comes from: declared, min_accuracy, --min-acc
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)   # e.g. scikit-learn version skew of a scaler.pkl
    findings: list[Finding] = Field(default_factory=list)
    ckreg_version: str = __version__

    @property
    def threshold(self) -> float | None:
        return None if self.expect_acc is None else self.expect_acc - self.tolerance


class Candidate(BaseModel):
    """One recipe tried by `recover_scaler`."""

    recipe: str
    accuracy: float | None = None
    passed: bool = False
    finite: bool | None = None
    note: str | None = None


class RecoverResult(BaseModel):
    """What `recover_scaler` tried, what it kept and where it wrote it."""

    ckpt: str
    data: str | None = None
    data_hash: str | None = None
    recipe: str | None = None            # the kept recipe, None when nothing was kept
    accuracy: float | None = None        # of the kept recipe (fraction)
    passed: bool = False                 # the kept scaler reaches expect_acc (or: none declared)
    chosen_by: str = ""                  # "declared-accuracy" | "best-accuracy" | "none-verifies"
    expect_acc: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    candidates: list[Candidate] = Field(default_factory=list)
    path: str | None = None              # the written scaler JSON
    pkl_path: str | None = None
    written: bool = False
    reasons: list[str] = Field(default_factory=list)
    verification: VerifyResult | None = None


# --------------------------------------------------------------------------- adapters
# Everything verify needs from its neighbours goes through these few functions,
# so the interfaces of docs/DEVELOPING.md are used in one place each.

_DATA_CACHE: dict[tuple[str, int], Any] = {}
_DATA_LOCK = threading.Lock()


def normalize_acc(value: float | None) -> float | None:
    """Accept 0.9913 or 99.13 (percent) for a declared accuracy; return a fraction."""
    if value is None:
        return None
    value = float(value)
    if value > 1.0:
        value /= 100.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"accuracy {value!r} is not a fraction in [0, 1] or a percentage")
    return value


def _data_key(path: Path) -> tuple[str, int]:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return str(path.resolve()), mtime


def load_data(data: Any):
    """A `ckreg.data.Dataset` from a path (cached per path within the process) or a Dataset as is.

    The audit verifies several pairs on one dataset, and parsing 1,444 CSV
    files is the slow part of a verification (issue #5: "cache the loaded
    dataset per path").
    """
    if data is None:
        return None
    if not isinstance(data, (str, os.PathLike)):
        return data  # already a Dataset
    path = Path(data)
    if not path.exists():
        raise DataError(f"data {path} does not exist", path=str(path), hint="pass --data DIR (a SignGlove folder or an .npz)")
    key = _data_key(path)
    with _DATA_LOCK:
        cached = _DATA_CACHE.get(key)
        if cached is None:
            from ckreg.data import load_dataset

            cached = load_dataset(path)
            _DATA_CACHE[key] = cached
    return cached


def clear_data_cache() -> None:
    with _DATA_LOCK:
        _DATA_CACHE.clear()


def _data_label(data: Any) -> str | None:
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    return str(getattr(data, "source", "") or getattr(data, "path", "") or "<dataset>")


def _subset_indices(dataset, split: str, split_args: dict | None = None):
    """Indices of `split` ("all" or a part of the split `split_args` describes: seed, val, test)."""
    import numpy as np

    n = len(dataset.y)
    if split == "all":
        return np.arange(n)
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", hint=f"one of {', '.join(SPLITS)}")
    from ckreg.data import split as make_split

    parts = make_split(dataset, **(split_args or {}))
    return np.asarray(getattr(parts, split))


def _load_scaler(scaler: Any):
    """A Scaler from a path (JSON or restricted-unpickled pkl); version skew lands in `Scaler.warnings`, not on stderr."""
    if scaler is None or not isinstance(scaler, (str, os.PathLike)):
        return scaler
    import warnings

    from ckreg.scaler import ScalerVersionWarning, load_scaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalerVersionWarning)
        return load_scaler(Path(scaler))


def find_sidecar_scaler(ckpt: str | os.PathLike) -> Path | None:
    """The scaler stored next to a checkpoint, by the names ckreg and upstream use (first found wins)."""
    ckpt = Path(ckpt)
    stem = ckpt.stem
    names = [f"{stem}.scaler.json", f"{stem}.scaler.pkl", "scaler.json", "scaler.pkl"]
    for name in names:
        cand = ckpt.with_name(name)
        if cand.is_file():
            return cand
    return None


def _require_torch() -> None:
    """Verification runs the model: without torch that is a usage error (exit 2), not a finding about the file."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UsageError("verification runs the model and needs torch", hint="pip install 'ckreg[train]'")


def _load_model(ckpt: Path, family: str | None = None):
    """(module, spec, inspection) from the zoo: strict load, eval mode (issue #3).

    `family` settles what weights cannot show (ScaleAware vs ScaleHard)."""
    from ckreg.zoo import load_checkpoint

    return load_checkpoint(ckpt, family=family)


def _scaled(scaler, X):
    """The scaler applied to raw `[N, T, C]` episodes (padding rows included, as upstream did)."""
    import numpy as np

    return np.asarray(scaler.transform(np.asarray(X, dtype=np.float32)), dtype=np.float32)


def _logits(module, X, mask, batch_size: int = 256):
    """Logits `[N, K]` (float32 numpy) for scaled episodes: `ckreg.zoo.predict`, eval mode, no gradients."""
    from ckreg.zoo import predict

    return predict(module, X, mask, batch_size=batch_size)


def _image_logits(module, images, mask, probe: tuple[int, int, int] | None = None):
    """Logits (float32 numpy) of an image model: the trainer's batched, channels-last prediction."""
    import numpy as np

    from ckreg.train import common

    if probe is not None:
        n, c, size = probe
        images = np.zeros((n, c, size, size), dtype=np.float32)
        mask = np.zeros((n, 1), dtype=np.uint8)
    return common.predict_logits(module, images, mask).numpy()


def recorded_imaging(insp):
    """The image transform (`ckreg.train.recipes.ImagingConfig`) a ckreg-trained image model records in
    its recipe (safetensors `ckreg.recipe`, Lightning `hyper_parameters`), or None for a signal model."""
    meta = getattr(insp, "metadata", None) or {}
    md = meta.get("__metadata__") if isinstance(meta.get("__metadata__"), dict) else {}
    holders: list[Any] = []
    if md.get("ckreg.recipe"):
        try:
            holders.append(json.loads(md["ckreg.recipe"]))
        except (TypeError, ValueError):
            pass
    if isinstance(meta.get("hyper_parameters"), dict):
        holders.append(meta["hyper_parameters"])
    from ckreg.train.recipes import ImagingConfig

    for h in holders:
        if isinstance(h, dict):
            try:
                img = ImagingConfig.from_recorded(h.get("imaging"))
            except (TypeError, ValueError):
                img = None
            if img is not None:
                return img
    return None


# --------------------------------------------------------------------------- scaler check


def check_scaler(scaler, spec, dataset=None, scaler_path: str | None = None) -> ScalerCheck:
    """The scaler's feature count against the model input and its channel names against the data's."""
    n_features = getattr(scaler, "n_features", None)
    if n_features is None and getattr(scaler, "mean", None) is not None:
        n_features = len(scaler.mean)
    s_channels = list(getattr(scaler, "channel_names", None) or [])
    d_channels = list(getattr(dataset, "channel_names", None) or []) if dataset is not None else []
    model_input = getattr(spec, "input_size", None)
    check = ScalerCheck(path=scaler_path, recipe=getattr(scaler, "recipe", None), n_features=n_features,
                        model_input=model_input, data_channels=d_channels, scaler_channels=s_channels)
    if n_features is not None and model_input is not None and int(n_features) != int(model_input):
        check.problems.append(f"scaler has {n_features} features, the model takes {model_input} input channels")
    if dataset is not None and n_features is not None and getattr(dataset, "X", None) is not None:
        c = int(dataset.X.shape[-1])
        if c != int(n_features):
            check.problems.append(f"scaler has {n_features} features, the data has {c} channels")
    if s_channels and d_channels and s_channels != d_channels:
        check.problems.append(f"scaler channels {s_channels} differ from the data's {d_channels}")
    check.ok = not check.problems
    return check


# --------------------------------------------------------------------------- metrics


def _metrics(pred, y, n_classes: int, class_names: Sequence[str]):
    import numpy as np

    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = (y >= 0) & (y < n_classes) & (pred >= 0) & (pred < n_classes)
    np.add.at(cm, (y[ok], pred[ok]), 1)
    acc = float((pred == y).mean()) if len(y) else 0.0
    per_class: dict[str, float | None] = {}
    for k in range(n_classes):
        support = int(cm[k].sum())
        name = class_names[k] if k < len(class_names) else str(k)
        per_class[name] = (float(cm[k, k]) / support) if support else None
    return acc, per_class, cm.tolist()


# --------------------------------------------------------------------------- verify_pair


def _fail(result: VerifyResult, code: str, reason: str, **kw) -> VerifyResult:
    result.reasons.append(reason)
    result.findings.append(Finding.make(code, reason, path=result.ckpt, **kw))
    result.passed = False
    result.status = "failed"
    return result


def _unverified(result: VerifyResult, reason: str) -> VerifyResult:
    result.reasons.append(reason)
    result.passed = False
    result.status = "unverified"
    return result


def skipped_episodes(dataset) -> list[dict[str, str]]:
    """The episodes the loader skipped (path, reason): every report names them (issue: silently dropped data)."""
    out = []
    for path, reason in getattr(dataset, "problems", None) or []:
        if "[skipped]" in str(reason) or "kept" not in str(reason):
            out.append({"path": str(path), "reason": str(reason)})
    return out


def verify_pair(ckpt: str | os.PathLike, scaler: Any = None, data: Any = None, expect_acc: float | None = None,
                tolerance: float = DEFAULT_TOLERANCE, split: str = DEFAULT_SPLIT, *, seed: int | None = None,
                family: str | None = None, target_source: str | None = None,
                _model: tuple | None = None) -> VerifyResult:
    """Verify one checkpoint + scaler pair on a dataset.

    `status` is "verified" only when the checkpoint loads strictly into the
    zoo, predicts finite logits, the scaler fits the model input, and the
    accuracy on `split` (default: the held-out test split the checkpoint
    records, else the default split) reaches an explicit target:
    accuracy >= expect_acc - tolerance. Without a target (or without data)
    the pair can at best be "unverified" ("loads and predicts; no target");
    a problem is "failed" with a finding. The all-episode accuracy is
    reported second (`accuracy_all`), the episodes the loader skipped are
    named (`skipped_episodes`).

    `scaler` is a path, a loaded `ckreg.scaler.Scaler`, or None (the sidecar
    next to the checkpoint, if any). `data` is a path (cached per process) or
    a `ckreg.data.Dataset`. Never raises for a bad checkpoint: that is a
    `verify-failed` finding. Raises `CkregError` for unusable data or scaler
    paths and for a family the weights cannot settle (user mistakes, exit 2).
    """
    import numpy as np

    _require_torch()
    ckpt = Path(ckpt)
    expect_acc = normalize_acc(expect_acc)
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    if not 0.0 <= float(tolerance) < 1.0:
        raise UsageError(f"tolerance {tolerance!r} must be a fraction in [0, 1)")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", hint=f"one of {', '.join(SPLITS)}")
    if not ckpt.exists():
        raise UsageError(f"checkpoint {ckpt} does not exist", path=str(ckpt))
    if scaler is None:
        scaler = find_sidecar_scaler(ckpt)
    scaler_path = str(scaler) if isinstance(scaler, (str, os.PathLike)) else (
        getattr(scaler, "source", None) or None)
    result = VerifyResult(ckpt=str(ckpt), scaler=scaler_path, data=_data_label(data), split=split,
                          expect_acc=expect_acc, tolerance=float(tolerance),
                          accuracy_declared=expect_acc is not None,
                          target_source=(target_source or "given") if expect_acc is not None else None)

    dataset = load_data(data)
    if dataset is not None:
        result.skipped_episodes = skipped_episodes(dataset)
    scaler_obj = _load_scaler(scaler)
    result.warnings.extend(getattr(scaler_obj, "warnings", None) or [])

    # 1. strict load into the zoo. A file that does not load is a finding about the file (CkregError:
    # ReadError, SpecError, VerificationError; OSError); a family the weights cannot settle is the user's
    # to name (--family), exit 2 as `eval` does; anything else is a bug and propagates (exit 4).
    try:
        module, spec, insp = _model if _model is not None else _load_model(ckpt, family)
    except AmbiguousFamilyError:
        raise
    except (CkregError, OSError) as exc:
        msg = exc.render() if isinstance(exc, CkregError) else f"{type(exc).__name__}: {exc}"
        return _fail(result, "verify-failed", f"does not load strictly into the zoo: {msg}")
    result.loaded = True
    result.family = getattr(spec, "family", None)
    result.spec = spec.model_dump(exclude_none=True) if hasattr(spec, "model_dump") else {}
    # an image model (GASF/GADF/MTF, docs/recipes.md) sees images of the raw signals: no scaler is involved
    imaging = recorded_imaging(insp)

    # 2. the scaler against the model input and the data
    if imaging is not None:
        pass
    elif scaler_obj is not None:
        result.scaler_check = check_scaler(scaler_obj, spec, dataset, scaler_path)
        for problem in result.scaler_check.problems:
            _fail(result, "scaler-feature-mismatch", problem,
                  expected=result.scaler_check.model_input, actual=result.scaler_check.n_features)
        if not result.scaler_check.ok:
            return result
    elif dataset is not None:
        return _fail(result, "verify-failed", "no scaler to verify with (none given, none next to the checkpoint); "
                     "recover one with `ckreg scaler recover`")

    # 3. run the data (or a neutral probe) through
    if dataset is None:
        c = int(getattr(spec, "input_size", 8) or 8)
        X = np.zeros((2, 87, c), dtype=np.float32)
        mask = np.zeros((2, 87), dtype=np.uint8)
        if imaging is not None:
            size = imaging.size
            logits = _image_logits(module, None, None, probe=(2, c, size))
        else:
            logits = _logits(module, X, mask)
        result.finite = bool(np.isfinite(logits).all())
        if not result.finite:
            return _fail(result, "verify-failed", "predictions are not finite (NaN or inf logits)")
        if expect_acc is not None:
            return _unverified(result, "loads and predicts; the accuracy target needs --data to be checked")
        return _unverified(result, "loads and predicts (no data given); no target")

    recorded = recorded_split(insp)
    split_args = recorded if seed is None else {**recorded, "seed": int(seed)}
    result.split_recorded = bool(recorded) and seed is None
    result.split_args = {"seed": 0, "val": 0.15, "test": 0.15, **split_args} if split != "all" else {}
    idx = _subset_indices(dataset, split, split_args)
    result.n_episodes = int(len(idx))
    result.n_episodes_all = int(len(dataset.y))
    result.data_hash = getattr(dataset, "data_hash", None)
    result.class_names = list(getattr(dataset, "class_names", None) or [])
    if result.n_episodes == 0:
        raise DataError(f"no episodes in split {split!r} of {result.data}")
    n_classes = int(getattr(spec, "num_classes", 0) or 0)
    if result.class_names and n_classes and len(result.class_names) != n_classes:
        return _fail(result, "verify-failed",
                     f"the model predicts {n_classes} classes, the data has {len(result.class_names)}",
                     expected=len(result.class_names), actual=n_classes)
    # every episode goes through once: the split's accuracy is the headline, all episodes the second line
    try:
        if imaging is not None:
            logits_all = _image_logits(module, imaging.images(np.asarray(dataset.X, dtype=np.float32),
                                                              np.asarray(dataset.mask)), np.asarray(dataset.mask))
        else:
            logits_all = _logits(module, _scaled(scaler_obj, np.asarray(dataset.X)), np.asarray(dataset.mask))
    except (CkregError, ValueError, RuntimeError) as exc:   # torch reports shape problems as RuntimeError
        msg = exc.render() if isinstance(exc, CkregError) else f"{type(exc).__name__}: {exc}"
        return _fail(result, "verify-failed", f"prediction failed: {msg}")
    logits = logits_all[idx]
    y = np.asarray(dataset.y)[idx]
    result.finite = bool(np.isfinite(logits_all).all())
    if not result.finite:
        bad = int((~np.isfinite(logits_all)).any(axis=1).sum())
        return _fail(result, "verify-failed", f"predictions are not finite for {bad} of {len(logits_all)} episodes")
    n_classes = n_classes or logits.shape[1]
    pred = logits.argmax(axis=1)
    acc, per_class, cm = _metrics(pred, y, n_classes, result.class_names)
    result.accuracy, result.per_class, result.confusion_matrix = acc, per_class, cm
    result.accuracy_all = float((logits_all.argmax(axis=1) == np.asarray(dataset.y)).mean())
    where = f"{result.n_episodes} {split}-split episodes" if split != "all" else f"all {result.n_episodes} episodes"

    # 4. against the target
    if expect_acc is None:
        return _unverified(result, f"{NO_TARGET}; accuracy {acc:.4f} on {where}")
    threshold = expect_acc - float(tolerance)
    if acc + 1e-12 >= threshold:
        result.passed = True
        result.status = "verified"
        result.reasons.append(f"accuracy {acc:.4f} on {where} reaches the target {expect_acc:.4f} "
                              f"({result.target_source}, tolerance {tolerance:g})")
        return result
    return _fail(result, "accuracy-below-declared",
                 f"accuracy {acc:.4f} on {where} misses the target {expect_acc:.4f} "
                 f"({result.target_source}, tolerance {tolerance:g})"
                 + (f" with scaler {_short(scaler_path, str(ckpt))}" if scaler_path else ""),
                 expected=expect_acc, actual=round(acc, 6))


# --------------------------------------------------------------------------- recover_scaler


def _fit(dataset, recipe: str, split_args: dict | None = None):
    """A scaler fitted by `recipe`; train-split uses the split the checkpoint records (seed, fractions)."""
    from ckreg.scaler import fit_scaler

    if recipe == "train-split" and split_args:
        from ckreg.data import split as make_split

        return fit_scaler(dataset, recipe="train-split", split=make_split(dataset, **split_args))
    return fit_scaler(dataset, recipe=recipe)


def recorded_split(insp) -> dict:
    """The split a ckreg-trained checkpoint records (seed, val, test), for the train-split recipe; {} otherwise.

    ckreg's trainer writes it into safetensors `__metadata__` (`ckreg.recipe`,
    `ckreg.seed`) and Lightning `hyper_parameters` (train/loop.py).
    """
    meta = getattr(insp, "metadata", None) or {}
    holders: list[dict] = []
    md = meta.get("__metadata__") if isinstance(meta.get("__metadata__"), dict) else {}
    if md.get("ckreg.recipe"):
        try:
            holders.append(json.loads(md["ckreg.recipe"]))
        except (TypeError, ValueError):
            pass
    if "ckreg.seed" in md:
        holders.append({"seed": md["ckreg.seed"]})
    if isinstance(meta.get("hyper_parameters"), dict):
        holders.append(meta["hyper_parameters"])
    out: dict = {}
    for h in holders:
        for key, name in (("seed", "seed"), ("val_fraction", "val"), ("test_fraction", "test")):
            if name not in out and h.get(key) is not None:
                try:
                    out[name] = int(h[key]) if name == "seed" else float(h[key])
                except (TypeError, ValueError):
                    pass
    return out


def try_recipes(ckpt: str | os.PathLike, data: Any, expect_acc: float | None = None,
                tolerance: float = DEFAULT_TOLERANCE, recipes: Iterable[str] = RECIPES, split: str = DEFAULT_SPLIT,
                _model: tuple | None = None) -> tuple[list[Candidate], dict[str, tuple[Any, VerifyResult]]]:
    """Fit a scaler by each recipe and verify the checkpoint with it; writes nothing."""
    ckpt = Path(ckpt)
    dataset = load_data(data)
    if dataset is None:
        raise UsageError("recovering a scaler needs data (--data DIR)")
    model = _model if _model is not None else _load_model(ckpt)
    split_args = recorded_split(model[2])
    cands: list[Candidate] = []
    fitted: dict[str, tuple[Any, VerifyResult]] = {}
    for recipe in recipes:
        try:
            sc = _fit(dataset, recipe, split_args)
        except CkregError as exc:
            cands.append(Candidate(recipe=recipe, note=exc.render()))
            continue
        res = verify_pair(ckpt, sc, dataset, expect_acc=expect_acc, tolerance=tolerance, split=split, _model=model)
        res.scaler = f"<{recipe} fit>"
        res.data = _data_label(data)
        cands.append(Candidate(recipe=recipe, accuracy=res.accuracy, passed=res.passed, finite=res.finite,
                               note="; ".join(res.reasons) or None))
        fitted[recipe] = (sc, res)
    return cands, fitted


def _choose(cands: list[Candidate], expect_acc: float | None) -> tuple[Candidate | None, str]:
    scored = [c for c in cands if c.accuracy is not None and c.finite]
    if not scored:
        return None, "none-verifies"
    best = max(scored, key=lambda c: c.accuracy)   # ties: the first recipe in the given order
    if expect_acc is None:
        return best, "best-accuracy"
    passing = [c for c in scored if c.passed]
    if passing:
        return max(passing, key=lambda c: c.accuracy), "declared-accuracy"
    return best, "none-verifies"


def _reserve(directory: Path, stem: str, exts: Sequence[str]) -> list[Path]:
    """Free names `<stem>.scaler<ext>`, then `<stem>.scaler-1<ext>`, ...: one index for all extensions."""
    n = 0
    while True:
        base = f"{stem}.scaler" if n == 0 else f"{stem}.scaler-{n}"
        paths = [directory / f"{base}{ext}" for ext in exts]
        if not any(p.exists() or p.is_symlink() for p in paths):
            return paths
        n += 1


def write_recovered(scaler, ckpt: Path, recovery: dict, out_dir: Path | None = None, pkl: bool = False) -> tuple[Path, Path | None]:
    """Write a recovered scaler into `out_dir` (default: `recovered_dir(ckpt)`, outside the checkpoint's
    folder) under a fresh name; never clobbers (`ckreg.fsutil`, no-clobber publish)."""
    from ckreg.errors import OutputExistsError
    from ckreg.fsutil import write_json, write_with
    from ckreg.scaler import save_pickle

    directory = Path(out_dir) if out_dir is not None else recovered_dir(ckpt)
    directory.mkdir(parents=True, exist_ok=True)
    exts = [".json", ".pkl"] if pkl else [".json"]
    doc = {**scaler.to_json_dict(), "recovered": recovery}
    for _attempt in range(100):
        paths = _reserve(directory, ckpt.stem, exts)
        json_path = paths[0]
        try:
            write_json(json_path, doc)
        except OutputExistsError:
            continue   # raced with another writer: take the next free name
        pkl_path = None
        if pkl:
            pkl_path = paths[1]
            write_with(pkl_path, lambda tmp: save_pickle(scaler, tmp))
        return json_path, pkl_path
    raise CkregError(f"no free scaler name in {directory}", path=str(ckpt))


RECOVERED_DIR = "ckreg-recovered"


def recovered_dir(ckpt: str | os.PathLike) -> Path:
    """Where `scaler recover` writes by default: `ckreg-recovered/` in the current folder, unless that
    lies inside the checkpoint's own tree; then a sibling of the checkpoint's folder tree top
    (`<top>-ckreg-recovered/`). Never inside the audited archive (the audit would pair it)."""
    ckpt = Path(ckpt).resolve()
    here = (Path.cwd() / RECOVERED_DIR).resolve()
    if not here.is_relative_to(ckpt.parent):
        return here
    return ckpt.parent.parent / f"{ckpt.parent.name}-{RECOVERED_DIR}"


def recover_scaler(ckpt: str | os.PathLike, data: Any, out_dir: str | os.PathLike | None = None,
                   expect_acc: float | None = None, recipes: Iterable[str] = RECIPES, *,
                   tolerance: float = DEFAULT_TOLERANCE, pkl: bool = False, write: bool = True,
                   split: str = DEFAULT_SPLIT) -> RecoverResult:
    """Re-fit the scaler of a checkpoint by the known recipes and keep the one that verifies.

    Chooses the most accurate recipe that reaches `expect_acc` (within
    `tolerance`); without a declared accuracy, the most accurate one
    (`chosen_by` says which rule applied). Writes `<ckpt-stem>.scaler.json`
    (+ `.pkl` with `pkl=True`) into `out_dir`, by default `recovered_dir(ckpt)`
    (`./ckreg-recovered/`, never inside the checkpoint's folder: the archive
    being audited stays as it was), under a name that is free (`-1`, `-2`,
    ... suffixes): an existing file is never replaced. The JSON records how it was recovered. Nothing is written when
    no recipe verifies or `write=False`.
    """
    _require_torch()
    ckpt = Path(ckpt)
    expect_acc = normalize_acc(expect_acc)
    recipes = tuple(recipes)
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise UsageError(f"unknown scaler recipe(s) {unknown}", hint=f"known: {', '.join(RECIPES)}")
    if not ckpt.exists():
        raise UsageError(f"checkpoint {ckpt} does not exist", path=str(ckpt))
    dataset = load_data(data)
    result = RecoverResult(ckpt=str(ckpt), data=_data_label(data), data_hash=getattr(dataset, "data_hash", None),
                           expect_acc=expect_acc, tolerance=tolerance)
    try:
        model = _load_model(ckpt)
    except AmbiguousFamilyError:
        raise
    except (CkregError, OSError) as exc:
        msg = exc.render() if isinstance(exc, CkregError) else f"{type(exc).__name__}: {exc}"
        result.reasons.append(f"does not load strictly into the zoo: {msg}")
        result.chosen_by = "none-verifies"
        return result
    cands, fitted = try_recipes(ckpt, dataset, expect_acc, tolerance, recipes, split=split, _model=model)
    result.candidates = cands
    best, rule = _choose(cands, expect_acc)
    result.chosen_by = rule
    if best is None:
        result.reasons.append("no recipe gives finite predictions")
        return result
    scaler, verification = fitted[best.recipe]
    result.recipe, result.accuracy, result.verification = best.recipe, best.accuracy, verification
    result.passed = rule != "none-verifies"
    if not result.passed:
        result.reasons.append(f"no recipe reaches the declared accuracy {expect_acc:.4f}; best is "
                              f"{best.recipe} at {best.accuracy:.4f}; nothing written")
        return result
    if rule == "best-accuracy":
        result.reasons.append(f"no accuracy declared: kept the most accurate recipe ({best.recipe}, {best.accuracy:.4f})")
    else:
        result.reasons.append(f"{best.recipe} reaches {best.accuracy:.4f} >= declared {expect_acc:.4f} - {tolerance:g}")
    if not write:
        return result
    recovery = {
        "recipe": best.recipe,
        "data_hash": result.data_hash,
        "data": result.data,
        "accuracy": best.accuracy,
        "n_episodes": verification.n_episodes,
        "split": split,
        "chosen_by": rule,
        "expect_acc": expect_acc,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": file_sha256(ckpt),
        "candidates": [c.model_dump() for c in cands],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ckreg_version": __version__,
    }
    json_path, pkl_path = write_recovered(scaler, ckpt, recovery, Path(out_dir) if out_dir else None, pkl=pkl)
    result.path, result.pkl_path, result.written = str(json_path), (str(pkl_path) if pkl_path else None), True
    verification.scaler = str(json_path)
    return result


# --------------------------------------------------------------------------- audit hook


def _short(path: str | None, ckpt: str) -> str | None:
    """A scaler path as seen from its checkpoint's folder (messages stay readable), absolute if far away."""
    if path is None:
        return None
    try:
        rel = os.path.relpath(path, Path(ckpt).parent)
    except ValueError:
        return str(path)
    return rel if not rel.startswith(".." + os.sep + "..") else str(path)


class Pair(BaseModel):
    """A checkpoint + scaler pair the audit found, with what the manifest declares for it."""

    ckpt: str
    scaler: str | None = None
    expect_acc: float | None = None
    tolerance: float | None = None
    model: str | None = None      # manifest model name, for messages
    target_source: str | None = None
    split: str | None = None      # where the headline accuracy is measured (default: the test split)


def _as_pair(item: Any) -> Pair:
    if isinstance(item, Pair):
        return item
    if isinstance(item, dict):
        return Pair(**item)
    if isinstance(item, (tuple, list)):
        fields = ["ckpt", "scaler", "expect_acc", "tolerance", "model"]
        return Pair(**{k: (str(v) if k in ("ckpt", "scaler") and v is not None else v)
                       for k, v in zip(fields, item)})
    return Pair(ckpt=str(item))


def verify_for_audit(pairs: Iterable[Any], data: Any, *, recipes: Iterable[str] = RECIPES,
                     tolerance: float = DEFAULT_TOLERANCE, split: str = DEFAULT_SPLIT,
                     results: list | None = None) -> list[Finding]:
    """The audit's `--data` hook: verify each pair; on failure, say whether a re-fitted scaler fixes it.

    `pairs` holds `Pair`s, dicts or `(ckpt, scaler, expect_acc[, tolerance[, model]])`
    tuples. Returns findings: `verify-failed`, `scaler-feature-mismatch`,
    `accuracy-below-declared` and, when a recipe makes the pair pass,
    `scaler-recovered` naming the recipe and the accuracy. Writes nothing
    (the audit is read-only). Each verified pair's `VerifyResult` is appended
    to `results` when given (the audit can show accuracies).
    """
    dataset = load_data(data)
    findings: list[Finding] = []
    models: dict[str, tuple] = {}
    for item in pairs:
        pair = _as_pair(item)
        tol = tolerance if pair.tolerance is None else pair.tolerance
        label = f"{pair.model}: " if pair.model else ""
        try:
            model = models.get(pair.ckpt) or _load_model(Path(pair.ckpt))
            models[pair.ckpt] = model
        except (CkregError, OSError) as exc:   # ambiguous family included: the audit reports, it does not ask
            msg = exc.render() if isinstance(exc, CkregError) else f"{type(exc).__name__}: {exc}"
            findings.append(Finding.make("verify-failed", f"{label}does not load strictly into the zoo: {msg}",
                                         path=pair.ckpt))
            continue
        res = None
        if pair.scaler is not None:
            try:
                res = verify_pair(pair.ckpt, pair.scaler, dataset, expect_acc=pair.expect_acc, tolerance=tol,
                                  split=pair.split or split, target_source=pair.target_source, _model=model)
            except (ScalerError, CkregError) as exc:
                findings.append(Finding.make("verify-failed", f"{label}scaler {pair.scaler} cannot be used: {exc.render()}",
                                             path=pair.ckpt))
            if res is not None:
                res.data = _data_label(data)
                if results is not None:
                    results.append(res)
                for f in res.findings:
                    findings.append(f.model_copy(update={"message": label + f.message}))
                if not res.loaded or res.finite is False or res.status == "verified":
                    continue
        # a failing, missing or (with nothing declared) unproven scaler: does a re-fitted one do better?
        cands, _ = try_recipes(pair.ckpt, dataset, pair.expect_acc, tol, recipes, split=pair.split or split,
                               _model=model)
        best, rule = _choose(cands, normalize_acc(pair.expect_acc))
        if best is None or rule == "none-verifies":
            continue
        hint = f"Run `ckreg scaler recover {pair.ckpt} --data {_data_label(data)}`"
        paired = _short(pair.scaler, pair.ckpt)
        if res is not None and res.status == "unverified":
            # nothing declared: speak only when a recipe is clearly better than the paired scaler,
            # which proves the scaler belongs to another training run (issue #5)
            if res.accuracy is None or best.accuracy < res.accuracy + RECOVERY_MARGIN:
                continue
            message = (f"{label}no accuracy is declared, but the paired scaler {paired} gives {res.accuracy:.4f} "
                       f"where re-fitting with recipe {best.recipe!r} gives {best.accuracy:.4f}: the scaler does "
                       f"not belong to this checkpoint. {hint}")
        else:
            was = (f"the paired scaler {paired} gives {res.accuracy:.4f}" if res is not None and res.accuracy is not None
                   else "it has no usable scaler")
            message = (f"{label}re-fitting the scaler with recipe {best.recipe!r} reaches accuracy {best.accuracy:.4f}"
                       + (f" (declared {normalize_acc(pair.expect_acc):.4f})" if pair.expect_acc is not None else "")
                       + f"; {was}. {hint}")
        findings.append(Finding.make(
            "scaler-recovered", message, path=pair.ckpt, expected=pair.scaler,
            actual={"recipe": best.recipe, "accuracy": round(best.accuracy, 6),
                    "paired_accuracy": None if res is None or res.accuracy is None else round(res.accuracy, 6)}))
    return findings


__all__ = [
    "VerifyResult", "RecoverResult", "ScalerCheck", "Candidate", "Pair",
    "verify_pair", "recover_scaler", "verify_for_audit", "try_recipes", "check_scaler",
    "find_sidecar_scaler", "load_data", "clear_data_cache", "normalize_acc", "write_recovered",
    "DEFAULT_TOLERANCE", "RECIPES",
]
