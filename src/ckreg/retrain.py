"""Retraining what the manifest declares but the archive lacks (issue #5, "Retraining").

`plan_retrain` decides, per declared model, whether to train, register or
skip, and says why; `run_retrain` carries the plan out: train with the bundled
trainer (`ckreg.train.train`, imported lazily: this module is torch-free),
verify the new pair (`ckreg.verify.verify_pair`), register it with its
provenance and move `@best` only when the new version is better.

Staleness is decided the way DVC decides it for a stage: a model is
(re)trained only when its output is missing or fails verification, or when an
input it was trained from (family, hyperparameters, training recipe, data
hash) changed since the recorded run. Inputs are hashed BEFORE training and
kept, with the outputs' digests, in a lock file `<out>/<name>/ckreg.lock.json`
(DVC's `dvc.lock`). Every run trains into a fresh folder `<out>/<name>/v<N>/`,
so a retrained model never replaces an existing file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from ckreg.fsutil import file_sha256, write_json
from ckreg import __version__
from ckreg.arch import FAMILIES
from ckreg.errors import CkregError, UsageError

LOCK_NAME = "ckreg.lock.json"
INPUTS_NAME = "ckreg.inputs.json"
LOCK_VERSION = 1
TRAINER = f"ckreg.train {__version__}"
ENV_ARCHIVE = "CKREG_ARCHIVE"

# manifest `training` field -> ckreg.train.train keyword
_TRAIN_KWARGS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "seed": "seed",
                 "patience": "patience", "weight_decay": "weight_decay", "gradient_clip": "grad_clip"}

Progress = Callable[[str], None]
Trainer = Callable[..., Any]


# --------------------------------------------------------------------------- data


class PlanItem(BaseModel):
    """One declared model and what `run_retrain` will do with it, and why."""

    name: str
    family: str
    action: Literal["train", "register", "skip"]
    reason: str
    changed: list[str] = Field(default_factory=list)       # inputs that changed since the recorded run
    out_dir: str | None = None                             # the run folder a training would create (next free vN)
    lock_path: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)   # family, hyperparameters, recipe, data_hash
    hashes: dict[str, str] = Field(default_factory=dict)   # sha256 of each input
    input_hash: str = ""
    existing: list[str] = Field(default_factory=list)      # archive files that satisfy the declaration
    scaler: str | None = None                              # their scaler (register)
    expect_acc: float | None = None                        # the accuracy target (None: nothing to verify against)
    tolerance: float = 0.005
    target_source: str | None = None                       # declared accuracy | --min-acc | manifest min_accuracy
    metric_split: str = "test"
    data: str | None = None
    registry: str | None = None
    out_root: str = "retrained"
    manifest: str | None = None
    train_kwargs: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)          # models of this plan to train first (its teacher)
    notes: list[str] = Field(default_factory=list)


class Outcome(BaseModel):
    """What happened to one plan item."""

    name: str
    action: str
    status: Literal["trained", "registered", "skipped", "unverified", "failed"]
    reason: str = ""
    run_dir: str | None = None
    ckpt: str | None = None
    scaler: str | None = None
    scaler_recipe: str | None = None       # a recovered scaler's recipe (register)
    accuracy: float | None = None          # verification accuracy (fraction, metric split)
    test_accuracy: float | None = None     # the trainer's held-out test accuracy
    verified: bool | None = None
    version: int | None = None
    aliases: list[str] = Field(default_factory=list)
    alias_moved: bool = False
    error: str | None = None
    wall_s: float = 0.0
    # a seeded declaration (`training.seeds`): one entry per run (seed, run_dir, accuracy, val_accuracy,
    # test_accuracy, verified, version); the fields above describe the best run by validation
    runs: list[dict[str, Any]] = Field(default_factory=list)
    best_seed: int | None = None
    test_accuracy_mean: float | None = None
    test_accuracy_std: float | None = None


class RetrainResult(BaseModel):
    outcomes: list[Outcome] = Field(default_factory=list)
    registry: str | None = None
    wall_s: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        """Models that did not end verified: failures, and models with no accuracy target to verify against."""
        return [o for o in self.outcomes if o.status in ("failed", "unverified")]

    def exit_code(self) -> int:
        """0 when every selected model ended verified (or was skipped), 1 when any failed or is unverified."""
        return 1 if self.failed else 0


# --------------------------------------------------------------------------- hashing


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha(obj: Any) -> str:
    return hashlib.sha256(_canon(obj).encode("utf-8")).hexdigest()


def recipe_for(manifest, decl, epochs: int | None = None) -> dict[str, Any]:
    """The effective training recipe of a declaration: the manifest's `training` over its defaults,
    the dataset's split, the trainer's own defaults for what is left open, and `--epochs`."""
    from ckreg.train import DEFAULTS  # torch-free at import (ckreg.train imports torch inside functions)

    training = manifest.training_for(decl).model_dump(exclude_none=True)
    kw: dict[str, Any] = {"epochs": DEFAULTS["epochs"], "lr": DEFAULTS["lr"], "batch_size": DEFAULTS["batch_size"],
                          "seed": 0, "patience": DEFAULTS["patience"], "weight_decay": DEFAULTS["weight_decay"],
                          "grad_clip": DEFAULTS["grad_clip"], "val": DEFAULTS["val"], "test": DEFAULTS["test"]}
    for key, target in _TRAIN_KWARGS.items():
        if key in training:
            kw[target] = training[key]
    ds = manifest.dataset_for(decl)
    if ds is not None:
        kw["seed"] = training.get("seed", ds.split.seed)
        kw["val"], kw["test"] = ds.split.val, ds.split.test
    if epochs is not None:
        kw["epochs"] = int(epochs)
    if training.get("seeds"):                  # one run per seed; each seed also splits (train_seeds)
        kw.pop("seed", None)
        kw["seeds"] = [int(x) for x in training["seeds"]]
    from ckreg.train.recipes import recipe_kwargs   # torch-free

    base = Path(manifest.source).parent if getattr(manifest, "source", None) else None
    kw.update(recipe_kwargs(training, base))   # SGD schedules, imaging, teacher (docs/recipes.md)
    kw["scaler_recipe"] = "train-split"       # new models: fitted on the training split (issue #3)
    kw["trainer"] = "ckreg.train"
    return kw


def compute_inputs(manifest, decl, data_hash: str, epochs: int | None = None,
                   registry: str | os.PathLike | None = None) -> tuple[dict, dict, str]:
    """(inputs, per-input hashes, combined hash): what a run depends on, hashed before it starts.

    A declared teacher is an input by content: the sha256 of its checkpoint
    (a registry reference resolved in `registry`), so a retrained teacher makes
    its students stale."""
    inputs = {
        "family": decl.family,
        "hyperparameters": decl.declared(),
        "recipe": recipe_for(manifest, decl, epochs),
        "data_hash": data_hash,
    }
    if inputs["recipe"].get("teacher"):
        inputs["teacher"] = teacher_identity(inputs["recipe"]["teacher"], registry)
    return inputs, *_hash_inputs(inputs)


def _hash_inputs(inputs: dict) -> tuple[dict, str]:
    hashes = {
        "family": _sha(inputs["family"]),
        "hyperparameters": _sha(inputs["hyperparameters"]),
        "recipe": _sha(inputs["recipe"]),
        "data": inputs["data_hash"],
    }
    if "teacher" in inputs:
        hashes["teacher"] = _sha(inputs["teacher"])
    return hashes, _sha(hashes)


def teacher_identity(teacher: str, registry: str | os.PathLike | None = None) -> dict[str, Any]:
    """{"teacher": as declared, "ref": resolved registry version or None, "sha256": of its checkpoint or None}."""
    from ckreg.train.recipes import is_registry_ref

    out: dict[str, Any] = {"teacher": str(teacher), "ref": None, "sha256": None}
    if is_registry_ref(teacher):
        if registry:
            from ckreg.registry import Registry

            reg = Registry(registry)
            try:
                if reg.exists():
                    v = reg.resolve(str(teacher))
                    out.update(ref=v.ref, sha256=v.sha256)
            except CkregError:
                pass
            finally:
                reg.close()
        return out
    p = Path(teacher)
    if p.is_dir():
        p = next((p / n for n in ("weights.safetensors", "model.ckpt") if (p / n).is_file()), p)
    if p.is_file():
        out["sha256"] = file_sha256(p)
    return out


def teacher_model(item: "PlanItem") -> str | None:
    """The model name a registry-reference teacher names (`NAME` of `NAME@best`), else None."""
    from ckreg.train.recipes import is_registry_ref

    t = item.train_kwargs.get("teacher")
    return str(t).split("@", 1)[0] if t and is_registry_ref(t) else None


def _train_kwargs(decl, inputs: dict) -> dict[str, Any]:
    r = inputs["recipe"]
    overrides = {k: v for k, v in decl.declared().items()}
    seeds = {"seeds": [int(x) for x in r["seeds"]]} if r.get("seeds") else {"seed": int(r["seed"])}
    return {"family": decl.family, "overrides": overrides, **seeds, "epochs": int(r["epochs"]),
            "batch_size": int(r["batch_size"]), "lr": float(r["lr"]), "patience": int(r["patience"]),
            "weight_decay": float(r["weight_decay"]),
            "grad_clip": None if r.get("grad_clip") is None else float(r["grad_clip"]),
            "val": float(r["val"]), "test": float(r["test"]),
            **{k: r[k] for k in ("optim", "imaging", "teacher", "kd_temperature", "kd_lambda") if k in r}}


# --------------------------------------------------------------------------- lock files


def lock_path(out_root: str | os.PathLike, name: str) -> Path:
    return Path(out_root) / name / LOCK_NAME


def read_lock(path: str | os.PathLike) -> dict | None:
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("lock_version") == LOCK_VERSION else None


def _write_json_atomic(path: Path, doc: dict) -> None:
    """Our own lock/inputs files: temp + rename (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc, overwrite=True)   # ckreg's own lock, rewritten as a run progresses


