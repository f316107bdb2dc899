"""The manifest: what an archive is supposed to hold (issue #4).

A manifest declares the models that should exist: name, family and the
hyperparameters that matter (partial declarations are fine; names are the
`ckreg.arch.ArchSpec` fields), the expected parameter count, where the
checkpoint lives (a path or glob relative to the audited root), its scaler,
the dataset and preprocessing recipe, declared metrics, the training recipe
(used by `ckreg retrain`, issue #5) and tags.

Validation happens before any heavy work and reports every problem at once,
each as `FILE:LINE: models[2].family: what is wrong; what was expected`
(pydantic locations mapped to lines by `ckreg.yamlio.line_of`). Torch-free.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import types
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model,
                      field_validator, model_validator)

from ckreg.arch import FAMILIES, FAMILY_FIELDS, ArchSpec
from ckreg.errors import CkregError, FamilyError, ManifestError, SpecError
from ckreg.families import find as find_family
from ckreg.families import names as family_names
from ckreg.families import registry

MANIFEST_VERSION = 1
MAX_REPORTED_ERRORS = 25

# -- the declaration models ---------------------------------------------------------------------

# Hyperparameters are exactly ArchSpec's fields (the shared vocabulary), all optional:
# a declaration states only what matters; the rest is read from the weights.
_HP_FIELDS: dict[str, Any] = {
    name: (Optional[field.annotation], None)
    for name, field in ArchSpec.model_fields.items()
    if name != "family"
}
Hyperparameters = create_model(  # type: ignore[call-overload]
    "Hyperparameters",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Declared hyperparameters (any subset of ArchSpec's fields; unknown names are errors).",
    **_HP_FIELDS,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Split(_Strict):
    """How episodes are split for training and evaluation (`ckreg.data.split`)."""

    seed: int = 0
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)


class Preprocessing(_Strict):
    """How raw episodes become model input (spec, "Data the SignGlove families were trained on")."""

    scaler: Literal["standard"] = "standard"
    recipe: Literal["upstream", "train-split"] = Field(
        "upstream", description="How the scaler is fitted: `upstream` (every step of every episode, padding "
                                "included) or `train-split` (the training split only).")
    T: int = Field(87, gt=0, description="Episodes are cut or padded to T rows.")
    pad_value: float = Field(1.0, description="Raw value of padding rows, before scaling.")
    keep_degenerate: bool = False


class Dataset(_Strict):
    """A dataset the models were trained on (path relative to the manifest file)."""

    path: Optional[str] = None
    format: Literal["auto", "signglove", "npz"] = "auto"
    classes: Optional[list[str]] = None
    channels: Optional[list[str]] = None
    split: Split = Field(default_factory=Split)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)


class Metrics(_Strict):
    """Declared metrics. Accuracy is a fraction (0.9913, not 99.13)."""

    accuracy: Optional[float] = None
    tolerance: float = Field(0.005, ge=0, le=1, description="A pair passes at accuracy >= declared - tolerance.")
    split: Literal["all", "train", "val", "test"] = Field(
        "test", description="Where the headline accuracy is measured: the held-out test split (default) "
                            "of the split the checkpoint records, else the dataset's split.")

    @field_validator("accuracy")
    @classmethod
    def _fraction(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not 0.0 <= v <= 1.0:
            hint = f" (did you mean {v / 100:g}?)" if 1.0 < v <= 100.0 else ""
            raise ValueError(f"accuracy is a fraction between 0 and 1, got {v:g}{hint}")
        return v


class Training(_Strict):
    """The training recipe (`ckreg retrain`, issue #5). Unset fields take the trainer's defaults."""

    epochs: Optional[int] = Field(None, gt=0)
    lr: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, gt=0)
    seed: Optional[int] = Field(None, ge=0)
    seeds: Optional[list[int]] = Field(
        None, min_length=1, description="Train one run per seed (distinct, >= 0): `ckreg retrain` registers the "
        "runs as versions of the model and aliases `@best` the best run by validation accuracy, never by test.")
    optimizer: Optional[Literal["adam", "adamw", "sgd"]] = Field(
        None, description="adamw or sgd (the bundled trainer trains `adam` as AdamW).")
    weight_decay: Optional[float] = Field(None, ge=0)
    scheduler: Optional[str] = None
    patience: Optional[int] = Field(None, gt=0, description="Early-stopping patience in epochs.")
    monitor: Optional[str] = None
    gradient_clip: Optional[float] = Field(None, gt=0)
    # SGD schedules, image teachers, distillation (docs/recipes.md)
    schedule: Optional[Literal["plateau", "cosine", "step"]] = None
    momentum: Optional[float] = Field(None, ge=0, lt=1)
    lr_min: Optional[float] = Field(None, ge=0, description="Cosine schedule: the learning rate at the epoch cap.")
    step_size: Optional[int] = Field(None, gt=0)
    gamma: Optional[float] = Field(None, gt=0, le=1)
    imaging: Optional[str] = Field(None, pattern=r"^(gasf|gadf|mtf)(\+(gasf|gadf|mtf))*$",
                                   description="Train on images: gasf, gadf, mtf, or several joined by '+'.")
    image_size: Optional[int] = Field(None, ge=2)
    mtf_bins: Optional[int] = Field(None, ge=2)
    image_rescale: Optional[Literal["train-split", "episode"]] = Field(
        None, description="Image range and MTF edges: per channel from the training split (the default; keeps "
        "each signal's level) or each series' own.")
    teacher: Optional[str] = Field(None, description="What to distil from: a checkpoint or run folder (relative to "
                                   "the manifest), or a registry reference (NAME, NAME@best, NAME@3) in the "
                                   "registry `ckreg retrain` registers into.")
    kd_temperature: Optional[float] = Field(None, gt=0)
    kd_lambda: Optional[float] = Field(None, ge=0, le=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: Optional[list[int]]) -> Optional[list[int]]:
        if v is not None and (any(s < 0 for s in v) or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be distinct non-negative integers, got {v}")
        return v

    @model_validator(mode="after")
    def _seed_or_seeds(self) -> "Training":
        if self.seed is not None and self.seeds is not None:
            raise ValueError("give `seed` (one run) or `seeds` (one run per seed), not both")
        return self


class Defaults(_Strict):
    """Applied to every model that does not say otherwise."""

    dataset: Optional[str] = None
    training: Optional[Training] = None
    metrics: Optional[Metrics] = None
    tags: list[str] = Field(default_factory=list)


class ModelDecl(_Strict):
    """One model the archive should hold.

    Its architecture is one of: `family` (any registered family) + `hyperparameters`;
    `module` ("package.module:ClassOrFactory") + `kwargs`, expected layout read from the
    manifest's lock file (`ckreg manifest lock`); `reference` (a checkpoint whose layout
    is the expectation, relative to the manifest's folder).
    """

    name: str = Field(min_length=1)
    family: Optional[str] = Field(None, description="A registered family: built-in, plug-in, family file or "
                                  "this manifest's families: section.")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)  # type: ignore[valid-type]
    module: Optional[str] = Field(None, description="\"package.module:ClassOrFactory\" building the model "
                                  "(an nn.Module); run `ckreg manifest lock` after changing it.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for `module`.")
    reference: Optional[str] = Field(None, description="A reference checkpoint whose layout is the expectation "
                                     "(relative to the manifest's folder).")
    family_hparams: dict[str, Any] = Field(default_factory=dict, exclude=True,
                                           description="(internal) hyperparameters of a declared family")
    params: Optional[int] = Field(None, gt=0, description="Expected parameter count (trainable elements).")
    params_include_buffers: bool = Field(
        False, description="True when `params` counts BatchNorm buffers too (as the SignGlove design notes did).")
    path: Optional[str] = Field(None, description="Checkpoint path or glob, relative to the audited root.")
    scaler: Optional[str] = Field(None, description="Scaler path, relative to the audited root.")
    dataset: Optional[str] = Field(None, description="A key of the manifest's `datasets`.")
    metrics: Optional[Metrics] = None
    training: Optional[Training] = None
    tags: list[str] = Field(default_factory=list)
    description: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _declared_family(cls, data: Any) -> Any:
        """A declared family's hyperparameters are its own names, not ArchSpec's fields."""
        if isinstance(data, dict):
            fam = data.get("family")
            if isinstance(fam, str) and fam not in FAMILIES and find_family(fam) is not None:
                data = dict(data)
                hp = data.pop("hyperparameters", None)
                data["family_hparams"] = dict(hp) if isinstance(hp, dict) else ({} if hp is None else hp)
        return data

    @property
    def kind(self) -> str:
        """"family", "module" or "reference"."""
        return "module" if self.module else "reference" if self.reference else "family"

    @property
    def label(self) -> str:
        """What the declaration says the model is: its family, or (module/reference) its own name."""
        return self.family if self.family else self.name

    def declared(self) -> dict[str, Any]:
        """Only the hyperparameters this declaration states."""
        if self.family_hparams:
            return {k: v for k, v in self.family_hparams.items() if v is not None}
        return {k: v for k, v in self.hyperparameters.model_dump().items() if v is not None}  # type: ignore[attr-defined]

    def spec(self, observed: dict[str, Any] | None = None) -> ArchSpec:
        """The declared architecture: the family's reference configuration, then what was
        observed in a file (for what the declaration leaves open), then what is declared."""
        if self.family is None:
            raise SpecError(f"{self.name} declares a {self.kind}, not a family")
        if self.family not in FAMILIES:
            rec = find_family(self.family)
            allowed_d = set(rec.hyperparameters) if rec is not None else set()
            merged = {k: v for k, v in (observed or {}).items() if k in allowed_d and v is not None}
            merged.update(self.declared())
            return ArchSpec.for_family(self.family, **merged)
        allowed = FAMILY_FIELDS[self.family] | {"input_size", "num_classes", "dropout", "pool"}
        merged = {k: v for k, v in (observed or {}).items() if k in allowed and v is not None}
        merged.update(self.declared())
        return ArchSpec.for_family(self.family, **merged)

    def matches_path(self, relpath: str) -> bool:
        """True when `relpath` (posix, relative to the audited root) is this declaration's path or matches its glob."""
        return self.path is not None and path_matches(self.path, relpath)


