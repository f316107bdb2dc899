"""The evaluator (issue #3, `ckreg eval`): accuracy, per-class accuracy, confusion matrix, latency.

`split="test"` scores the episodes the model was NOT trained on: the test ids
recorded in the metrics.json beside the checkpoint when it describes this very
data (same data hash), else the deterministic split recomputed from the seed
and fractions the checkpoint's metadata records, else from `seed` (default 0).
`split="all"` scores every episode (how the spec's 99.4% for the archive's
MS3DGRU is measured).

Latency is the mean wall time of one forward pass per episode at batch size 1,
with `torch.inference_mode()` and ONE intra-op thread (stated in the result),
over a deterministic sample of episodes after a short warm-up.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from ckreg.errors import UsageError
from ckreg.train import common
from ckreg.train.ablation import scale_ablation
from ckreg.train.results import EvalResult

LATENCY_SAMPLES = 100
LATENCY_WARMUP = 5


def _training_record(ckpt: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint says about its own training run: seed, fractions, recorded test ids.

    `meta` is `ckreg.zoo.load_state_dict`'s metadata: Lightning `hyper_parameters`
    or the safetensors `__metadata__` map (ckreg.seed, ckreg.recipe, ckreg.data_hash).
    """
    rec: dict[str, Any] = {}
    meta = dict(meta or {})
    if isinstance(meta.get("__metadata__"), dict):
        meta.update(meta["__metadata__"])
    hp = meta.get("hyper_parameters")
    if isinstance(hp, dict):
        for key in ("seed", "val_fraction", "test_fraction", "data_hash"):
            if hp.get(key) is not None:
                rec[key] = hp[key]
    if isinstance(meta, dict):
        if meta.get("ckreg.seed") is not None and "seed" not in rec:
            rec["seed"] = meta["ckreg.seed"]
        if meta.get("ckreg.recipe"):
            try:
                recipe = json.loads(meta["ckreg.recipe"])
                for key in ("val_fraction", "test_fraction"):
                    rec.setdefault(key, recipe.get(key))
            except (TypeError, ValueError):
                pass
        if meta.get("ckreg.data_hash"):
            rec.setdefault("data_hash", meta["ckreg.data_hash"])
    metrics_path = ckpt.parent / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = None
        if isinstance(metrics, dict):
            split = metrics.get("split") or {}
            rec["metrics"] = {"path": str(metrics_path), "data_hash": metrics.get("data_hash"),
                              "seed": metrics.get("seed"), "test_ids": split.get("test"),
                              "val_fraction": split.get("val_fraction"),
                              "test_fraction": split.get("test_fraction"),
                              "weights_sha256": metrics.get("weights_sha256")}
    return rec


def _test_indices(ds, rec: dict[str, Any], seed: int | None, warnings: list[str]):
    """(indices, seed used, how they were chosen)."""
    import numpy as np

    from ckreg.data import split as make_split

    m = rec.get("metrics") or {}
    if seed is None and m.get("test_ids") and m.get("data_hash") == ds.data_hash:
        where = {eid: i for i, eid in enumerate(ds.ids)}
        ids = m["test_ids"]
        if all(eid in where for eid in ids):
            return (np.asarray(sorted(where[e] for e in ids), dtype=np.int64), m.get("seed"),
                    f"test ids recorded in {m['path']}")
    recorded = rec.get("seed", m.get("seed"))
    if seed is None:
        used = int(recorded) if recorded is not None else 0
        source = "seed recorded in the checkpoint" if recorded is not None else "seed 0 (none recorded)"
    else:
        used = int(seed)
        source = f"seed {used} (given)"
        if recorded is not None and int(recorded) != used:
            warnings.append(f"the checkpoint was trained with seed {recorded}; with seed {used} the "
                            "'test' episodes may include training episodes")
    val = rec.get("val_fraction", m.get("val_fraction")) or 0.15
    test = rec.get("test_fraction", m.get("test_fraction")) or 0.15
    data_hash = rec.get("data_hash")
    if data_hash and data_hash != ds.data_hash:
        warnings.append("the checkpoint was trained on different data (data hash differs); "
                        "its test split cannot be reproduced exactly")
    sp = make_split(ds, seed=used, val=float(val), test=float(test))
    return np.asarray(sp.test, dtype=np.int64), used, source


def measure_latency(model, X, mask, samples: int = LATENCY_SAMPLES, seed: int = 0,
                    threads: int = 1) -> dict[str, Any]:
    """Mean/median/p95 ms per episode at batch 1, inference mode, `threads` intra-op threads."""
    import numpy as np
    import torch

    n = len(X)
    if n == 0:
        return {"mean_ms": None, "samples": 0}
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(samples, n), replace=False)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in list(pick[:LATENCY_WARMUP]):
                xb, mb = common.to_tensors(X[i:i + 1], mask[i:i + 1])
                model(xb, mb)
            for i in pick:
                xb, mb = common.to_tensors(X[i:i + 1], mask[i:i + 1])
                t0 = time.perf_counter()
                model(xb, mb)
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(prev)
    times.sort()
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times),
            "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))],
            "samples": len(times), "batch": 1, "threads": threads, "mode": "torch.inference_mode"}