def _changed(lock: dict, hashes: dict, inputs: dict) -> list[str]:
    """Which inputs differ from the recorded run, in words."""
    old = lock.get("hashes") or {}
    old_inputs = lock.get("inputs") or {}
    out = []
    for key, label in (("family", "family"), ("hyperparameters", "hyperparameters"), ("recipe", "recipe"),
                       ("data", "data"), ("teacher", "teacher")):
        if old.get(key) != hashes.get(key):
            if key == "teacher":
                o, n = old_inputs.get("teacher") or {}, inputs.get("teacher") or {}
                name = lambda t: t.get("ref") or str(t.get("sha256") or "?")[:12]   # noqa: E731
                out.append(f"teacher ({name(o)} -> {name(n)})" if o and n else "teacher")
            elif key == "data":
                a, b = str(old.get("data") or "?")[:12], str(hashes.get("data"))[:12]
                out.append(f"data (hash {a} -> {b})")
            elif key == "recipe":
                o, n = old_inputs.get("recipe") or {}, inputs.get("recipe") or {}
                diff = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
                out.append("recipe (" + ", ".join(f"{k}: {o.get(k)!r} -> {n.get(k)!r}" for k in diff) + ")"
                           if diff else "recipe")
            elif key == "hyperparameters":
                o, n = old_inputs.get("hyperparameters") or {}, inputs.get("hyperparameters") or {}
                diff = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
                out.append("hyperparameters (" + ", ".join(f"{k}: {o.get(k)!r} -> {n.get(k)!r}" for k in diff) + ")"
                           if diff else "hyperparameters")
            else:
                out.append(f"{label} ({old_inputs.get(key)!r} -> {inputs.get(key)!r})")
    return out


def _outputs_problem(lock: dict) -> str | None:
    """None when every recorded output exists with its recorded digest; else what is wrong."""
    outputs = lock.get("outputs") or {}
    if not outputs:
        return "the recorded run has no outputs"
    for role, rec in outputs.items():
        p = Path(rec.get("path", ""))
        if not p.is_file():
            return f"recorded {role} {p} is missing"
        if rec.get("sha256") and file_sha256(p) != rec["sha256"]:
            return f"recorded {role} {p} changed since the run (sha256 differs)"
    return None


def next_run_dir(out_root: str | os.PathLike, name: str) -> Path:
    """`<out>/<name>/v<N>` with N one past the highest existing run (not created)."""
    base = Path(out_root) / name
    n = 0
    if base.is_dir():
        for p in base.iterdir():
            if p.name.startswith("v") and p.name[1:].isdigit():
                n = max(n, int(p.name[1:]))
    return base / f"v{n + 1}"


def _reserve_run_dir(out_root: str | os.PathLike, name: str) -> Path:
    """Create the next free run folder atomically (two runs never share one)."""
    for _ in range(1000):
        d = next_run_dir(out_root, name)
        d.parent.mkdir(parents=True, exist_ok=True)
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise CkregError(f"cannot create a fresh run folder under {Path(out_root) / name}")


# --------------------------------------------------------------------------- manifest helpers


def _load_manifest(manifest):
    from ckreg.manifest import Manifest, load_manifest

    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


def archive_root_for(manifest, archive_root: str | os.PathLike | None = None) -> Path | None:
    """Where the declared paths are rooted: the argument, `$CKREG_ARCHIVE`, or the manifest's `root`."""
    if archive_root is not None:
        return Path(archive_root)
    env = os.environ.get(ENV_ARCHIVE)
    if env:
        return Path(env)
    root = getattr(manifest, "root", None)
    if root:
        base = Path(manifest.source).parent if manifest.source else Path(".")
        return Path(os.path.normpath(base / root))
    return None


def declared_for_checkpoint(manifest_path: str | os.PathLike, ckpt: str | os.PathLike,
                            model_name: str | None = None) -> tuple[float | None, float | None, str | None]:
    """(declared accuracy, tolerance, model name) for a checkpoint: by `model_name`, else by path.

    The checkpoint's path is matched against each declaration's path or glob
    on every suffix of its folders (the audited root is not known here).
    """
    manifest = _load_manifest(manifest_path)
    decl = None
    if model_name:
        try:
            decl = manifest.model(model_name)
        except KeyError:
            raise UsageError(f"the manifest {manifest_path} declares no model {model_name!r}",
                             hint="known: " + ", ".join(m.name for m in manifest.models)) from None
    else:
        parts = PurePosixPath(Path(ckpt).resolve().as_posix()).parts
        for k in range(1, len(parts)):
            rel = "/".join(parts[k:])
            hits = [m for m in manifest.models if m.matches_path(rel)]
            if hits:
                decl = hits[0]
                break
    if decl is None:
        return None, None, None
    metrics = manifest.metrics_for(decl)
    return metrics.accuracy, metrics.tolerance, decl.name