class Manifest(_Strict):
    """The whole manifest file."""

    version: Literal[1] = MANIFEST_VERSION
    name: Optional[str] = None
    description: Optional[str] = None
    root: Optional[str] = Field(
        None, description="Default archive root the model paths are relative to, relative to this file "
                          "(used when no root is given, e.g. by `ckreg retrain`; the audit takes its PATH).")
    min_accuracy: Optional[float] = Field(
        None, description="Accuracy (a fraction) every model without a declared `metrics.accuracy` must reach "
                          "to be verified; without either, a pair is at best `unverified`.")
    datasets: dict[str, Dataset] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    families: list[dict[str, Any]] = Field(
        default_factory=list, description="Families declared for this manifest's models (docs/families.md format).")
    models: list[ModelDecl] = Field(min_length=1)

    @field_validator("min_accuracy")
    @classmethod
    def _min_fraction(cls, v: Optional[float]) -> Optional[float]:
        return Metrics._fraction(v)

    _source: Optional[str] = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _text: Optional[str] = PrivateAttr(default=None)

    @property
    def source(self) -> Optional[str]:
        """The file this manifest was loaded from (as given), if any."""
        return self._source

    @property
    def text(self) -> Optional[str]:
        """The YAML it was parsed from (a sharded audit records it for the merge), if any."""
        return self._text

    def line_of_model(self, name: str) -> Optional[int]:
        """The line where a model's declaration starts, for locating findings (SARIF regions)."""
        return self._lines.get(name)

    def model(self, name: str) -> ModelDecl:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def training_for(self, model: ModelDecl) -> Training:
        """The model's training recipe over the manifest's defaults."""
        base = self.defaults.training.model_dump(exclude_none=True) if self.defaults.training else {}
        own = model.training.model_dump(exclude_none=True) if model.training else {}
        if "seed" in own or "seeds" in own:    # a model's seed(s) replace the defaults' seed or seeds
            base.pop("seed", None)
            base.pop("seeds", None)
        base.update(own)
        return Training(**base)

    def metrics_for(self, model: ModelDecl) -> Metrics:
        base = self.defaults.metrics.model_dump(exclude_unset=True) if self.defaults.metrics else {}
        base.update(model.metrics.model_dump(exclude_unset=True) if model.metrics else {})
        return Metrics(**base)

    def accuracy_target(self, model: ModelDecl, min_acc: Optional[float] = None) -> tuple[Optional[float], float, Optional[str]]:
        """(target accuracy, tolerance, where it comes from) for a model: its declared `metrics.accuracy`
        (with its tolerance), else `min_acc` (`--min-acc`), else the manifest's `min_accuracy`, both
        without tolerance; (None, 0, None) when nothing sets one (the pair can then only be unverified)."""
        metrics = self.metrics_for(model)
        if metrics.accuracy is not None:
            return metrics.accuracy, metrics.tolerance, "declared accuracy"
        if min_acc is not None:          # the command line over the file
            return min_acc, 0.0, "--min-acc"
        if self.min_accuracy is not None:
            return self.min_accuracy, 0.0, "manifest min_accuracy"
        return None, 0.0, None

    def dataset_for(self, model: ModelDecl) -> Optional[Dataset]:
        key = model.dataset or self.defaults.dataset
        return self.datasets.get(key) if key else None

    def dataset_path(self, model: ModelDecl) -> Optional[Path]:
        """The model's dataset path, resolved against the manifest's folder."""
        ds = self.dataset_for(model)
        if ds is None or ds.path is None:
            return None
        base = Path(self._source).parent if self._source else Path(".")
        return (base / ds.path)

    def tags_for(self, model: ModelDecl) -> list[str]:
        return list(dict.fromkeys([*self.defaults.tags, *model.tags]))

    # -- module: and reference: declarations --
    @property
    def base_dir(self) -> Path:
        return Path(self._source).parent if self._source else Path(".")

    @property
    def lock_path(self) -> Path:
        """`<manifest stem>.lock.json` beside the manifest (written by `ckreg manifest lock`)."""
        src = Path(self._source or "manifest.yaml")
        return src.with_name(src.stem + ".lock.json")

    def read_lock(self) -> dict[str, Any]:
        """The lock's per-model entries for every `module:` model; ManifestError when missing or stale."""
        mods = [m for m in self.models if m.module]
        if not mods:
            return {}
        fix = f"run `ckreg manifest lock {self._source or 'MANIFEST'}` (needs the [train] extra)"
        path = self.lock_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path}: no lock file for the module: models "
                                f"({', '.join(m.name for m in mods)})", hint=fix) from None
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: unreadable lock file: {exc}", hint=fix) from None
        entries = data.get("models") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise ManifestError(f"{path}: not a ckreg lock file (no models)", hint=fix)
        out = {}
        for m in mods:
            e = entries.get(m.name)
            if not isinstance(e, dict) or not isinstance(e.get("keys"), dict):
                raise ManifestError(f"{path}: no entry for model {m.name!r}; the lock is stale", hint=fix)
            if e.get("architecture_sha256") != architecture_sha256(m):
                raise ManifestError(f"{path}: model {m.name!r} changed since the lock was written "
                                    "(module or kwargs differ); the lock is stale", hint=fix)
            out[m.name] = e
        return out

    def expected_layouts(self) -> dict[str, dict[str, Any]]:
        """name -> {"keys": {key: [dtype, shape]}, "params", "buffers", "source"} for module:/reference: models.

        Torch-free: module: models come from the lock, reference: models from reading the
        reference checkpoint inertly. ManifestError when either cannot be had.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, e in self.read_lock().items():
            keys = {k: [v.get("dtype"), list(v.get("shape", []))] for k, v in e["keys"].items()}
            out[name] = {"keys": keys, "params": e.get("params"), "buffers": e.get("buffers"),
                         "source": f"{self.lock_path.name} ({e.get('module')})"}
        for m in self.models:
            if not m.reference:
                continue
            ref = self.base_dir / m.reference
            from ckreg.readers import read_checkpoint

            try:
                result = read_checkpoint(str(ref))
            except CkregError as exc:
                raise ManifestError(f"{self._source}: models {m.name!r} reference {m.reference}: {exc.render()}",
                                    hint="give a readable checkpoint path, relative to the manifest's folder") from None
            except OSError as exc:
                raise ManifestError(f"{self._source}: models {m.name!r} reference {m.reference}: {exc}",
                                    hint="give a readable checkpoint path, relative to the manifest's folder") from None
            out[m.name] = {"keys": {k: [r.dtype, list(r.shape)] for k, r in result.tensors.items()},
                           "params": None, "buffers": None, "source": f"reference {m.reference}"}
        return out


_MODULE_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def architecture_sha256(decl: ModelDecl) -> str:
    """Hash of a module: declaration's architecture block (module + kwargs), recorded in the lock."""
    import hashlib

    block = {"module": decl.module, "kwargs": _plain(decl.kwargs)}
    return hashlib.sha256(json.dumps(block, sort_keys=True, default=str).encode()).hexdigest()


