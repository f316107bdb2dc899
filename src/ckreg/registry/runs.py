"""Trainer runs into the registry: a teacher by reference, and several seeds as one model.

- `resolve_teacher(ref, registry)`: a checkpoint path (a run folder means its
  weights.safetensors) or a registry reference (NAME, NAME@alias, NAME@N).
- `register_runs(registry, seeds_result, name, min_acc=X)`: every seed's run
  is verified on its held-out test split against X; each verified run is a
  version of `name` (checkpoint + scaler; provenance: recipe, seed, validation
  and test accuracy, the group), and `alias` (default `best`) points at the
  best verified run BY VALIDATION, never by test. A student's recorded distilled-from edge is
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


def register_runs(registry: str | Path | None, result: SeedsResult, name: str, alias: str = "best", *,
                  data: Any = None, min_acc: float | None = None) -> dict[str, Any]:
    """Verify each run of `result`, register the verified ones as versions of `name`, alias the best.

    Only verified pairs enter the registry (the promise `registry ls` makes):
    every run is checked by `ckreg.verify.verify_pair` on its held-out test
    split against the explicit target `min_acc`. `alias` points at the best
    verified run BY VALIDATION, never by test. Runs that fail stay on disk and
    are listed under `not_registered` with the reasons.
    """
    from ckreg.train.seeds import best_by_validation
    from ckreg.verify import verify_pair

    if min_acc is None:
        raise UsageError("registering runs needs an accuracy target: only verified pairs enter the registry",
                         hint="add --min-acc X (the runs are verified on their held-out test split)")
    reg = Registry(registry)
    refs: dict[str, str] = {}
    rejected: dict[str, str] = {}
    verified_runs = []
    group = str(Path(result.out).resolve())
    for r in result.results:
        run = next(x for x in result.runs if x.seed == r.seed)
        # an image model takes GAF/MTF images, not scaled signals: its scaler is no part of the pair
        scaler = None if (r.metrics.get("recipe") or {}).get("imaging") else r.files.get("scaler_json")
        check = verify_pair(r.files["weights"], scaler, data, expect_acc=min_acc)
        if check.status != "verified":
            rejected[str(r.seed)] = "; ".join(check.reasons) or check.status
            continue
        prov = {"recipe": r.metrics.get("recipe"), "seed": r.seed, "group": group, "seeds": [x.seed for x in result.runs],
                "val_accuracy": run.val_accuracy, "best_val_loss": r.best_val_loss, "test_accuracy": r.test_accuracy,
                "data_hash": r.data_hash, "class_names": (r.metrics.get("data") or {}).get("classes")}
        if not prov["class_names"]:
            prov.pop("class_names")
        v = reg.add(r.files["weights"], scaler, name=name, spec=r.spec, provenance=prov, verification=check)
        refs[str(r.seed)] = v.ref
        verified_runs.append(run)
    best = None
    if verified_runs:
        b = best_by_validation(verified_runs)
        best = reg.alias(name, alias, int(refs[str(b.seed)].split("@")[1]))
    return {"name": name, "versions": refs, "alias": alias, "best": None if best is None else best.ref,
            "best_seed": None if best is None else b.seed, "min_acc": min_acc, "not_registered": rejected}


def train_runs(family: str, data: Any, out: str | Path, seeds: Any, *, register: str | None = None,
               registry: str | Path | None = None, alias: str = "best", min_acc: float | None = None,
               **kwargs: Any) -> dict[str, Any]:
    """`ckreg train --seeds/--register`: the seed runs, then (optionally) their verification and registration."""
    from ckreg.registry.model import check_name
    from ckreg.train.seeds import train_seeds

    if register is not None:   # before hours of training, not after
        check_name(register)
        if min_acc is None:
            raise UsageError("--register needs --min-acc X: only verified pairs enter the registry",
                             hint="each run is verified on its held-out test split against X before it is registered")
    result = train_seeds(family, data, out, seeds, **kwargs)
    payload: dict[str, Any] = {"seeds": result.model_dump(mode="json")}
    if register is not None:
        payload["registered"] = register_runs(registry, result, register, alias, data=data, min_acc=min_acc)
    return payload
