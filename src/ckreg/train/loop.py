"""The bundled trainer (issue #3, "Trainer"): one function, no UI.

`train()` checks everything it can BEFORE the first step (family, `--set`
keys, channels, classes, output folder), fits the scaler with the
`train-split` recipe on the training episodes only, then runs AdamW with early
stopping on validation loss. Every new best epoch is written to `out` at once,
atomically (temp name in the same folder, fsync, `os.replace`), so Ctrl-C or a
kill leaves the best checkpoint so far and never half a file.

Determinism (CPU): the same seed, data and thread count give bit-identical
weights. Initialisation and dropout draw from `torch.manual_seed(seed)` inside
`torch.random.fork_rng` (the caller's RNG state is left alone), shuffles from a
`numpy.random.Generator(seed)`, the split from a hash of (seed, episode id),
and `torch.use_deterministic_algorithms(True)` is on for the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from ckreg import __version__
from ckreg.arch import ArchSpec
from ckreg.errors import DataError, SpecError, UsageError
from ckreg.train import common, recipes
from ckreg.fsutil import leftover_temps, write_bytes, write_text, write_with
from ckreg.train.results import OUTPUT_FILES, EpochRecord, ProgressEvent, TrainResult

# Defaults for new models. Upstream (the archive's optimizer_states and
# EarlyStopping callbacks) used AdamW lr 1e-3 (3e-4 for MS3DGRU), weight decay
# 1e-3 and patience 15 on val/loss; the bench (docs/train.md) checks these reach
# >= 99% test accuracy for GRU and MS3DStackedGRU on SignGlove.
DEFAULTS: dict[str, Any] = dict(
    epochs=100,
    batch_size=32,
    lr=1e-3,
    weight_decay=1e-3,
    patience=15,
    # Patience counts epochs without an improvement of at least min_delta over the loss at the
    # last reset; the best weights are still the lowest validation loss seen. Measured on
    # SignGlove GRU: val loss creeps down by <1e-4 per epoch long after val accuracy is 100%,
    # so min_delta=0 ran all 100 epochs; 1e-3 stops at ~60 (docs/train.md).
    min_delta=1e-3,
    grad_clip=1.0,
    val=0.15,
    test=0.15,
    lr_factor=0.5,        # ReduceLROnPlateau on val loss ...
    lr_patience=5,        # ... after this many epochs without improvement
    # One intra-op thread: bit-identical results on any machine, and no OpenMP
    # oversubscription on a shared 2-core box (measured: a GRU epoch took 58 s
    # with 2 threads under load vs 1.6 s with 1; docs/train.md). --threads N to change.
    threads=1,
)

# The Lightning checkpoint layout we mirror: that of the archive's checkpoints
# (`ModelCheckpoint(save_weights_only=True)` shape: no optimizer or loop state).
LIGHTNING_FORMAT_VERSION = "2.2.2"

ProgressFn = Callable[[ProgressEvent], None]


def _check_options(seed: int, epochs: int, batch_size: int, lr: float, patience: int,
                   weight_decay: float, threads: int | None) -> None:
    problems = []
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"seed must be a non-negative integer (got {seed!r})")
    if epochs < 1:
        problems.append(f"epochs must be >= 1 (got {epochs})")
    if batch_size < 1:
        problems.append(f"batch size must be >= 1 (got {batch_size})")
    if not (lr > 0 and math.isfinite(lr)):
        problems.append(f"learning rate must be a positive number (got {lr})")
    if patience < 0:
        problems.append(f"patience must be >= 0 (got {patience})")
    if weight_decay < 0:
        problems.append(f"weight decay must be >= 0 (got {weight_decay})")
    if threads is not None and threads < 1:
        problems.append(f"threads must be >= 1 (got {threads})")
    if problems:
        raise UsageError("; ".join(problems))


def existing_outputs(out: Path) -> list[str]:
    return [name for name in OUTPUT_FILES if (out / name).exists()]


def check_out(out: str | Path, force: bool) -> Path:
    """Refuse to clobber a previous run's outputs unless `force` (house style: never overwrite silently)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out exists and is not a folder", path=str(out), hint="choose a folder name")
    found = existing_outputs(out) if out.is_dir() else []
    if found and not force:
        raise UsageError(f"already holds training outputs ({', '.join(found)})", path=str(out),
                         hint="choose a new --out folder, or pass --force to replace them")
    return out