def evaluate(ckpt: str | Path, scaler: Any, data: Any, split: str = "test", seed: int | None = None, *,
             latency_samples: int = LATENCY_SAMPLES, batch_size: int = 256,
             family: str | None = None, ablate: bool = True) -> EvalResult:
    """Score a checkpoint (.ckpt / .safetensors / state_dict file) with its scaler on a dataset.

    `scaler` is a path (scaler.json, or a scaler.pkl read by the restricted
    unpickler) or a Scaler. Raises CkregError subclasses for bad input before
    any scoring: unreadable checkpoint, scaler width != model input, data
    channels != model input, labels outside the model's classes, empty data.
    Scale-aware families also get `scale_ablation` (accuracy with each scale's
    input zeroed, `ckreg.train.ablation`) and `scale_norms` (the inspector's
    per-scale weight norms of the first cell); `ablate=False` skips both.
    """
    if split not in ("test", "all"):
        raise UsageError(f"unknown split {split!r}", hint="use test or all")
    if latency_samples < 0:
        raise UsageError(f"latency samples must be >= 0 (got {latency_samples})")
    import numpy as np

    from ckreg import zoo
    from ckreg.scaler import load_scaler

    ckpt = Path(ckpt)
    if not ckpt.exists():
        raise UsageError("no such checkpoint", path=str(ckpt))
    scaler_path = None
    if isinstance(scaler, (str, Path)):
        scaler_path = Path(scaler)
        if not scaler_path.exists():
            raise UsageError("no such scaler file", path=str(scaler_path),
                             hint="pass the scaler.json saved next to the checkpoint")
        scaler = load_scaler(scaler_path)
    model, spec, _inspection = zoo.load_checkpoint(ckpt, family=family)
    common.check_scaler(spec, scaler, str(scaler_path or ""))
    ds = common.as_dataset(data)
    common.check_channels(spec, ds.n_channels, getattr(ds, "source", "") or str(data))
    common.check_labels(spec, ds)

    warnings: list[str] = []
    if ds.num_classes != spec.num_classes:
        warnings.append(f"the data has {ds.num_classes} classes, the model {spec.num_classes}")
    if split == "all":
        idx = np.arange(len(ds), dtype=np.int64)
        used_seed, source = seed, "every episode"
    else:
        _sd, meta = zoo.load_state_dict(ckpt)   # the run's seed and fractions (tiny models: cheap)
        idx, used_seed, source = _test_indices(ds, _training_record(ckpt, meta), seed, warnings)
    X = common.scale(scaler, np.asarray(ds.X, dtype=np.float32)[idx])
    mask = np.asarray(ds.mask, dtype=np.uint8)[idx]
    y = np.asarray(ds.y, dtype=np.int64)[idx]

    logits = common.predict_logits(model, X, mask, batch_size)
    pred = logits.argmax(dim=1).numpy() if len(X) else np.zeros(0, dtype=np.int64)
    k = max(spec.num_classes, ds.num_classes)
    names = list(ds.class_names) + [f"class{i}" for i in range(ds.num_classes, k)]
    cm = common.confusion_matrix(y, pred, k)
    acc, support = common.per_class(cm, names)
    correct = int((pred == y).sum())
    ablation = scale_ablation(model, X, mask, y, base_pred=pred, batch_size=batch_size) if ablate else None
    norms = None
    if ablation is not None:
        scales = getattr(_inspection, "scales", None)
        if scales is None:
            from ckreg.inspect import inspect_path

            scales = inspect_path(str(ckpt)).scales
        if scales is not None and scales.cells:
            norms = dict(scales.cells[0].per_scale)
    lat = measure_latency(model, X, mask, samples=latency_samples, seed=used_seed or 0) if latency_samples else {}
    params, buffers = common.count_params(model)
    return EvalResult(
        checkpoint=str(ckpt), scaler=str(scaler_path) if scaler_path else None,
        data=getattr(ds, "source", "") or (str(data) if isinstance(data, (str, Path)) else None),
        family=spec.family, split=split, split_source=source, seed=used_seed,
        n_episodes=int(len(idx)), accuracy=(correct / len(idx)) if len(idx) else 0.0, correct=correct,
        class_names=names, per_class=acc, per_class_support=support, confusion_matrix=cm,
        latency_ms=lat.get("mean_ms"), latency=lat, params=params, buffers=buffers,
        data_hash=ds.data_hash, scale_ablation=ablation, scale_norms=norms, warnings=warnings,
    )