def target_for_checkpoint(manifest_path: str | os.PathLike | None, ckpt: str | os.PathLike,
                          model_name: str | None = None, min_acc: float | None = None) -> dict[str, Any]:
    """The accuracy target a checkpoint is verified against: {expect_acc, tolerance, source, model, split}.

    The declared accuracy of its manifest model (by `model_name`, else by path), else `min_acc`
    (`--min-acc`), else the manifest's `min_accuracy`; `expect_acc` None when nothing sets one.
    """
    from ckreg.verify import normalize_acc

    min_acc = normalize_acc(min_acc)
    out: dict[str, Any] = {"expect_acc": None, "tolerance": None, "source": None, "model": None, "split": None}
    if manifest_path is None:
        if min_acc is not None:
            out.update(expect_acc=min_acc, tolerance=0.0, source="--min-acc")
        return out
    manifest = _load_manifest(manifest_path)
    _acc, _tol, name = declared_for_checkpoint(manifest, ckpt, model_name)
    if name is not None:
        decl = manifest.model(name)
        acc, tol, source = manifest.accuracy_target(decl, min_acc)
        out.update(expect_acc=acc, tolerance=tol, source=source, model=name, split=manifest.metrics_for(decl).split)
    elif min_acc is not None:
        out.update(expect_acc=min_acc, tolerance=0.0, source="--min-acc")
    elif manifest.min_accuracy is not None:
        out.update(expect_acc=manifest.min_accuracy, tolerance=0.0, source="manifest min_accuracy")
    return out