def _set_deterministic(mode: bool, warn_only: bool) -> None:
    """torch.use_deterministic_algorithms without its `import torch._inductor` (seconds, up to 19 s
    measured on a loaded 2-core box) when inductor is not loaded: its only extra effect is
    inductor's own flag, which matters to torch.compile, which the trainer does not use."""
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if "torch._inductor.config" in sys.modules or setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def _deterministic(seed: int, threads: int | None):
    """Seeded, deterministic torch for the duration of a run; restores the caller's settings."""
    import torch

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _set_deterministic(True, warn_only=True)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            _set_deterministic(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)


def _safetensors_metadata(spec: ArchSpec, recipe: dict, data_hash: str, wsha: str, epoch: int,
                          seed: int, global_step: int | None = None,
                          lineage: list | None = None) -> dict[str, str]:
    """`__metadata__` is a string -> string map (safetensors format); JSON inside where structured."""
    extra = {}
    if global_step is not None:
        extra["ckreg.global_step"] = str(int(global_step))
    if lineage:
        extra["ckreg.lineage"] = json.dumps(lineage, sort_keys=True)   # read by `ckreg lineage`
    return {**extra,
        "format": "pt",
        "ckreg.version": __version__,
        "ckreg.family": spec.family,
        "ckreg.spec": spec.model_dump_json(),
        "ckreg.recipe": json.dumps(recipe, sort_keys=True),
        "ckreg.data_hash": data_hash,
        "ckreg.weights_sha256": wsha,
        "ckreg.epoch": str(epoch),
        "ckreg.seed": str(seed),
    }


def lightning_checkpoint(state: dict, spec: ArchSpec, recipe: dict, epoch: int, global_step: int,
                         wsha: str, data_hash: str, best_val_loss: float | None, lineage: list | None = None) -> dict:
    """A Lightning-shaped dict: only tensors, str, numbers, lists and dicts (loads with weights_only=True)."""
    import torch

    hparams = spec.model_dump()
    hparams.update({k: v for k, v in recipe.items() if k not in hparams})
    ckpt: dict[str, Any] = {
        "epoch": int(epoch),                    # 0-based, as Lightning counts
        "global_step": int(global_step),
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "state_dict": dict(state),
        "hyper_parameters": hparams,
        "ckreg": {"version": __version__, "weights_sha256": wsha, "data_hash": data_hash},
    }
    if lineage:
        ckpt["ckreg"]["lineage"] = list(lineage)
    if best_val_loss is not None:
        score = torch.tensor(float(best_val_loss))
        ckpt["callbacks"] = {
            "EarlyStopping{'monitor': 'val/loss', 'mode': 'min'}": {
                "wait_count": 0, "stopped_epoch": 0, "best_score": score,
                "patience": int(recipe.get("patience", 0)),
            },
        }
    return ckpt


