"""One configuration over several seeds: one run per seed, reported each and as mean ± std.

Runs go to `out/seed-<s>/` (each a complete trainer output); `out/seeds.json`
holds the table. The best run is chosen by VALIDATION (accuracy at the best
epoch, then the lower validation loss), never by test accuracy, so the
reported test mean stays an honest estimate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, Field

from ckreg.errors import UsageError
from ckreg.fsutil import write_text
from ckreg.train.results import TrainResult

SUMMARY = "seeds.json"


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """`"0,1,2"` -> [0, 1, 2]; distinct non-negative integers."""
    if isinstance(text, str):
        try:
            seeds = [int(p) for p in text.replace(" ", "").split(",") if p != ""]
        except ValueError:
            raise UsageError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    else:
        seeds = [int(s) for s in text]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: give distinct non-negative integers, e.g. --seeds 0,1,2")
    return seeds


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; 0 for a single run)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


class SeedRun(BaseModel):
    seed: int
    out: str
    test_accuracy: float | None
    val_accuracy: float | None
    best_val_loss: float | None
    best_epoch: int
    epochs_run: int
    mean_epoch_s: float | None
    weights_sha256: str | None
    status: str


class SeedsResult(BaseModel):
    family: str
    out: str
    runs: list[SeedRun] = Field(default_factory=list)
    test_accuracy_mean: float | None = None
    test_accuracy_std: float | None = None
    mean_epoch_s: float | None = None
    best_seed: int | None = None           # by validation, never test
    results: list[TrainResult] = Field(default_factory=list, exclude=True)

    @property
    def best(self) -> TrainResult | None:
        return next((r for r in self.results if r.seed == self.best_seed), None)


def _val_acc(r: TrainResult) -> float | None:
    hist = r.metrics.get("history") or []
    if r.best_epoch and len(hist) >= r.best_epoch:
        return hist[r.best_epoch - 1].get("val_acc")
    return None


def best_by_validation(runs: Sequence[Any]) -> Any:
    """The run with the highest validation accuracy at its best epoch, then the lower validation
    loss, then the first listed (anything with `val_accuracy` and `best_val_loss`); never by test."""
    return max(runs, key=lambda r: (r.val_accuracy if r.val_accuracy is not None else -1.0,
                                    -(r.best_val_loss if r.best_val_loss is not None else math.inf)),
               default=None)


def val_accuracy(r: TrainResult) -> float | None:
    """A run's validation accuracy at its best epoch (the epoch whose weights it kept)."""
    return _val_acc(r)


def summarize(family: str, out: str | Path, results: list[TrainResult]) -> SeedsResult:
    runs = [SeedRun(seed=r.seed, out=r.out, test_accuracy=r.test_accuracy, val_accuracy=_val_acc(r),
                    best_val_loss=r.best_val_loss, best_epoch=r.best_epoch, epochs_run=r.epochs_run,
                    mean_epoch_s=(sum(r.epoch_times_s) / len(r.epoch_times_s)) if r.epoch_times_s else None,
                    weights_sha256=r.weights_sha256, status=r.status) for r in results]
    m, s = mean_std([r.test_accuracy for r in runs])
    ep, _ = mean_std([r.mean_epoch_s for r in runs])
    best = best_by_validation(runs)
    return SeedsResult(family=family, out=str(out), runs=runs, test_accuracy_mean=m, test_accuracy_std=s,
                       mean_epoch_s=ep, best_seed=None if best is None else best.seed, results=results)


def train_seeds(family: str, data: Any, out: str | Path, seeds: Sequence[int] | str, *,
                force: bool = False, on_run: Callable[[int, TrainResult], None] | None = None,
                **kwargs: Any) -> SeedsResult:
    """`ckreg.train.train` once per seed into `out/seed-<s>`; writes `out/seeds.json`."""
    from ckreg.train.loop import train

    seeds = parse_seeds(seeds)
    out = Path(out)
    if (out / SUMMARY).exists() and not force:
        raise UsageError(f"already holds a seed table ({SUMMARY})", path=str(out),
                         hint="choose a new --out folder, or pass --force to replace it")
    for s in seeds:   # refuse before the first run, not after two of three
        from ckreg.train.loop import check_out

        check_out(out / f"seed-{s}", force)
    results = []
    data_obj = data
    if not hasattr(data, "X"):
        from ckreg.train import common

        data_obj = common.as_dataset(data)    # parse the data once for all seeds
    for s in seeds:
        r = train(family, data_obj, out / f"seed-{s}", seed=s, force=force, **kwargs)
        results.append(r)
        if on_run is not None:
            on_run(s, r)
        if r.interrupted:
            break
    summary = summarize(family, out, results)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / SUMMARY, json.dumps(summary.model_dump(mode="json"), indent=2))
    return summary