def _archive_state(manifest, root: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declaration status by name, file summaries by relpath) from the audit (no --data: cheap)."""
    if root is None:
        return {}, {}
    from ckreg.audit import audit

    report = audit(root, manifest, jobs=1)
    return report.extra.get("declarations") or {}, report.extra.get("files") or {}


def _registry_versions(registry: str | None, name: str) -> list:
    if not registry:
        return []
    from ckreg.registry import Registry

    reg = Registry(registry)
    if not reg.exists():
        return []
    try:
        return reg.ls(name)
    except CkregError:
        return []
    finally:
        reg.close()


# --------------------------------------------------------------------------- plan


def plan_retrain(manifest, data=None, archive_root=None, registry=None, missing: bool = True, failed: bool = False,
                 force: bool = False, *, out: str | os.PathLike = "retrained", epochs: int | None = None,
                 register_existing: bool = False, only: list[str] | None = None,
                 min_acc: float | None = None) -> list[PlanItem]:
    """Decide, per declared model, train / register / skip, and why (writes nothing).

    - `missing`: train models no archive file satisfies (the audit's `model-missing`).
    - `failed`: train models whose existing pair fails verification and no
      re-fitted scaler rescues (a rescued one is registered with that scaler).
    - `force`: train every selected model.
    - A model with a recorded run (`<out>/<name>/ckreg.lock.json`) is retrained
      only when an input changed, a recorded output is gone or altered, or
      (with `failed`) the recorded output fails verification.
    - `register_existing`: register archive pairs that verify (recovering the
      scaler when the paired one fails) and up-to-date runs not yet registered.
    `min_acc` is the accuracy a model without a declared one must reach.
    """
    from ckreg.verify import load_data, normalize_acc

    manifest = _load_manifest(manifest)
    min_acc = normalize_acc(min_acc)
    decls = list(manifest.models)
    if only:
        unknown = sorted(set(only) - {m.name for m in decls})
        if unknown:
            raise UsageError(f"the manifest declares no model {', '.join(unknown)}",
                             hint="known: " + ", ".join(m.name for m in decls))
        decls = [m for m in decls if m.name in only]
        foreign = [m.name for m in decls if m.family not in FAMILIES]
        if foreign:
            raise UsageError(f"{', '.join(foreign)}: not a built-in family; the zoo trains the built-in families only")
    decls = [m for m in decls if m.family in FAMILIES]   # module:/reference:/declared families: audited, not trained
    if data is None:
        paths = {str(manifest.dataset_path(m)) for m in decls if manifest.dataset_path(m) is not None}
        if len(paths) != 1:
            raise UsageError("no --data given and the manifest does not name one dataset path")
        data = paths.pop()
    dataset = load_data(data)
    root = archive_root_for(manifest, archive_root)
    if root is not None and not root.exists():
        raise UsageError(f"archive root {root} does not exist", hint="pass --archive DIR")
    if root is not None and Path(out).resolve().is_relative_to(root.resolve()):
        # trained runs and recovered scalers never land inside the archive being audited
        raise UsageError(f"--out {out} lies inside the archive {root}; retrain never writes into it",
                         hint="pass --out DIR outside the archive (the default is ./retrained)")
    status, files = _archive_state(manifest, root)
    registry = str(registry) if registry else None

    items: list[PlanItem] = []
    for decl in decls:
        inputs, hashes, input_hash = compute_inputs(manifest, decl, dataset.data_hash, epochs, registry)
        metrics = manifest.metrics_for(decl)
        target, target_tol, target_source = manifest.accuracy_target(decl, min_acc)
        item = PlanItem(
            name=decl.name, family=decl.family, action="skip", reason="", inputs=inputs, hashes=hashes,
            input_hash=input_hash, expect_acc=target, tolerance=target_tol, target_source=target_source,
            metric_split=metrics.split,
            data=str(data) if isinstance(data, (str, os.PathLike)) else getattr(dataset, "source", None),
            registry=registry, out_root=str(out), manifest=manifest.source,
            lock_path=str(lock_path(out, decl.name)), train_kwargs=_train_kwargs(decl, inputs))
        if target is None:
            item.notes.append("no accuracy target (declare metrics.accuracy or min_accuracy, or pass --min-acc): "
                              "a trained model is kept but never registered as verified")
        elif target_source != "declared accuracy":
            item.notes.append(f"no accuracy declared: held to {target_source} {target:g}")
        training = manifest.training_for(decl)
        if training.optimizer and training.optimizer not in ("adamw", "sgd"):
            item.notes.append(f"recipe says optimizer {training.optimizer}; the bundled trainer uses AdamW or SGD")
        st = status.get(decl.name) or {}
        if st.get("status") == "satisfied":
            item.existing = [str(root / f) for f in st.get("files", [])]
            sc = (files.get(st["files"][0]) or {}).get("scaler") if st.get("files") else None
            if sc is None and decl.scaler and (root / decl.scaler).is_file():
                sc = decl.scaler
            item.scaler = str(root / sc) if sc else None

        def train(reason: str, changed: list[str] | None = None) -> None:
            item.action, item.reason = "train", reason
            item.changed = changed or []
            item.out_dir = str(next_run_dir(out, decl.name))

        lock = read_lock(item.lock_path)
        reg_versions = _registry_versions(registry, decl.name)
        if force:
            train("forced (--force)")
        elif lock is not None:
            run = lock.get("run_dir")
            changed = _changed(lock, hashes, inputs)
            problem = None if changed else _outputs_problem(lock)
            rec = lock.get("verification") or {}
            if changed:
                train(f"{'; '.join(changed)} changed since run {run}", changed)
            elif problem:
                train(f"{problem}")
            elif rec.get("status") == "unverified":
                acc = rec.get("accuracy")
                item.reason = (f"run {run} is trained but unverified (no accuracy target when it ran"
                               + (f"; {100 * acc:.2f}%" if acc is not None else "") + ")")
                if item.expect_acc is not None and registry and not _in_registry(reg_versions, lock):
                    item.action = "register"
                    item.reason += f"; verify it against {item.target_source} {item.expect_acc:g} and register it"
            elif rec.get("passed") is False:
                if failed:
                    train(f"recorded run {run} failed verification ({rec.get('reason', 'see its lock')})")
                else:
                    item.reason = (f"recorded run {run} failed verification ({rec.get('reason', '')}); "
                                   "change the recipe, or pass --failed to retrain")
            elif failed and not _recorded_still_passes(lock, dataset, item):
                train(f"recorded output of {run} no longer passes verification")
            else:
                acc = rec.get("accuracy")
                item.reason = (f"up to date: run {run}, inputs unchanged"
                               + (f", verified at {100 * acc:.2f}%" if acc is not None else ""))
                registered = lock.get("registered") or {}
                if registry and not _in_registry(reg_versions, lock):
                    item.action = "register"
                    item.reason += f"; not yet in the registry {registry}"
                elif registered.get("ref"):
                    item.reason += f"; registered as {registered['ref']}"
        elif st.get("status") == "satisfied":
            where = ", ".join(st.get("files", []))
            if failed and item.expect_acc is None:
                item.reason = (f"has a checkpoint ({where}); no accuracy target, so it cannot be judged "
                               "(declare metrics.accuracy or min_accuracy, or pass --min-acc)")
            elif failed:
                verdict = _existing_verdict(item, dataset)
                if verdict is None:
                    item.reason = f"has a checkpoint that verifies ({where})"
                    if register_existing and registry:
                        item.action = "register"
                elif verdict.startswith("recoverable"):
                    item.reason = f"{where}: {verdict}"
                    if register_existing and registry:
                        item.action = "register"
                else:
                    train(f"existing pair fails verification: {verdict}")
            else:
                item.reason = f"has a checkpoint ({where}, by {st.get('by', 'path')})"
                if register_existing and registry:
                    digest = file_sha256(item.existing[0])
                    done = [v for v in reg_versions if v.sha256 == digest and v.verified]
                    if done:
                        item.reason += f"; already registered as {done[-1].ref} (verified)"
                    else:
                        item.action = "register"
                        item.reason += "; register it (verified, scaler recovered if needed)"
        else:
            same = [v for v in reg_versions if (v.provenance or {}).get("input_hash") == input_hash and v.verified]
            if same:
                item.reason = f"no archive file, but {same[-1].ref} in the registry was trained from the same inputs"
            elif st.get("status") == "missing" or root is None:
                why = ("no checkpoint satisfies the declaration (model-missing)" if st.get("status") == "missing"
                       else "no archive to look in (pass --archive or set `root` in the manifest) and no run recorded")
                if missing:
                    train(why)
                else:
                    item.reason = why + "; --missing not given"
            else:
                item.reason = "not in the audit's declarations"
        if item.action == "register" and item.expect_acc is None:
            item.action = "skip"
            item.reason += "; not registered: no accuracy target to verify against"
        items.append(item)
    _order_teachers(items, out, registry)
    return items


def _order_teachers(items: list[PlanItem], out: str | os.PathLike, registry: str | None) -> None:
    """A student whose teacher (`NAME@...` in the registry) is another model of this plan trains after
    it, and is retrained whenever its teacher is (its teacher's weights are one of its inputs)."""
    by_name = {i.name: i for i in items}
    for item in items:
        dep = teacher_model(item)
        if dep and dep in by_name and dep != item.name:
            item.after = [dep]
        elif dep and (item.inputs.get("teacher") or {}).get("sha256") is None and item.action == "train":
            item.notes.append(f"teacher {item.train_kwargs['teacher']} is not in the registry "
                              f"{registry or '(none given: pass --registry)'} and no model of this plan trains it")
    for _ in range(len(items)):      # chains of teachers: until nothing changes
        moved = False
        for item in items:
            if item.after and by_name[item.after[0]].action == "train" and item.action != "train":
                item.action, item.changed = "train", ["teacher"]
                item.reason = f"its teacher {item.after[0]} is retrained in this run"
                item.out_dir = str(next_run_dir(out, item.name))
                moved = True
        if not moved:
            break


def _lock_pairs(lock: dict) -> list[dict[str, Any]]:
    """The recorded run's pairs: one (a single run), or one per seed (`training.seeds`), each
    {seed, ckpt, sha256, scaler, val_accuracy, best_val_loss, test_accuracy, image}."""
    outs = lock.get("outputs") or {}
    if lock.get("runs"):
        pairs = []
        for r in lock["runs"]:
            w = outs.get(f"seed-{r['seed']}/weights") or outs.get(f"seed-{r['seed']}/ckpt") or {}
            sc = outs.get(f"seed-{r['seed']}/scaler") or {}
            pairs.append({**r, "ckpt": w.get("path"), "sha256": w.get("sha256"), "scaler": sc.get("path")})
        return pairs
    w = outs.get("weights") or outs.get("ckpt") or {}
    return [{"seed": None, "ckpt": w.get("path"), "sha256": w.get("sha256"),
             "scaler": (outs.get("scaler") or {}).get("path")}]


def _in_registry(versions: list, lock: dict) -> bool:
    # a seeded run's failed seeds are never registered
    shas = [p["sha256"] for p in _lock_pairs(lock) if p.get("ckpt") and p.get("verified") is not False]
    return bool(shas) and all(any(v.sha256 == ck for v in versions) for ck in shas)


def _recorded_still_passes(lock: dict, dataset, item: PlanItem) -> bool:
    from ckreg.verify import verify_pair

    pairs = [p for p in _lock_pairs(lock) if p.get("ckpt")]
    if not pairs:
        return False
    for p in pairs:
        res = verify_pair(p["ckpt"], p["scaler"], dataset, expect_acc=item.expect_acc, tolerance=item.tolerance,
                          split=item.metric_split)
        if res.status == "failed":    # without a target it cannot fail: nothing to retrain for
            return False
    return True


def _existing_verdict(item: PlanItem, dataset) -> str | None:
    """None when the existing pair verifies; 'recoverable: ...' when a re-fitted scaler fixes it; else why it fails."""
    from ckreg.verify import try_recipes, verify_pair

    ck = item.existing[0]
    res = verify_pair(ck, item.scaler, dataset, expect_acc=item.expect_acc, tolerance=item.tolerance,
                      split=item.metric_split) if item.scaler else None
    if res is not None and res.passed:
        return None
    if res is not None and not res.loaded:
        return "; ".join(res.reasons)
    cands, _ = try_recipes(ck, dataset, item.expect_acc, item.tolerance, split=item.metric_split)
    ok = [c for c in cands if c.passed and c.accuracy is not None]
    if ok:
        best = max(ok, key=lambda c: c.accuracy)
        return f"recoverable: its scaler fails, recipe {best.recipe} reaches {100 * best.accuracy:.2f}%"
    return "; ".join(res.reasons) if res is not None else "no scaler and no recipe verifies"


# --------------------------------------------------------------------------- run


def _verification_record(res) -> dict[str, Any]:
    return {"status": res.status, "passed": res.passed, "accuracy": res.accuracy, "n_episodes": res.n_episodes, "data_hash": res.data_hash,
            "expect_acc": res.expect_acc, "tolerance": res.tolerance, "split": res.split,
            "reason": "; ".join(res.reasons)}


def _register(item: PlanItem, ckpt: str, scaler: str | None, spec: Any, verification, provenance: dict,
              outcome: Outcome, lock: threading.Lock) -> None:
    """Register the pair; move `@best` (compare-and-swap) only if the new version is more accurate."""
    from ckreg.registry import AliasConflictError, Registry

    if verification is None or getattr(verification, "status", None) != "verified":
        raise CkregError(f"{item.name}: only a verified pair is registered (status "
                         f"{getattr(verification, 'status', None)!r})")
    with lock:  # SQLite serialises writers anyway; this keeps one process's threads from contending
        reg = Registry(item.registry)
        try:
            ver = reg.add(ckpt, scaler, name=item.name, spec=spec, verification=verification, provenance=provenance)
            outcome.version = ver.version
            acc = verification.accuracy if verification is not None else None
            for _ in range(5):
                try:
                    cur = reg.resolve(f"{item.name}@best")
                except CkregError:
                    cur = None
                if cur is not None and cur.version == ver.version:
                    break
                cur_acc = cur.accuracy if cur is not None else None
                if acc is None or not verification.passed or (cur_acc is not None and cur_acc >= acc):
                    break
                try:
                    reg.alias(item.name, "best", ver.version, expect=cur.version if cur is not None else None)
                    outcome.alias_moved = True
                    break
                except AliasConflictError:
                    continue
            outcome.aliases = reg.resolve(f"{item.name}@{ver.version}").aliases
        finally:
            reg.close()


def _resolve_teacher(item: PlanItem, kw: dict[str, Any]) -> None:
    """A registry-reference teacher becomes the registered checkpoint (resolved now, after the models
    this one waits for); the inputs record what it resolved to."""
    teacher = kw.get("teacher")
    if teacher is None:
        return
    from ckreg.train.recipes import is_registry_ref

    if is_registry_ref(teacher):
        if not item.registry:
            raise UsageError(f"{item.name}: its teacher {teacher} is a registry reference and no registry "
                             "is given", hint="pass --registry DIR (where the teacher is registered)")
        from ckreg.registry.runs import resolve_teacher

        obj = resolve_teacher(str(teacher), item.registry)
        kw["teacher"] = obj
        ident = {"teacher": str(teacher), "ref": obj.ref, "sha256": file_sha256(obj.path)}
    else:
        ident = teacher_identity(str(teacher))
    if ident != item.inputs.get("teacher"):
        item.inputs = {**item.inputs, "teacher": ident}
        item.hashes, item.input_hash = _hash_inputs(item.inputs)


def _is_image_run(tr) -> bool:
    return bool(((getattr(tr, "metrics", None) or {}).get("recipe") or {}).get("imaging"))


def _train_provenance(item: PlanItem, tr, dataset, run_dir: Path) -> dict[str, Any]:
    metrics = dict(getattr(tr, "metrics", {}) or {})
    split = metrics.get("split") or {}
    split_summary = {k: v for k, v in split.items() if k not in ("train", "val", "test")}
    if split:
        split_summary["ids_sha256"] = {k: _sha(split.get(k, [])) for k in ("train", "val", "test")}
    return {
        "source": "ckreg retrain", "model": item.name, "manifest": item.manifest, "reason": item.reason,
        "recipe": metrics.get("recipe") or item.inputs.get("recipe"), "split": split_summary,
        "seed": getattr(tr, "seed", item.train_kwargs.get("seed")), "data_hash": getattr(tr, "data_hash", None),
        "data": item.data, "trainer_version": TRAINER, "ckreg_version": __version__, "run_dir": str(run_dir),
        "input_hash": item.input_hash, "inputs": item.inputs, "test_accuracy": getattr(tr, "test_accuracy", None),
        "epochs_run": getattr(tr, "epochs_run", None), "best_epoch": getattr(tr, "best_epoch", None),
        "wall_time_s": getattr(tr, "wall_time_s", None), "class_names": list(getattr(dataset, "class_names", []) or []),
    }


def _register_group(item: PlanItem, runs: list[dict[str, Any]], outcome: Outcome, lock: threading.Lock) -> None:
    """Register every verified run of a seeded model as a version, then alias `@best` the best of them
    BY VALIDATION (accuracy at its best epoch, then the lower validation loss), never by test.

    The runs of one group were trained from the same inputs; an earlier group was trained from other
    inputs (that is why this one was trained), so its validation figures are not comparable and
    `@best` moves to this group's best."""
    from ckreg.registry import Registry
    from ckreg.train.seeds import best_by_validation

    ok = [r for r in runs if r.get("res") is not None and r["res"].passed]
    if not ok or not item.registry:
        return
    with lock:
        reg = Registry(item.registry)
        try:
            for r in ok:
                ver = reg.add(r["ckpt"], None if r.get("image") else r.get("scaler"), name=item.name,
                              spec=r.get("spec") or None, verification=r["res"], provenance=r["provenance"])
                r["version"] = ver.version
            best = best_by_validation([_ValView(r) for r in ok]).run
            reg.alias(item.name, "best", best["version"])
            outcome.alias_moved = True
            outcome.version = best["version"]
            outcome.aliases = reg.resolve(f"{item.name}@{best['version']}").aliases
        finally:
            reg.close()


class _ValView:
    """A run dict seen by `best_by_validation`."""

    def __init__(self, run: dict[str, Any]):
        self.run, self.val_accuracy, self.best_val_loss = run, run.get("val_accuracy"), run.get("best_val_loss")


def _public_run(r: dict[str, Any]) -> dict[str, Any]:
    res = r.get("res")
    return {"seed": r["seed"], "run_dir": r.get("run_dir"), "ckpt": r.get("ckpt"), "scaler": r.get("scaler"),
            "image": bool(r.get("image")), "val_accuracy": r.get("val_accuracy"),
            "best_val_loss": r.get("best_val_loss"), "test_accuracy": r.get("test_accuracy"),
            "accuracy": getattr(res, "accuracy", None), "verified": getattr(res, "passed", None),
            "status": getattr(res, "status", None), "version": r.get("version"), "error": r.get("error")}


def _finish_group(item: PlanItem, runs: list[dict[str, Any]], outcome: Outcome, error: str | None = None) -> None:
    """Outcome fields of a seeded model from its runs: the best by validation, mean ± std of test;
    status failed when `error` (the group did not finish) or any run failed."""
    from ckreg.train.seeds import best_by_validation, mean_std

    outcome.runs = [_public_run(r) for r in runs]
    outcome.test_accuracy_mean, outcome.test_accuracy_std = mean_std([r.get("test_accuracy") for r in runs])
    ok = [r for r in runs if r.get("res") is not None and r["res"].passed]
    best = best_by_validation([_ValView(r) for r in (ok or [r for r in runs if r.get("res") is not None])])
    if best is not None:
        b = best.run
        outcome.best_seed, outcome.ckpt, outcome.scaler = b["seed"], b.get("ckpt"), b.get("scaler")
        outcome.accuracy, outcome.test_accuracy = getattr(b["res"], "accuracy", None), b.get("test_accuracy")
    outcome.verified = bool(runs) and all(r.get("res") is not None and r["res"].passed for r in runs)
    failed = [r for r in runs if r.get("res") is None or r["res"].status == "failed" or r.get("error")]
    unverified = [r for r in runs if r.get("res") is not None and r["res"].status == "unverified"]
    problems = [error] if error else []
    problems += [f"seed {r['seed']}: " + (r.get("error") or "; ".join(r["res"].reasons)) + " (not registered)"
                 for r in failed]
    if problems:
        outcome.status, outcome.error = "failed", "; ".join(problems)
    elif unverified:
        outcome.status = "unverified"
        outcome.error = "trained, not registered: " + "; ".join(unverified[0]["res"].reasons)
    else:
        outcome.status = "trained" if outcome.action == "train" else "registered"


def _group_lock(item: PlanItem, run_dir: Path, runs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for r in runs:
        for role, p in (("weights", r.get("weights")), ("ckpt", r.get("model_ckpt")), ("scaler", r.get("scaler"))):
            if p and Path(p).is_file():
                outputs[f"seed-{r['seed']}/{role}"] = {"path": str(Path(p).resolve()), "sha256": file_sha256(p)}
    best = next((r for r in runs if r["seed"] == outcome.best_seed), None)
    verification = _verification_record(best["res"]) if best is not None and best.get("res") is not None else {}
    verification.update(status=outcome.status if outcome.status in ("unverified", "failed") else "verified",
                        passed=bool(outcome.verified), best_seed=outcome.best_seed)
    if outcome.error:
        verification["reason"] = outcome.error
    refs = {str(r["seed"]): f"{item.name}@{r['version']}" for r in runs if r.get("version") is not None}
    return {
        "lock_version": LOCK_VERSION, "name": item.name, "family": item.family, "run_dir": str(run_dir),
        "inputs": item.inputs, "hashes": item.hashes, "input_hash": item.input_hash, "outputs": outputs,
        "runs": [{k: v for k, v in _public_run(r).items() if k not in ("ckpt", "scaler")} for r in runs],
        "best_seed": outcome.best_seed, "verification": verification,
        "test_accuracy": outcome.test_accuracy_mean, "test_accuracy_std": outcome.test_accuracy_std,
        "registered": ({"registry": item.registry, "ref": f"{item.name}@{outcome.version}", "versions": refs,
                        "aliases": outcome.aliases} if outcome.version is not None else None),
        "trained_at": _now(), "trainer": TRAINER, "ckreg_version": __version__,
    }


def _run_train_seeds(item: PlanItem, dataset, trainer: Trainer, family: str, kw: dict[str, Any], run_dir: Path,
                     outcome: Outcome, on_event, progress: Progress, reg_lock: threading.Lock, t0: float) -> Outcome:
    """A seeded declaration: one run per seed into `run_dir/seed-<s>/`, each verified; the verified ones
    registered as versions of one model, `@best` the best by validation; `run_dir/seeds.json` the table."""
    from ckreg.train.seeds import SUMMARY, summarize, val_accuracy
    from ckreg.verify import verify_pair

    seeds = [int(x) for x in kw.pop("seeds")]
    overrides, epochs = kw.pop("overrides"), kw.pop("epochs")
    kw.pop("seed", None)
    runs: list[dict[str, Any]] = []
    results = []
    error = None
    for seed in seeds:
        d = run_dir / f"seed-{seed}"
        d.mkdir()
        who = f"{item.name} seed {seed}"
        progress(f"{who}: training {family} into {d} ({item.reason})")
        try:
            tr = trainer(family, dataset, d, overrides=overrides, seed=seed, epochs=epochs,
                         progress=lambda ev, who=who: on_event(ev, who), **kw)
        except CkregError as exc:     # bad input fails every seed alike: stop here
            error = f"seed {seed}: {exc.render()}"
            break
        results.append(tr)
        files = dict(getattr(tr, "files", {}) or {})
        ckpt = files.get("weights") or files.get("ckpt")
        run = {"seed": seed, "run_dir": str(d), "ckpt": ckpt, "weights": files.get("weights"),
               "model_ckpt": files.get("ckpt"), "scaler": files.get("scaler_json"), "image": _is_image_run(tr),
               "spec": getattr(tr, "spec", None), "val_accuracy": val_accuracy(tr),
               "best_val_loss": getattr(tr, "best_val_loss", None), "test_accuracy": getattr(tr, "test_accuracy", None),
               "res": None}
        runs.append(run)
        if getattr(tr, "status", "completed") != "completed":
            run["error"] = f"training {tr.status} ({getattr(tr, 'stop_reason', '')})"
            break
        run["res"] = verify_pair(ckpt, None if run["image"] else run["scaler"], dataset, expect_acc=item.expect_acc,
                                 tolerance=item.tolerance, split=item.metric_split, target_source=item.target_source)
        run["provenance"] = {**_train_provenance(item, tr, dataset, d), "seed": seed, "seeds": seeds,
                             "group": str(run_dir), "val_accuracy": run["val_accuracy"],
                             "best_val_loss": run["best_val_loss"]}
        progress(f"{who}: val {_pct_or(run['val_accuracy'])}, test {_pct_or(run['test_accuracy'])}, "
                 f"{run['res'].status}")
    if results:
        write_json(run_dir / SUMMARY, summarize(family, run_dir, results).model_dump(mode="json"))
    if error is None and not any(r.get("error") for r in runs):   # a group that did not finish is not registered
        try:
            _register_group(item, runs, outcome, reg_lock)
        except CkregError as exc:
            error = f"registration failed: {exc.render()}"
    _finish_group(item, runs, outcome, error)
    if runs:
        lock_doc = _group_lock(item, run_dir, runs, outcome)
        _write_json_atomic(Path(item.lock_path), lock_doc)
        _write_json_atomic(run_dir / LOCK_NAME, lock_doc)
    outcome.wall_s = time.perf_counter() - t0
    m, sd = outcome.test_accuracy_mean, outcome.test_accuracy_std
    progress(f"{item.name}: {outcome.status}, {len(runs)} run(s)"
             + (f", test {100 * m:.2f} ± {100 * sd:.2f}%" if m is not None and sd is not None else "")
             + (f", {item.name}@best -> {item.name}@{outcome.version} (seed {outcome.best_seed}, by validation)"
                if outcome.version is not None else ""))
    return outcome


def _pct_or(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _run_train(item: PlanItem, dataset, trainer: Trainer | None, progress: Progress, reg_lock: threading.Lock) -> Outcome:
    from ckreg.verify import verify_pair

    t0 = time.perf_counter()
    outcome = Outcome(name=item.name, action="train", status="failed", reason=item.reason)
    kw = dict(item.train_kwargs)
    family = kw.pop("family")
    try:
        _resolve_teacher(item, kw)
    except CkregError as exc:
        outcome.error = exc.render()
        return outcome
    run_dir = _reserve_run_dir(item.out_root, item.name)
    outcome.run_dir = str(run_dir)
    # inputs are hashed (by the plan; a registry teacher as resolved now) and recorded BEFORE training starts
    _write_json_atomic(run_dir / INPUTS_NAME, {"name": item.name, "inputs": item.inputs, "hashes": item.hashes,
                                               "input_hash": item.input_hash, "reason": item.reason,
                                               "started_at": _now(), "ckreg_version": __version__})
    if trainer is None:
        from ckreg.train import train as trainer  # lazy: torch

    def on_event(ev, who: str = item.name) -> None:
        if getattr(ev, "kind", None) == "epoch":
            va = getattr(ev, "val_acc", None)
            progress(f"{who}: epoch {ev.epoch}/{ev.epochs} val_loss {ev.val_loss:.4f}"
                     + (f" val_acc {100 * va:.1f}%" if va is not None else ""))

    if kw.get("seeds"):
        return _run_train_seeds(item, dataset, trainer, family, kw, run_dir, outcome, on_event, progress,
                                reg_lock, t0)
    progress(f"{item.name}: training {family} into {run_dir} ({item.reason})")
    try:
        tr = trainer(family, dataset, run_dir, overrides=kw.pop("overrides"), seed=kw.pop("seed"),
                     epochs=kw.pop("epochs"), progress=on_event, **kw)
    except CkregError as exc:
        outcome.error = exc.render()
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    files = dict(getattr(tr, "files", {}) or {})
    ckpt = files.get("weights") or files.get("ckpt")
    scaler = files.get("scaler_json")
    outcome.ckpt, outcome.scaler = ckpt, scaler
    outcome.test_accuracy = getattr(tr, "test_accuracy", None)
    image = _is_image_run(tr)
    if getattr(tr, "status", "completed") != "completed":
        outcome.error = f"training {tr.status} ({getattr(tr, 'stop_reason', '')}); not registered"
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    res = verify_pair(ckpt, None if image else scaler, dataset, expect_acc=item.expect_acc,
                      tolerance=item.tolerance, split=item.metric_split, target_source=item.target_source)
    outcome.accuracy, outcome.verified = res.accuracy, res.passed
    provenance = _train_provenance(item, tr, dataset, run_dir)
    registered = None
    if res.passed and item.registry:
        try:
            # an image model takes GAF/MTF images of the raw signals: its scaler is no part of the pair
            _register(item, ckpt, None if image else scaler, getattr(tr, "spec", None) or None, res, provenance,
                      outcome, reg_lock)
            registered = {"registry": item.registry, "ref": f"{item.name}@{outcome.version}",
                          "aliases": outcome.aliases}
        except CkregError as exc:
            outcome.error = f"registration failed: {exc.render()}"
    lock_doc = {
        "lock_version": LOCK_VERSION, "name": item.name, "family": item.family, "run_dir": str(run_dir),
        "inputs": item.inputs, "hashes": item.hashes, "input_hash": item.input_hash,
        "outputs": {role: {"path": str(Path(p).resolve()), "sha256": file_sha256(p)}
                    for role, p in (("weights", files.get("weights")), ("ckpt", files.get("ckpt")),
                                    ("scaler", scaler)) if p and Path(p).is_file()},
        "verification": _verification_record(res), "test_accuracy": outcome.test_accuracy,
        "registered": registered, "trained_at": _now(), "trainer": TRAINER, "ckreg_version": __version__,
    }
    _write_json_atomic(Path(item.lock_path), lock_doc)
    _write_json_atomic(run_dir / LOCK_NAME, lock_doc)   # the run keeps its own copy
    if res.status == "unverified":
        outcome.status = "unverified"
        outcome.error = ("trained, not registered: " + "; ".join(res.reasons))
    elif not res.passed:
        outcome.error = "trained but fails verification: " + "; ".join(res.reasons) + " (not registered)"
    elif outcome.error is None:
        outcome.status = "trained"
    outcome.wall_s = time.perf_counter() - t0
    progress(f"{item.name}: {outcome.status}"
             + (f", accuracy {100 * res.accuracy:.2f}%" if res.accuracy is not None else "")
             + (f", registered as {item.name}@{outcome.version}" if outcome.version else ""))
    return outcome


def _run_register(item: PlanItem, dataset, progress: Progress, reg_lock: threading.Lock) -> Outcome:
    """Register an existing pair (an archive file, or an up-to-date recorded run) after verifying it."""
    from ckreg.verify import NO_TARGET, recover_scaler, verify_pair

    t0 = time.perf_counter()
    outcome = Outcome(name=item.name, action="register", status="failed", reason=item.reason)
    lock = read_lock(item.lock_path)
    if not item.existing and lock is not None and lock.get("runs"):
        return _register_recorded_group(item, dataset, lock, outcome, progress, reg_lock, t0)
    if item.existing:
        ckpt, scaler, source = item.existing[0], item.scaler, "archive"
    elif lock is not None:
        outs = lock.get("outputs") or {}
        ckpt = (outs.get("weights") or outs.get("ckpt") or {}).get("path")
        scaler = (outs.get("scaler") or {}).get("path")
        source = "ckreg retrain"
    else:
        outcome.error = "nothing to register"
        return outcome
    outcome.ckpt, outcome.scaler = ckpt, scaler
    res = verify_pair(ckpt, scaler, dataset, expect_acc=item.expect_acc, tolerance=item.tolerance,
                      split=item.metric_split, target_source=item.target_source) if scaler else None
    provenance: dict[str, Any] = {"source": source, "model": item.name, "manifest": item.manifest,
                                  "source_path": str(ckpt), "data": item.data, "data_hash": dataset.data_hash,
                                  "ckreg_version": __version__,
                                  "class_names": list(getattr(dataset, "class_names", []) or [])}
    if lock is not None and source != "archive":
        provenance.update({"recipe": (lock.get("inputs") or {}).get("recipe"), "input_hash": lock.get("input_hash"),
                           "inputs": lock.get("inputs"), "run_dir": lock.get("run_dir"), "trainer_version": lock.get("trainer")})
    if item.expect_acc is None:
        outcome.status, outcome.verified = "unverified", False
        outcome.accuracy = res.accuracy if res else None
        outcome.error = f"not registered: {NO_TARGET}"
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    if res is None or (not res.passed and res.loaded and res.finite is not False):
        scaler_dir = Path(item.out_root) / item.name / "scalers"
        rec = _reuse_recovered(ckpt, scaler_dir, dataset, item)
        if rec is None:
            rec = recover_scaler(ckpt, dataset, out_dir=scaler_dir, expect_acc=item.expect_acc,
                                 tolerance=item.tolerance, split=item.metric_split)
        if not rec.passed:
            outcome.error = ("pair fails verification and no recipe recovers the scaler: "
                             + "; ".join((res.reasons if res else []) + rec.reasons))
            outcome.accuracy = res.accuracy if res else None
            outcome.verified = False
            outcome.wall_s = time.perf_counter() - t0
            return outcome
        provenance["scaler"] = {"recovered": True, "recipe": rec.recipe, "path": rec.path,
                                "replaces": scaler, "replaced_accuracy": res.accuracy if res else None,
                                "chosen_by": rec.chosen_by}
        scaler, outcome.scaler, outcome.scaler_recipe = rec.path, rec.path, rec.recipe
        res = rec.verification
    if res is None or not res.passed:
        outcome.error = "pair fails verification: " + "; ".join(res.reasons if res else ["no scaler"])
        outcome.verified = False
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    outcome.accuracy, outcome.verified = res.accuracy, True
    try:
        _register(item, ckpt, scaler, None, res, provenance, outcome, reg_lock)
        outcome.status = "registered"
    except CkregError as exc:
        outcome.error = f"registration failed: {exc.render()}"
    if lock is not None and source != "archive" and outcome.version is not None:
        lock["registered"] = {"registry": item.registry, "ref": f"{item.name}@{outcome.version}",
                              "aliases": outcome.aliases}
        _write_json_atomic(Path(item.lock_path), lock)
    outcome.wall_s = time.perf_counter() - t0
    progress(f"{item.name}: {outcome.status}"
             + (f" as {item.name}@{outcome.version}" if outcome.version else "")
             + (f" (scaler recovered by {outcome.scaler_recipe})" if outcome.scaler_recipe else ""))
    return outcome


def _register_recorded_group(item: PlanItem, dataset, lock: dict, outcome: Outcome, progress: Progress,
                             reg_lock: threading.Lock, t0: float) -> Outcome:
    """Register an up-to-date seeded run (e.g. trained without a target, verified now): every seed's
    pair verified again, the verified ones registered, `@best` the best by validation."""
    from ckreg.verify import verify_pair

    inputs = lock.get("inputs") or {}
    runs = []
    seeds = [p["seed"] for p in _lock_pairs(lock)]
    for p in _lock_pairs(lock):
        run = {**p, "res": None, "spec": None}
        if not p.get("ckpt") or not Path(p["ckpt"]).is_file():
            run["error"] = "recorded checkpoint missing"
        else:
            run["res"] = verify_pair(p["ckpt"], None if p.get("image") else p.get("scaler"), dataset,
                                     expect_acc=item.expect_acc, tolerance=item.tolerance, split=item.metric_split,
                                     target_source=item.target_source)
            run["provenance"] = {
                "source": "ckreg retrain", "model": item.name, "manifest": item.manifest, "data": item.data,
                "data_hash": getattr(dataset, "data_hash", None), "recipe": inputs.get("recipe"), "inputs": inputs,
                "input_hash": lock.get("input_hash"), "run_dir": p.get("run_dir"), "trainer_version": lock.get("trainer"),
                "ckreg_version": __version__, "seed": p["seed"], "seeds": seeds, "group": lock.get("run_dir"),
                "val_accuracy": p.get("val_accuracy"), "best_val_loss": p.get("best_val_loss"),
                "test_accuracy": p.get("test_accuracy"),
                "class_names": list(getattr(dataset, "class_names", []) or [])}
        runs.append(run)
    error = None
    try:
        _register_group(item, runs, outcome, reg_lock)
    except CkregError as exc:
        error = f"registration failed: {exc.render()}"
    _finish_group(item, runs, outcome, error)
    outcome.run_dir = lock.get("run_dir")
    if outcome.version is not None:
        lock["registered"] = {"registry": item.registry, "ref": f"{item.name}@{outcome.version}",
                              "versions": {str(r["seed"]): f"{item.name}@{r['version']}" for r in runs
                                           if r.get("version") is not None}, "aliases": outcome.aliases}
        lock["runs"] = [{**lr, "version": r.get("version"), "verified": getattr(r.get("res"), "passed", None)}
                        for lr, r in zip(lock["runs"], runs)]
        _write_json_atomic(Path(item.lock_path), lock)
    outcome.wall_s = time.perf_counter() - t0
    progress(f"{item.name}: {outcome.status}"
             + (f", {item.name}@best -> {item.name}@{outcome.version} (seed {outcome.best_seed}, by validation)"
                if outcome.version is not None else ""))
    return outcome


def _reuse_recovered(ckpt: str, scaler_dir: Path, dataset, item: PlanItem):
    """A scaler an earlier run recovered for this checkpoint that still verifies (so a re-run adds no version)."""
    from ckreg.verify import RecoverResult, verify_pair

    if not scaler_dir.is_dir():
        return None
    digest = file_sha256(ckpt)
    for path in sorted(scaler_dir.glob(f"{Path(ckpt).stem}.scaler*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8")).get("recovered") or {}
        except (OSError, ValueError):
            continue
        if rec.get("checkpoint_sha256") != digest:
            continue
        res = verify_pair(ckpt, path, dataset, expect_acc=item.expect_acc, tolerance=item.tolerance,
                          split=item.metric_split)
        if res.passed:
            return RecoverResult(ckpt=str(ckpt), data=item.data, data_hash=res.data_hash, recipe=rec.get("recipe"),
                                 accuracy=res.accuracy, passed=True, chosen_by=rec.get("chosen_by", "reused"),
                                 expect_acc=item.expect_acc, tolerance=item.tolerance, path=str(path),
                                 reasons=[f"reused {path.name}, recovered earlier"], verification=res)
    return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_retrain(plan: list[PlanItem], jobs: int = 1, progress: Progress | None = None, *,
                trainer: Trainer | None = None) -> RetrainResult:
    """Carry out a plan: train (fresh `vN` folders), verify, register; `jobs` models at a time.

    `trainer` defaults to `ckreg.train.train` (tests inject a fake with the
    same signature). A model that fails never stops the others; the result
    says what happened to each (exit code 1 when any failed).
    """
    from ckreg.verify import load_data

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    say_lock = threading.Lock()

    def safe_say(msg: str) -> None:
        with say_lock:
            say(msg)

    reg_lock = threading.Lock()
    datasets: dict[str, Any] = {}

    def data_for(item: PlanItem):
        key = item.data or ""
        if key not in datasets:
            datasets[key] = load_data(item.data)
        return datasets[key]

    for item in plan:            # load once, before any thread starts
        if item.action != "skip":
            data_for(item)

    def one(item: PlanItem) -> Outcome:
        if item.action == "skip":
            return Outcome(name=item.name, action="skip", status="skipped", reason=item.reason)
        try:
            if item.action == "train":
                return _run_train(item, data_for(item), trainer, safe_say, reg_lock)
            return _run_register(item, data_for(item), safe_say, reg_lock)
        except (CkregError, OSError) as exc:   # this model's problem; a bug elsewhere exits 4
            msg = exc.render() if isinstance(exc, CkregError) else f"{type(exc).__name__}: {exc}"
            return Outcome(name=item.name, action=item.action, status="failed", reason=item.reason, error=msg)

    # a student waits for the teacher it names (PlanItem.after), and is not trained if that failed
    names = {i.name for i in plan}
    done: dict[str, Outcome] = {}
    pending = list(plan)
    while pending:
        ready = [i for i in pending if all(d in done or d not in names for d in i.after)] or pending[:1]
        todo = []
        for item in ready:
            bad = [d for d in item.after if d in done and done[d].status == "failed"]
            if bad and item.action == "train":
                done[item.name] = Outcome(name=item.name, action=item.action, status="failed", reason=item.reason,
                                          error=f"not trained: its teacher {bad[0]} failed in this run")
            else:
                todo.append(item)
        if jobs == 1 or len(todo) < 2:
            results = [one(item) for item in todo]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(one, todo))
        done.update({o.name: o for o in results})
        pending = [i for i in pending if i.name not in done]
    outcomes = [done[i.name] for i in plan]
    registry = next((i.registry for i in plan if i.registry), None)
    return RetrainResult(outcomes=outcomes, registry=registry, wall_s=time.perf_counter() - t0)


__all__ = [
    "PlanItem", "Outcome", "RetrainResult", "plan_retrain", "run_retrain", "compute_inputs", "recipe_for",
    "read_lock", "lock_path", "next_run_dir", "declared_for_checkpoint", "archive_root_for", "file_sha256",
    "LOCK_NAME",
]