# -- paths and globs ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` and `?` stay inside one path segment, `**/` spans folders (gitignore-like), `[...]` classes."""
    i, out = 0, []
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def path_matches(pattern: str, relpath: str) -> bool:
    """Does a posix path relative to the root match a manifest path or glob?"""
    pattern = pattern.removeprefix("./")
    if not is_glob(pattern):
        return PurePosixPath(pattern) == PurePosixPath(relpath)
    return _glob_regex(pattern).match(relpath) is not None


# -- loading and validation ---------------------------------------------------------------------

def _loc_str(loc: tuple) -> str:
    from ckreg import yamlio   # PyYAML only where a manifest is parsed (the audit of a cached tree has none)

    return yamlio.loc_str(loc, top="(top level)")


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...]/list[...]/dict[..., X], if any."""
    origin = get_origin(annotation)
    if origin is None:
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin in (list, tuple, set):
        return _unwrap(args[0]) if args else None
    if origin is dict:
        return _unwrap(args[-1]) if args else None
    if origin is Union or origin is types.UnionType:
        for a in args:
            inner = _unwrap(a)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """Which declaration model a location points into (to list the fields it expects)."""
    cls: Any = Manifest
    pending_container = False
    for part in loc:
        if isinstance(part, int) or pending_container:
            pending_container = False
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        pending_container = get_origin(ann) is dict
        cls = _unwrap(ann)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _describe(err: dict) -> str:
    """One pydantic error in words, with what was expected."""
    kind, loc, msg = err.get("type", ""), tuple(err.get("loc", ())), err.get("msg", "invalid")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        expected = f"; expected one of: {', '.join(parent.model_fields)}" if parent else ""
        if parent is not None and isinstance(loc[-1], str):
            close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
            if close:
                expected += f" (did you mean {close[0]!r}?)"
        return f"unknown field {loc[-1]!r}{expected}"
    if kind == "missing":
        return "required field is missing"
    if kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    text = msg[0].lower() + msg[1:] if msg else msg
    if kind not in ("missing", "value_error") and "input" in err and not isinstance(err["input"], (dict, list)):
        text += f" (got {err['input']!r})"
    return text


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _check_relative(value: str | None) -> str | None:
    if value is None:
        return None
    p = PurePosixPath(value.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", value):
        return f"expected a path relative to the audited root, got the absolute path {value!r}"
    if ".." in p.parts:
        return f"expected a path inside the audited root, got {value!r} (no '..')"
    return None


def _semantic_errors(manifest: Manifest) -> list[tuple[tuple, str]]:
    """Checks pydantic cannot express: families, which hyperparameters a family has, references."""
    from ckreg.inspect.layouts import expected_layout  # manifest -> inspect points inward

    errors: list[tuple[tuple, str]] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(manifest.models):
        base = ("models", i)
        if m.name in seen:
            errors.append((base + ("name",), f"duplicate model name {m.name!r} (also models[{seen[m.name]}])"))
        seen.setdefault(m.name, i)
        for field in ("path", "scaler"):
            problem = _check_relative(getattr(m, field))
            if problem:
                errors.append((base + (field,), problem))
        key = m.dataset
        if key is not None and key not in manifest.datasets:
            known = ", ".join(manifest.datasets) or "none declared"
            errors.append((base + ("dataset",), f"unknown dataset {key!r}; expected a key of `datasets` ({known})"))
        kinds = [k for k in ("family", "module", "reference") if getattr(m, k)]
        if len(kinds) != 1:
            errors.append((base, "declare one architecture: family: (with hyperparameters), module: (with kwargs) "
                                 f"or reference:; got {' and '.join(kinds) if kinds else 'none'}"))
            continue
        if m.family is None:
            if m.declared():
                errors.append((base + ("hyperparameters",), f"hyperparameters go with family:; a {m.kind}: "
                               "model takes " + ("kwargs" if m.module else "its layout from the reference")))
            if m.kwargs and not m.module:
                errors.append((base + ("kwargs",), "kwargs go with module:"))
            if m.module and not _MODULE_PATH.match(m.module):
                errors.append((base + ("module",), f"expected \"package.module:ClassOrFactory\", got {m.module!r}"))
            continue
        problem = _family_problem(m.family)
        if problem:
            errors.append((base + ("family",), problem))
            continue
        if m.family not in FAMILIES:
            rec = find_family(m.family)
            bad = False
            for hp, value in m.family_hparams.items():
                if hp not in rec.hyperparameters:
                    bad = True
                    close = difflib.get_close_matches(str(hp), list(rec.hyperparameters), n=1)
                    errors.append((base + ("hyperparameters", hp),
                                   f"family {m.family} has no hyperparameter {hp!r}"
                                   + (f" (did you mean {close[0]!r}?)" if close else "")
                                   + f"; expected one of: {', '.join(rec.hyperparameters)}"))
                elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    bad = True
                    errors.append((base + ("hyperparameters", hp), f"expected an integer, got {value!r}"))
            if bad:
                continue
            spec = m.spec()
            if all(v is not None for v in (spec.hparams or {}).values()):
                try:
                    expected_layout(spec)
                except CkregError as exc:
                    errors.append((base + ("hyperparameters",), f"not a valid {m.family}: {exc}"))
            continue
        allowed = FAMILY_FIELDS[m.family] | {"input_size", "num_classes", "dropout", "pool"}
        bad = False
        for hp in m.declared():
            if hp not in allowed:
                bad = True
                errors.append((base + ("hyperparameters", hp),
                               f"family {m.family} has no hyperparameter {hp!r}; expected one of: {', '.join(sorted(allowed))}"))
        if bad:
            continue
        try:
            expected_layout(m.spec())
        except CkregError as exc:
            errors.append((base + ("hyperparameters",), f"not a valid {m.family}: {exc}"))
    if manifest.defaults.dataset is not None and manifest.defaults.dataset not in manifest.datasets:
        errors.append((("defaults", "dataset"), f"unknown dataset {manifest.defaults.dataset!r}; expected a key of `datasets`"))
    return errors


def _family_problem(family: str) -> str | None:
    known = family_names()
    if family in known:
        return None
    close = difflib.get_close_matches(family, known, n=1, cutoff=0.5)
    close = close or [f for f in known if f.lower() == family.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown family {family!r}{hint}; expected one of: {', '.join(known)} "
            "(or declare it under families:)")


def _raw_family_problems(data: Any, already: set) -> list[tuple[tuple, str]]:
    """Family names checked on the raw YAML too, so one run reports them with the structural errors."""
    out: list[tuple[tuple, str]] = []
    models = data.get("models") if isinstance(data, dict) else None
    for i, m in enumerate(models if isinstance(models, list) else []):
        fam = m.get("family") if isinstance(m, dict) else None
        loc = ("models", i, "family")
        if isinstance(fam, str) and loc not in already:
            problem = _family_problem(fam)
            if problem:
                out.append((loc, problem))
    return out


def _raise(source: str, data: Any, problems: list[tuple[tuple, str]]) -> None:
    from ckreg import yamlio

    lines = []
    for loc, text in problems[:MAX_REPORTED_ERRORS]:
        line = yamlio.line_of(data, loc)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {_loc_str(loc)}: {text}")
    more = len(problems) - MAX_REPORTED_ERRORS
    if more > 0:
        lines.append(f"... and {more} more")
    head = f"invalid manifest ({len(problems)} problem{'s' if len(problems) != 1 else ''})"
    err = ManifestError(head + ":\n  " + "\n  ".join(lines), hint="run `ckreg manifest schema` for the format")
    err.problems = [(_loc_str(loc), yamlio.line_of(data, loc), text) for loc, text in problems]  # type: ignore[attr-defined]
    raise err


def _register_families(source: str, data: Any) -> list:
    """A manifest's `families:` section, registered before its models are validated (they may use them)."""
    from ckreg.families import parse_families

    raw = data.get("families") if isinstance(data, dict) else None
    if raw is None:
        return []
    try:
        fams = parse_families(raw, source, kind="manifest", data=data)
    except FamilyError as exc:
        raise ManifestError(str(exc), hint="see docs/families.md for the format") from None
    out = []
    for fam in fams:
        try:
            out.append(registry().add(fam))
        except FamilyError as exc:
            raise ManifestError(f"{source}: {exc}", hint=exc.hint) from None
    return out


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """Parse and validate manifest YAML; raise ManifestError naming file, line and field path."""
    from ckreg import yamlio

    try:
        data = yamlio.load_text(text)
    except Exception as exc:  # yaml.YAMLError and friends
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        raise ManifestError(f"{source}: the manifest is empty; expected a mapping with a `models` list",
                            hint="run `ckreg manifest schema` for the format")
    if not isinstance(data, dict):
        raise ManifestError(f"{source}:1: expected a mapping with a `models` list at the top level, "
                            f"got {type(data).__name__}")
    declared = _register_families(source, data)
    try:
        manifest = Manifest.model_validate(_plain(data))
    except ValidationError as exc:
        found = [(tuple(e["loc"]), _describe(e)) for e in exc.errors()]
        _raise(source, data, found + _raw_family_problems(data, {loc for loc, _ in found}))
    problems = _semantic_errors(manifest)
    if problems:
        _raise(source, data, problems)
    manifest._source = source
    manifest._text = text
    models = data.get("models") if isinstance(data, dict) else None
    if isinstance(models, list):
        for m, raw in zip(manifest.models, models):
            if getattr(raw, "line", None):
                manifest._lines[m.name] = raw.line
    return manifest


def load_manifest(path: str | Path) -> Manifest:
    """Load and validate a manifest file (raises ManifestError for any problem, before heavy work)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory; expected a manifest YAML file") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_manifest(text, source=str(path))


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of the manifest format (for editors: yaml-language-server `$schema`)."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ckreg manifest"
    return schema


__all__ = [
    "Manifest", "ModelDecl", "Hyperparameters", "Dataset", "Preprocessing", "Split", "Metrics", "Training",
    "Defaults", "load_manifest", "parse_manifest", "manifest_schema", "path_matches", "is_glob", "MANIFEST_VERSION",
]
