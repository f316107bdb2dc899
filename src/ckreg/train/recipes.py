"""Training recipes beyond the default AdamW run: SGD schedules, image inputs, distillation.

The lab's other experiments (Wide-ResNet teachers on Gramian-angular-field and
Markov-transition-field images, distilled into 1D signal students) need:

- `build_optimizer`: AdamW + ReduceLROnPlateau (the default), or SGD with
  momentum and weight decay under a cosine (lr -> lr_min over the epoch cap)
  or step schedule (x gamma every step_size epochs).
- `resolve_image_spec` / imaging options: the model sees `ckreg.data.imaging`
  images [N, methods x C, S, S] instead of signals.
- `Teacher` and `kd_loss`: (1 - lambda) CE(student, y) + lambda T^2
  KL(softmax(teacher / T) || softmax(student / T)) (Hinton et al.; torch's
  `kl_div(log_softmax(student / T), softmax(teacher / T))`). The teacher's
  logits are computed once, before the first step, on the teacher's own input:
  its scaler and the imaging recorded in its metadata are applied to the
  student's episodes, so a signal student learns from an image teacher.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError, UsageError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("plateau", "cosine", "step")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"
    schedule: str | None = None        # default: plateau for AdamW, cosine for SGD
    momentum: float = 0.9
    lr_min: float = 1e-4               # cosine floor (the notes: 0.05 down to 0.0001)
    step_size: int = 30
    gamma: float = 0.1

    def resolved_schedule(self) -> str:
        return self.schedule or ("cosine" if self.optimizer == "sgd" else "plateau")

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}", hint=f"one of {', '.join(OPTIMIZERS)}")
        if self.resolved_schedule() not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}", hint=f"one of {', '.join(SCHEDULES)}")
        if not (0 <= self.momentum < 1):
            raise UsageError(f"momentum must be in [0, 1) (got {self.momentum})")
        if not (self.lr_min >= 0 and math.isfinite(self.lr_min)):
            raise UsageError(f"lr_min must be >= 0 (got {self.lr_min})")
        if self.step_size < 1 or not (0 < self.gamma <= 1):
            raise UsageError(f"step schedule needs step_size >= 1 and 0 < gamma <= 1 "
                             f"(got {self.step_size}, {self.gamma})")

    def describe(self, lr: float, weight_decay: float, epochs: int, lr_factor: float, lr_patience: int) -> dict:
        sched = self.resolved_schedule()
        d: dict[str, Any] = {"optimizer": "SGD" if self.optimizer == "sgd" else "AdamW", "lr": float(lr),
                             "weight_decay": float(weight_decay),
                             "lr_schedule": {"plateau": "ReduceLROnPlateau", "cosine": "CosineAnnealingLR",
                                             "step": "StepLR"}[sched]}
        if self.optimizer == "sgd":
            d["momentum"] = float(self.momentum)
        if sched == "plateau":
            d.update(lr_factor=lr_factor, lr_patience=lr_patience)
        elif sched == "cosine":
            d.update(lr_min=float(self.lr_min), t_max=int(epochs))
        else:
            d.update(step_size=int(self.step_size), gamma=float(self.gamma))
        return d


def build_optimizer(model, cfg: OptimConfig, lr: float, weight_decay: float, epochs: int,
                    lr_factor: float, lr_patience: int):
    """(optimizer, scheduler, kind): call `sched.step(val_loss)` for "plateau", `sched.step()` otherwise."""
    import torch

    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    kind = cfg.resolved_schedule()
    if kind == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=lr_factor, patience=lr_patience)
    elif kind == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(epochs)), eta_min=cfg.lr_min)
    else:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return opt, sched, kind


# -- images -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImagingConfig:
    """Which fields, their size and MTF bins, and where the rescaling comes from (`ckreg.data.imaging`):
    `train-split` (per-channel range and MTF edges of the training split, `stats` once fitted) or
    `episode` (each series' own; what a recipe without `rescale` recorded)."""

    methods: tuple[str, ...]
    size: int = 64
    bins: int = 8
    rescale: str = "train-split"
    stats: Any = None                      # ckreg.data.imaging.ImageStats, fitted by the trainer

    def describe(self) -> dict:
        d: dict[str, Any] = {"methods": list(self.methods), "size": int(self.size), "bins": int(self.bins),
                             "rescale": self.rescale}
        if self.stats is not None:
            d["stats"] = self.stats.to_dict()
        return d

    def check(self) -> None:
        from ckreg.data.imaging import RESCALES

        if self.rescale not in RESCALES:
            raise UsageError(f"unknown image rescaling {self.rescale!r}", hint=f"one of {', '.join(RESCALES)}")

    def fitted(self, X, mask, rows) -> "ImagingConfig":
        """This config with the training split's statistics (`train-split`); unchanged for `episode`."""
        if self.rescale != "train-split" or self.stats is not None:
            return self
        from dataclasses import replace

        from ckreg.data.imaging import fit_stats

        return replace(self, stats=fit_stats(X, mask, rows, self.bins))

    @classmethod
    def from_recorded(cls, d: Any) -> "ImagingConfig | None":
        if not isinstance(d, dict) or not d.get("methods"):
            return None
        from ckreg.data.imaging import ImageStats

        stats = ImageStats.from_dict(d.get("stats"))
        rescale = str(d.get("rescale") or "episode")    # recorded before the choice existed: per episode
        if rescale == "train-split" and stats is None:
            raise SpecError("the recorded imaging says rescale train-split but holds no statistics")
        return cls(methods=tuple(d["methods"]), size=int(d.get("size", 64)), bins=int(d.get("bins", 8)),
                   rescale=rescale, stats=stats)

    def images(self, X, mask):
        """Images of raw episodes (the fields ignore the scaler), computed once per process and data."""
        from ckreg.data.imaging import cached_images

        if self.rescale == "train-split" and self.stats is None:
            raise UsageError("train-split imaging needs the training split's statistics (ImagingConfig.fitted)")
        return cached_images(X, mask, self.methods, self.size, self.bins,
                             self.stats if self.rescale == "train-split" else None)


def resolve_image_spec(family: str, overrides: dict[str, Any] | None, dataset: Any,
                       imaging: ImagingConfig) -> ArchSpec:
    """A 2D spec whose input is the images' channel count (methods x signal channels)."""
    overrides = dict(overrides or {})
    if family != "WRN":
        raise SpecError(f"--imaging feeds images [B, C, S, S]; only WRN takes them, not {family}",
                        hint="train WRN --set conv_dim=2 --imaging gasf")
    if overrides.get("conv_dim", 2) != 2:
        raise SpecError(f"--imaging needs a 2D WRN (got conv_dim={overrides['conv_dim']})", hint="--set conv_dim=2")
    c = len(imaging.methods) * dataset.n_channels
    if "input_size" in overrides and int(overrides["input_size"]) != c:
        raise SpecError(f"--set input_size={overrides['input_size']} but the images have {c} channels")
    k = dataset.num_classes
    if "num_classes" in overrides and int(overrides["num_classes"]) < k:
        raise SpecError(f"--set num_classes={overrides['num_classes']} but the data has {k} classes")
    overrides.update(conv_dim=2)
    overrides.setdefault("input_size", c)
    overrides.setdefault("num_classes", k)
    return ArchSpec.for_family(family, **overrides)


# -- distillation -----------------------------------------------------------------------------------

@dataclass
class Teacher:
    """A trained model to distil from: a checkpoint path (its scaler.json beside it) or a registry version."""

    path: str
    scaler_path: str | None = None
    ref: str | None = None                 # registry NAME@N, when it came from the registry
    spec: ArchSpec | None = None           # the registered spec (registry blobs carry no file name)
    weights_sha256: str | None = None
    _loaded: dict = field(default_factory=dict, repr=False)

    def recorded(self) -> tuple[dict, str | None]:
        """(recipe the trainer recorded, weights_sha256) from the teacher's metadata."""
        from ckreg.readers import read_checkpoint

        meta = read_checkpoint(self.path).metadata or {}
        st = meta.get("__metadata__") if isinstance(meta.get("__metadata__"), dict) else {}
        recipe: Any = {}
        if "ckreg.recipe" in st:
            try:
                recipe = json.loads(st["ckreg.recipe"])
            except ValueError:
                recipe = {}
        elif isinstance(meta.get("hyper_parameters"), dict):
            recipe = meta["hyper_parameters"]
        return (recipe if isinstance(recipe, dict) else {}), st.get("ckreg.weights_sha256")

    def load(self):
        """(module, spec, imaging or None, scaler or None, weights_sha256); raises CkregError for bad teachers."""
        if "v" in self._loaded:
            return self._loaded["v"]
        from ckreg import zoo
        from ckreg.inspect import inspect_path

        recipe, wsha = self.recorded()
        if self.spec is not None:
            from ckreg.zoo.io import load_module

            module, spec = load_module(self.spec, self.path), self.spec
        else:
            module, spec, _ = zoo.load_checkpoint(self.path)
        module.eval()
        wsha = self.weights_sha256 or wsha or inspect_path(self.path, hash_weights=True).weights_sha256
        scaler = None
        sp = self.scaler_path
        if sp is None and (Path(self.path).parent / "scaler.json").is_file():
            sp = str(Path(self.path).parent / "scaler.json")
        if sp is not None:
            from ckreg.scaler import load_scaler

            scaler = load_scaler(sp)
        imaging = ImagingConfig.from_recorded(recipe.get("imaging"))
        self._loaded["v"] = (module, spec, imaging, scaler, wsha)
        return self._loaded["v"]

    def describe(self) -> dict:
        _m, spec, imaging, _s, wsha = self.load()
        return {"ref": self.ref, "path": str(self.path), "weights_sha256": wsha, "family": spec.family,
                "imaging": imaging.describe() if imaging else None}

    def logits(self, X_raw, mask, batch_size: int = 256):
        """Teacher logits [N, K] (float32 numpy, read-only) for raw episodes, through the teacher's
        scaler and imaging.

        The teacher is frozen and the trainer does not augment, so the logits of
        the episodes are computed once and remembered on this object: the seeds
        of a distilled configuration share one computation.
        """
        import numpy as np

        from ckreg.data.imaging import images_key
        from ckreg.train import common

        module, spec, imaging, scaler, _w = self.load()
        X = np.asarray(X_raw, dtype=np.float32)
        key = ("logits", images_key(X, mask, (), 0, 0))
        if key in self._loaded:
            return self._loaded[key]
        mask = np.asarray(mask, dtype=np.uint8)
        if imaging is not None:     # the images are invariant to the scaler: made from the raw values
            inputs = imaging.images(X, mask)
        elif scaler is not None:
            common.check_scaler(spec, scaler, str(self.path))
            inputs = common.scale(scaler, X)
        else:
            raise UsageError("the teacher takes signals but has no scaler", path=str(self.path),
                             hint="put its scaler.json beside it, or use a registered teacher")
        if len(inputs):
            out = common.predict_logits(module, np.ascontiguousarray(inputs, dtype=np.float32), mask,
                                        batch_size).numpy()
        else:
            out = np.zeros((0, spec.num_classes), np.float32)
        out.setflags(write=False)
        self._loaded[key] = out
        return out


def check_kd(temperature: float, lam: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise UsageError(f"--kd-temperature must be a positive number (got {temperature})")
    if not (0 <= lam <= 1):
        raise UsageError(f"--kd-lambda must be in [0, 1] (got {lam})")


def kd_loss(student_logits, y, teacher_logits, temperature: float, lam: float):
    """(1 - lam) CE(student, y) + lam T^2 KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    from torch.nn import functional as F

    T = float(temperature)
    ce = F.cross_entropy(student_logits, y)
    kl = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                  reduction="batchmean")
    return (1.0 - lam) * ce + lam * T * T * kl


# -- declared recipes (manifest `training`, retrain) ------------------------------------------------

RECIPE_KEYS = ("optimizer", "schedule", "momentum", "lr_min", "step_size", "gamma", "imaging", "image_size",
               "mtf_bins", "image_rescale", "teacher", "kd_temperature", "kd_lambda", "seeds")


def recipe_kwargs(training: dict[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """`ckreg.train.train` keywords (plain JSON values) from a declared recipe's optimizer/imaging/teacher fields.

    `teacher` paths are relative to `base` (the manifest's folder).
    """
    out: dict[str, Any] = {}
    optim = {k: training[k] for k in ("optimizer", "schedule", "momentum", "lr_min", "step_size", "gamma")
             if training.get(k) is not None}
    if optim.get("optimizer") == "adam":       # the manifest format allows it; the trainer has AdamW
        optim["optimizer"] = "adamw"
    if optim:
        out["optim"] = optim
    if training.get("imaging"):
        out["imaging"] = {"methods": list(_methods(training["imaging"])), "size": int(training.get("image_size") or 64),
                          "bins": int(training.get("mtf_bins") or 8),
                          "rescale": str(training.get("image_rescale") or "train-split")}
    if training.get("teacher"):
        out["teacher"] = teacher_path_or_ref(str(training["teacher"]), base)
        for k in ("kd_temperature", "kd_lambda"):
            if training.get(k) is not None:
                out[k] = float(training[k])
    return out


def teacher_path_or_ref(teacher: str, base: str | Path | None = None) -> str:
    """A declared teacher: the path (relative to `base`) when it exists or names a folder, else the
    text unchanged, a registry reference (NAME, NAME@best, NAME@3) resolved when training starts."""
    t = Path(teacher)
    if base is not None and not t.is_absolute():
        t = Path(base) / t
    if t.exists() or "/" in teacher or "\\" in teacher or teacher.endswith((".safetensors", ".ckpt", ".pt", ".pth")):
        return str(t)
    return teacher


def is_registry_ref(teacher: Any) -> bool:
    """True for a declared teacher that `teacher_path_or_ref` left as a registry reference."""
    return isinstance(teacher, str) and not Path(teacher).is_absolute() and not Path(teacher).exists() \
        and "/" not in teacher and "\\" not in teacher


def _methods(spec: Any) -> tuple[str, ...]:
    from ckreg.data.imaging import parse_imaging

    return tuple(spec) if isinstance(spec, (list, tuple)) else parse_imaging(str(spec))


def coerce(optim: Any = None, imaging: Any = None, teacher: Any = None):
    """Accept plain values where objects are expected (declared recipes are JSON)."""
    if isinstance(optim, dict):
        optim = OptimConfig(**optim)
    if isinstance(imaging, str):
        imaging = ImagingConfig(_methods(imaging))
    elif isinstance(imaging, dict):
        imaging = ImagingConfig(_methods(imaging["methods"]), int(imaging.get("size", 64)), int(imaging.get("bins", 8)),
                                str(imaging.get("rescale") or "train-split"))
    if isinstance(teacher, (str, Path)):
        p = Path(teacher)
        if p.is_dir():
            p = p / "weights.safetensors"
        teacher = Teacher(path=str(p))
    return optim, imaging, teacher
