"""The distillation table on the SignGlove data: teacher / student without KD / student with KD.

Three configurations, each over several seeds (default 0,1,2), in the design
notes' form (test accuracy mean ± std, and wall time per epoch):

1. teacher: WRN-16-1 2D on GASF images (64 x 64), SGD momentum 0.9,
   weight decay 1e-4, lr 0.05 -> 0.0001 cosine;
2. student: WRN-16-1 1D on the signals, the same recipe, no teacher;
3. student with KD: as 2, distilled from the best teacher seed (by
   validation), T = 4, lambda = 0.7.

The obvious alternative to compare with is configuration 2: the table prints
the KD student's mean minus the plain student's. Targets from the notes:
teacher >= 98%, KD student >= 99%. Every run is a normal trainer output under
`--work`; `results_kd.json` holds the table. Long on 2 CPU cores: measure
per-epoch time first with `--epochs 1 --seeds 0`.

    python bench/bench_kd.py --data ../shared/data/signglove --work /tmp/kd --epochs 60 \
        --markdown bench/results_kd.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "signglove"))
    ap.add_argument("--work", required=True, help="folder for the runs (refuses to reuse one)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--patience", type=int, default=1000, help="default: run the cosine schedule to its end")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)

    from ckreg.train import common
    from ckreg.train.recipes import ImagingConfig, OptimConfig, Teacher
    from ckreg.train.seeds import train_seeds

    work = Path(args.work)
    t0 = time.perf_counter()
    ds = common.as_dataset(args.data)
    print(f"data: {len(ds)} episodes, {ds.n_channels} channels, {ds.num_classes} classes "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    sgd = OptimConfig(optimizer="sgd", schedule="cosine", momentum=0.9, lr_min=1e-4)
    common_kw = dict(epochs=args.epochs, patience=args.patience, lr=0.05, weight_decay=1e-4, optim=sgd,
                     threads=args.threads, png=False)
    wrn = dict(depth=16, widen_factor=1)

    def log(name):
        return lambda s, r: print(f"{name} seed {s}: test {r.test_accuracy:.4f}, {r.epochs_run} epochs, "
                                  f"{sum(r.epoch_times_s) / max(1, len(r.epoch_times_s)):.1f} s/epoch", flush=True)

    rows = []
    teacher = train_seeds("WRN", ds, work / "teacher", args.seeds, overrides={**wrn, "conv_dim": 2},
                          imaging=ImagingConfig(("gasf",), size=args.image_size), on_run=log("teacher"), **common_kw)
    rows.append(("teacher WRN-16-1 GASF", teacher))
    student = train_seeds("WRN", ds, work / "student", args.seeds, overrides={**wrn, "conv_dim": 1},
                          on_run=log("student"), **common_kw)
    rows.append(("student WRN-16-1 1D", student))
    best = teacher.best
    kd = train_seeds("WRN", ds, work / "student-kd", args.seeds, overrides={**wrn, "conv_dim": 1},
                     teacher=Teacher(path=best.files["weights"]), kd_temperature=4.0, kd_lambda=0.7,
                     on_run=log("student+KD"), **common_kw)
    rows.append(("student WRN-16-1 1D + KD (T=4, l=0.7)", kd))

    def fmt(r):
        return (f"{100 * r.test_accuracy_mean:.2f} ± {100 * r.test_accuracy_std:.2f}"
                if r.test_accuracy_mean is not None else "-")

    lines = ["| model | test accuracy % (mean ± std) | seeds | s/epoch (2 cores, 1 thread) |", "|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {fmt(r)} | {len(r.runs)} | {r.mean_epoch_s:.1f} |")
    gain = None
    if kd.test_accuracy_mean is not None and student.test_accuracy_mean is not None:
        gain = kd.test_accuracy_mean - student.test_accuracy_mean
        lines.append(f"\nKD student minus plain student: {100 * gain:+.2f} points "
                     f"({args.epochs} epochs cap, seeds {args.seeds})")
    table = "\n".join(lines)
    print(table)
    out = {name: r.model_dump(mode="json") for name, r in rows}
    from ckreg.fsutil import write_text as _write

    _write(work / "results_kd.json", json.dumps(out, indent=2))
    if args.markdown:
        from ckreg.fsutil import write_text

        write_text(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