def _torch_bytes(obj: Any) -> bytes:
    """torch.save into memory: the zip's folder is then "archive" (as Lightning's files have),
    not the temporary file's name, so identical checkpoints are identical bytes."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _score(model, X, mask, y, class_names, batch_size=256) -> dict[str, Any]:
    import numpy as np

    k = len(class_names)
    if len(X) == 0:
        return {"n_episodes": 0, "accuracy": None, "correct": 0, "class_names": list(class_names),
                "per_class": {n: None for n in class_names}, "per_class_support": {n: 0 for n in class_names},
                "confusion_matrix": [[0] * k for _ in range(k)]}
    logits = common.predict_logits(model, X, mask, batch_size)
    pred = logits.argmax(dim=1).numpy()
    cm = common.confusion_matrix(y, pred, k)
    acc, support = common.per_class(cm, class_names)
    correct = int((pred == np.asarray(y)).sum())
    return {"n_episodes": int(len(X)), "accuracy": correct / len(X), "correct": correct,
            "class_names": list(class_names), "per_class": acc, "per_class_support": support,
            "confusion_matrix": cm}


def train(
    family: str,
    data: Any,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    patience: int = DEFAULTS["patience"],
    progress: ProgressFn | None = None,
    *,
    weight_decay: float = DEFAULTS["weight_decay"],
    min_delta: float = DEFAULTS["min_delta"],
    grad_clip: float | None = DEFAULTS["grad_clip"],
    val: float = DEFAULTS["val"],
    test: float = DEFAULTS["test"],
    threads: int | None = DEFAULTS["threads"],
    force: bool = False,
    pkl: bool = False,
    png: bool = True,
    optim: "recipes.OptimConfig | None" = None,
    imaging: "recipes.ImagingConfig | None" = None,
    teacher: "recipes.Teacher | None" = None,
    kd_temperature: float = 4.0,
    kd_lambda: float = 0.7,
) -> TrainResult:
    """Train `family` on `data` (folder, .npz or Dataset) and write the outputs into `out`.

    Returns a TrainResult; `status == "interrupted"` when a KeyboardInterrupt
    (Ctrl-C, or raised by `progress`) stopped it after at least one epoch: the
    best checkpoint so far is then complete on disk, and metrics.json says so.
    A KeyboardInterrupt before the first epoch ends propagates and leaves
    nothing behind. Raises CkregError subclasses for bad input before training.

    `optim` chooses SGD (momentum, cosine or step schedule) instead of AdamW;
    `imaging` trains on GASF/GADF/MTF images (WRN, conv_dim=2); `teacher`
    distils from a trained model with `kd_temperature` and `kd_lambda`
    (`ckreg.train.recipes`), and the student records `distilled-from` it.
    """
    t_start = time.perf_counter()
    overrides = dict(overrides or {})
    max_epochs = int(DEFAULTS["epochs"] if epochs is None else epochs)
    _check_options(seed, max_epochs, batch_size, lr, patience, weight_decay, threads)
    if not (min_delta >= 0):
        raise UsageError(f"min_delta must be >= 0 (got {min_delta})")

    # -- everything that can be wrong is checked before the first step ------
    ArchSpec.for_family(family, **overrides)          # unknown family / --set key
    optim, imaging, teacher = recipes.coerce(optim, imaging, teacher)
    optim = optim or recipes.OptimConfig()
    optim.check()
    if imaging is not None:
        imaging.check()
    if teacher is not None:
        recipes.check_kd(kd_temperature, kd_lambda)
    out = check_out(out, force)
    emit = progress or (lambda ev: None)

    def setup(stage: str) -> None:
        emit(ProgressEvent("setup", 0, max_epochs, stage=stage, elapsed_s=time.perf_counter() - t_start))

    setup("loading data")
    ds = common.as_dataset(data)
    spec = (recipes.resolve_image_spec(family, overrides, ds, imaging) if imaging is not None
            else common.resolve_spec(family, overrides, ds))
    common.check_labels(spec, ds)

    import numpy as np
    import torch

    from ckreg import zoo
    from ckreg.data import split as make_split
    from ckreg.scaler import fit_scaler

    setup("splitting and fitting the scaler")
    sp = make_split(ds, seed=seed, val=val, test=test)
    if len(sp.train) == 0 or len(sp.val) == 0:
        raise DataError(f"too few episodes to split ({len(ds)}: {len(sp.train)} train, {len(sp.val)} val)",
                        path=getattr(ds, "source", "") or None, hint="training needs a few episodes per class")
    scaler = fit_scaler(ds, recipe="train-split", split=sp)
    if imaging is None:          # an image model's input width is methods x channels, not the scaler's
        common.check_scaler(spec, scaler)
    Xs = common.scale(scaler, np.asarray(ds.X, dtype=np.float32))
    mask = np.asarray(ds.mask, dtype=np.uint8)
    y = np.asarray(ds.y, dtype=np.int64)
    lineage: list[dict] = []
    teacher_logits = None
    if teacher is not None:
        t_info = teacher.describe()
        teacher_logits = teacher.logits(np.asarray(ds.X, dtype=np.float32), mask)
        if teacher_logits.shape[1] != spec.num_classes:
            raise SpecError(f"the teacher has {teacher_logits.shape[1]} classes, the student {spec.num_classes}",
                            path=str(teacher.path))
        lineage.append({"relation": "distilled-from", "parent": {k: t_info[k] for k in ("ref", "path", "weights_sha256")}})
    if imaging is not None:
        # [N, methods x C, S, S] from the raw values (the fields are invariant to the scaler), the range
        # and MTF edges fitted on the training split (recorded in the recipe), once per process and data
        imaging = imaging.fitted(ds.X, mask, sp.train)
        Xs = imaging.images(np.asarray(ds.X, dtype=np.float32), mask)
    t_data = time.perf_counter() - t_start

    warnings: list[str] = []
    if ds.problems:
        warnings.append(f"{len(ds.problems)} episode(s) skipped or degenerate (listed in metrics.json)")
    stale = leftover_temps(out)
    if stale:
        warnings.append(f"{len(stale)} temporary file(s) from an earlier killed run in {out} "
                        f"(e.g. {stale[0].name}); safe to delete")

    recipe = {
        **optim.describe(lr, weight_decay, max_epochs, DEFAULTS["lr_factor"], DEFAULTS["lr_patience"]),
        "batch_size": int(batch_size), "max_epochs": max_epochs, "patience": int(patience),
        "min_delta": float(min_delta), "threads": threads,
        "monitor": "val/loss", "grad_clip": grad_clip, "seed": int(seed),
        "val_fraction": float(val), "test_fraction": float(test), "split_method": sp.method,
        "scaler_recipe": getattr(scaler, "recipe", "train-split"), "loss": "cross_entropy",
        "data_hash": ds.data_hash, "trainer": f"ckreg {__version__}",
    }
    if imaging is not None:
        recipe["imaging"] = imaging.describe()
    if teacher is not None:
        recipe.update(loss="distillation", kd_temperature=float(kd_temperature), kd_lambda=float(kd_lambda),
                      teacher=t_info)
    files = {"weights": out / "weights.safetensors", "ckpt": out / "model.ckpt",
             "scaler_json": out / "scaler.json", "metrics": out / "metrics.json"}
    if pkl:
        files["scaler_pkl"] = out / "scaler.pkl"
    if png:
        files["png"] = out / "confusion_matrix.png"

    history: list[EpochRecord] = []
    epoch_times: list[float] = []
    state: dict[str, Any] = {"best": None, "best_epoch": 0, "best_val": math.inf, "best_step": 0,
                             "wsha": None, "scaler_written": False,
                             "saved_epoch": 0}
    def base_metrics(status: str, stop_reason: str) -> dict[str, Any]:
        return {
            "ckreg_version": __version__, "status": status, "stop_reason": stop_reason,
            "family": spec.family, "spec": spec.model_dump(mode="json"), "recipe": recipe,
            "seed": int(seed), "data_hash": ds.data_hash, "data": ds.summary(),
            "split": sp.to_dict(), "params": params, "buffers": buffers,
            "epochs_run": len(history), "best_epoch": state["best_epoch"],
            "best_val_loss": None if state["best"] is None else state["best_val"],
            "global_step": state["best_step"], "weights_sha256": state["wsha"],
            "history": [h.model_dump() for h in history],
            "wall_time_s": round(time.perf_counter() - t_start, 3), "data_time_s": round(t_data, 3),
            "epoch_times_s": [round(t, 4) for t in epoch_times],
            "mean_epoch_s": round(sum(epoch_times) / len(epoch_times), 4) if epoch_times else None,
            "threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "numpy_version": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "files": {k: p.name for k, p in files.items()}, "warnings": list(warnings),
        }

    def save_best() -> None:
        """Write the current best as a complete set: scaler (once), weights, ckpt, metrics."""
        out.mkdir(parents=True, exist_ok=True)
        if not state["scaler_written"]:
            write_with(files["scaler_json"], scaler.save_json, overwrite=force)
            if pkl:
                write_with(files["scaler_pkl"], scaler.save_pickle, overwrite=force)
            elif force and (out / "scaler.pkl").exists():
                # a previous run's pickle must not sit beside new weights (--force replaces outputs)
                (out / "scaler.pkl").unlink()
            state["scaler_written"] = True
        best = state["best"]
        wsha = common.weights_sha256(best)
        state["wsha"] = wsha
        meta = _safetensors_metadata(spec, recipe, ds.data_hash, wsha, state["best_epoch"], seed,
                                     global_step=state["best_step"], lineage=lineage)
        # this run's own outputs, replaced as the best epoch improves (check_out refused a foreign run's)
        write_bytes(files["weights"], common.safetensors_bytes(best, meta), overwrite=True)
        ck = lightning_checkpoint(best, spec, recipe, state["best_epoch"] - 1, state["best_step"], wsha,
                                  ds.data_hash, state["best_val"], lineage=lineage)
        write_bytes(files["ckpt"], _torch_bytes(ck), overwrite=True)
        write_text(files["metrics"], json.dumps(base_metrics("running", ""), indent=2, ensure_ascii=False),
                   overwrite=True)
        state["saved_epoch"] = state["best_epoch"]

    setup("building the model")
    with _deterministic(seed, threads):
        model = zoo.build(spec)
        params, buffers = common.count_params(model)
        opt, sched, sched_kind = recipes.build_optimizer(model, optim, lr, weight_decay, max_epochs,
                                                         DEFAULTS["lr_factor"], DEFAULTS["lr_patience"])
        loss_fn = torch.nn.CrossEntropyLoss()
        rng = np.random.default_rng(seed)
        train_idx = np.asarray(sp.train, dtype=np.int64)
        val_idx = np.asarray(sp.val, dtype=np.int64)
        steps = math.ceil(len(train_idx) / batch_size)
        global_step = 0
        since_best = 0
        ref_val = math.inf            # loss at the last patience reset (improvement >= min_delta)
        stop_reason = "max-epochs"
        status = "completed"
        t_train = time.perf_counter()
        emit(ProgressEvent("start", 0, max_epochs, steps=steps, elapsed_s=time.perf_counter() - t_train))
        try:
            for epoch in range(1, max_epochs + 1):
                t_epoch = time.perf_counter()
                model.train()
                order = rng.permutation(train_idx)
                loss_sum, correct, seen = 0.0, 0, 0
                for step in range(steps):
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    xb, mb = common.to_tensors(Xs[idx], mask[idx])
                    yb = torch.from_numpy(y[idx])
                    opt.zero_grad(set_to_none=True)
                    logits = model(xb, mb)
                    if teacher_logits is None:
                        loss = loss_fn(logits, yb)
                    else:
                        loss = recipes.kd_loss(logits, yb, torch.from_numpy(teacher_logits[idx]),
                                               kd_temperature, kd_lambda)
                    loss.backward()
                    if grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    opt.step()
                    global_step += 1
                    loss_sum += float(loss.detach()) * len(idx)
                    correct += int((logits.detach().argmax(1) == yb).sum())
                    seen += len(idx)
                    emit(ProgressEvent("batch", epoch, max_epochs, step + 1, steps, global_step,
                                       loss_sum / seen, correct / seen,
                                       best_epoch=state["best_epoch"] or None,
                                       elapsed_s=time.perf_counter() - t_train))
                with torch.inference_mode():
                    model.eval()
                    vl = common.predict_logits(model, Xs[val_idx], mask[val_idx])
                    yv = torch.from_numpy(y[val_idx])
                    val_loss = float(torch.nn.functional.cross_entropy(vl, yv))
                    val_acc = float((vl.argmax(1) == yv).float().mean())
                if not math.isfinite(val_loss):
                    stop_reason = "diverged"
                    warnings.append(f"validation loss became {val_loss} at epoch {epoch}; stopped "
                                    "(try a smaller --lr)")
                    break
                lr_now = float(opt.param_groups[0]["lr"])
                if sched_kind == "plateau":
                    sched.step(val_loss)
                else:
                    sched.step()
                epoch_times.append(time.perf_counter() - t_epoch)
                history.append(EpochRecord(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen,
                                           val_loss=val_loss, val_acc=val_acc, wall_s=epoch_times[-1], lr=lr_now))
                improved = val_loss < state["best_val"]
                if improved:
                    state.update(best={k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
                                 best_epoch=epoch, best_val=val_loss, best_step=global_step)
                if val_loss < ref_val - min_delta:
                    ref_val, since_best = val_loss, 0
                else:
                    since_best += 1
                emit(ProgressEvent("epoch", epoch, max_epochs, steps, steps, global_step, loss_sum / seen,
                                   correct / seen, val_loss, val_acc, state["best_epoch"], state["best_val"],
                                   time.perf_counter() - t_train))
                if improved:
                    save_best()
                    emit(ProgressEvent("saved", epoch, max_epochs, steps, steps, global_step,
                                       best_epoch=epoch, best_val_loss=val_loss,
                                       elapsed_s=time.perf_counter() - t_train))
                if since_best >= patience:    # Lightning's EarlyStopping: wait_count >= patience
                    stop_reason = "early-stopping"
                    break
        except KeyboardInterrupt:
            if state["best"] is None:
                raise                      # nothing worth keeping; nothing was written
            status, stop_reason = "interrupted", "interrupted"
            if state["saved_epoch"] != state["best_epoch"]:   # interrupted while keeping/writing a best
                save_best()

        if state["best"] is None:          # diverged in epoch 1: nothing to keep
            raise DataError("training diverged before the first epoch ended (non-finite loss)",
                            hint="check the data for NaN/inf values or lower --lr")
        model.load_state_dict(state["best"])
        model.eval()
        test_idx = np.asarray(sp.test, dtype=np.int64)
        test_scores = _score(model, Xs[test_idx], mask[test_idx], y[test_idx], ds.class_names)

    metrics = base_metrics(status, stop_reason)
    metrics.update({
        "test_accuracy": test_scores["accuracy"],
        "per_class_accuracy": test_scores["per_class"],
        "confusion_matrix": test_scores["confusion_matrix"],
        "test": test_scores,
    })
    if png:
        try:
            from ckreg.train.png import write_confusion_png

            acc = test_scores["accuracy"]
            title = f"{spec.family} test" + (f" accuracy {acc:.2%}" if acc is not None else "")
            metrics["png_renderer"] = write_confusion_png(files["png"], test_scores["confusion_matrix"],
                                                          ds.class_names, title, notes=warnings, overwrite=force)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a picture never costs the run
            warnings.append(f"confusion_matrix.png not written: {type(exc).__name__}: {exc}")
            files.pop("png", None)
            metrics["files"].pop("png", None)
    metrics["warnings"] = list(warnings)
    metrics["wall_time_s"] = round(time.perf_counter() - t_start, 3)
    write_text(files["metrics"], json.dumps(metrics, indent=2, ensure_ascii=False), overwrite=True)
    emit(ProgressEvent("end", len(history), max_epochs, best_epoch=state["best_epoch"],
                       best_val_loss=state["best_val"], elapsed_s=time.perf_counter() - t_start))
    return TrainResult(
        out=str(out), family=spec.family, spec=spec.model_dump(mode="json"),
        files={k: str(p) for k, p in files.items()}, status=status, stop_reason=stop_reason,
        epochs_run=len(history), best_epoch=state["best_epoch"], best_val_loss=state["best_val"],
        test_accuracy=test_scores["accuracy"], n_test=test_scores["n_episodes"], params=params,
        seed=int(seed), data_hash=ds.data_hash, weights_sha256=state["wsha"],
        wall_time_s=metrics["wall_time_s"], epoch_times_s=metrics["epoch_times_s"],
        warnings=list(warnings), metrics=metrics,
    )
