"""Trainer runs into the registry: a teacher by reference, and several seeds as one model.

- `resolve_teacher(ref, registry)`: a checkpoint path (a run folder means its
  weights.safetensors) or a registry reference (NAME, NAME@alias, NAME@N).
- `register_runs(registry, seeds_result, name)`: every seed's run is a version
  of `name` (checkpoint + scaler; provenance: recipe, seed, validation and
  test accuracy, the group), and `alias` (default `best`) points at the best
  run BY VALIDATION, never by test. A student's recorded distilled-from edge is
  stored by `Registry.register` (lineage provenance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ckreg.errors import RegistryError, UsageError
from ckreg.registry.store import Registry
from ckreg.train.recipes import Teacher
from ckreg.train.seeds import SeedsResult


def resolve_teacher(ref: str, registry: str | Path | None = None) -> Teacher:
    p = Path(ref)
    if p.is_dir():
        for name in ("weights.safetensors", "model.ckpt"):
            if (p / name).is_file():
                return Teacher(path=str(p / name))
        raise UsageError("no weights.safetensors or model.ckpt in this folder", path=str(p),
                         hint="--teacher takes a checkpoint, a training output folder or a registry reference")
    if p.is_file():
        return Teacher(path=str(p))
    reg = Registry(registry)
    if not reg.exists():
        raise UsageError(f"--teacher {ref}: no such file, and no registry at {reg.path} to look it up in",
                         hint="give a checkpoint path, or --registry DIR")
    try:
        v = reg.resolve(ref)
    except RegistryError as exc:
        raise UsageError(f"--teacher {ref}: not a file, and not in the registry ({exc})") from None
    return Teacher(path=str(reg.blob_path(v.sha256)), ref=v.ref, spec=v.spec, weights_sha256=v.weights_sha256,
                   scaler_path=str(reg.blob_path(v.scaler.sha256)) if v.scaler else None)


def register_runs(registry: str | Path | None, result: SeedsResult, name: str, alias: str = "best") -> dict[str, Any]:
    """Register each run of `result` as a version of `name`; alias the best by validation."""
    reg = Registry(registry)
    refs: dict[str, str] = {}
    group = str(Path(result.out).resolve())
    for r in result.results:
        run = next(x for x in result.runs if x.seed == r.seed)
        prov = {"recipe": r.metrics.get("recipe"), "seed": r.seed, "group": group, "seeds": [x.seed for x in result.runs],
                "val_accuracy": run.val_accuracy, "best_val_loss": r.best_val_loss, "test_accuracy": r.test_accuracy,
                "data_hash": r.data_hash, "class_names": (r.metrics.get("data") or {}).get("classes")}
        if not prov["class_names"]:
            prov.pop("class_names")
        # an image model takes GAF/MTF images, not scaled signals: its scaler is no part of the pair
        scaler = None if (r.metrics.get("recipe") or {}).get("imaging") else r.files.get("scaler_json")
        v = reg.add(r.files["weights"], scaler, name=name,
                    spec=r.spec, provenance=prov)
        refs[str(r.seed)] = v.ref
    best = None
    if result.best_seed is not None and str(result.best_seed) in refs:
        best = reg.alias(name, alias, int(refs[str(result.best_seed)].split("@")[1]))
    return {"name": name, "versions": refs, "alias": alias, "best": None if best is None else best.ref,
            "best_seed": result.best_seed}


def train_runs(family: str, data: Any, out: str | Path, seeds: Any, *, register: str | None = None,
               registry: str | Path | None = None, alias: str = "best", **kwargs: Any) -> dict[str, Any]:
    """`ckreg train --seeds/--register`: the seed runs, then (optionally) their registration."""
    from ckreg.registry.model import check_name
    from ckreg.train.seeds import train_seeds

    if register is not None:
        check_name(register)   # before hours of training, not after
    result = train_seeds(family, data, out, seeds, **kwargs)
    payload: dict[str, Any] = {"seeds": result.model_dump(mode="json")}
    if register is not None:
        payload["registered"] = register_runs(registry, result, register, alias)
    return payload
