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
`--work`; the table goes to `--markdown` and, with every run's numbers, to
the JSON beside it (`results_kd.json`). Long on 2 CPU cores: measure the
per-epoch time first (`--profile`, or `--epochs 1 --seeds 0`) and choose
`--teacher-epochs` / `--epochs` to fit.

    python bench/bench_kd.py --data ../shared/data/signglove --work /tmp/kd \
        --teacher-epochs 40 --epochs 60 --markdown bench/results_kd.md

`--profile` times one teacher training step and one image inference the
trainer's way (channels-last images, batch 32 in eval) against plain NCHW
tensors and batch 256, and the imaging transform once per data set against
once per epoch, then exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TEACHER_TARGET, STUDENT_TARGET = 0.98, 0.99


def _median_time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def profile(ds, image_size: int, threads: int) -> int:
    """Ratios of the trainer's choices against the obvious alternatives, on one teacher."""
    import numpy as np
    import torch

    from ckreg import zoo
    from ckreg.arch import ArchSpec
    from ckreg.data.imaging import to_images
    from ckreg.train import common

    torch.set_num_threads(threads)
    t = time.perf_counter()
    images = to_images(ds.X, ds.mask, ("gasf",), image_size)
    t_img = time.perf_counter() - t
    spec = ArchSpec.for_family("WRN", conv_dim=2, depth=16, widen_factor=1, input_size=images.shape[1],
                               num_classes=ds.num_classes)
    torch.manual_seed(0)
    model = zoo.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    y = torch.from_numpy(np.asarray(ds.y[:32], dtype=np.int64))
    mask = np.asarray(ds.mask, dtype=np.uint8)

    def step(x):
        def run():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x, None), y).backward()
            opt.step()
        return run

    model.train()
    x_nchw = torch.from_numpy(np.ascontiguousarray(images[:32]))
    x_cl, _ = common.to_tensors(np.ascontiguousarray(images[:32]), mask[:32])
    step(x_cl)()                                  # warm-up
    s_nchw = _median_time(step(x_nchw), 5)
    s_cl = _median_time(step(x_cl), 5)
    torch.set_num_threads(2 if threads == 1 else 1)
    s_other = _median_time(step(x_cl), 5)
    torch.set_num_threads(threads)
    n_eval = 128
    sub = np.ascontiguousarray(images[:n_eval])
    e_256 = _median_time(lambda: zoo.predict(model, sub, None, batch_size=256), 3) / n_eval
    e_cl = _median_time(lambda: common.predict_logits(model, sub, mask[:n_eval]), 3) / n_eval
    steps = -(-int(0.7 * len(ds)) // 32)
    print(f"teacher WRN-16-1 on {image_size} x {image_size} GASF, {threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  training step (batch 32): NCHW {1000 * s_nchw:.0f} ms, channels-last {1000 * s_cl:.0f} ms "
          f"({s_nchw / s_cl:.2f}x); an epoch of {steps} steps ~{steps * s_cl:.0f} s")
    print(f"  the same step with {2 if threads == 1 else 1} thread(s): {1000 * s_other:.0f} ms "
          f"({s_other / s_cl:.2f}x the time with {threads})")
    print(f"  inference per image: NCHW batch 256 {1000 * e_256:.1f} ms, channels-last batch 32 "
          f"{1000 * e_cl:.1f} ms ({e_256 / e_cl:.2f}x)")
    print(f"  imaging all {len(ds)} episodes once: {t_img:.1f} s ({100 * t_img / (steps * s_cl):.0f}% of an "
          f"epoch; once per epoch over 60 epochs would add {60 * t_img:.0f} s a run)")
    probe(ds)
    return 0


def probe(ds, size: int = 16) -> None:
    """How much of the classes a GASF image holds, by rescaling: a linear classifier on the pixels
    (logistic regression, split seed 0), per-episode range vs the training split's per-channel range."""
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ckreg.data import split as make_split
    from ckreg.data.imaging import fit_stats, to_images

    sp = make_split(ds, seed=0)
    tr, te = np.asarray(sp.train), np.asarray(sp.test)
    accs = {}
    for name, stats in (("episode", None), ("train-split", fit_stats(ds.X, ds.mask, tr))):
        F = to_images(ds.X, ds.mask, ("gasf",), size, stats=stats).reshape(len(ds), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # lbfgs stops at max_iter: enough for a comparison
            clf = LogisticRegression(max_iter=300).fit(F[tr], ds.y[tr])
        accs[name] = clf.score(F[te], ds.y[te])
    print(f"  linear probe on {size} x {size} GASF, test split: rescale episode {100 * accs['episode']:.1f}%, "
          f"train-split {100 * accs['train-split']:.1f}% ({ds.num_classes} classes)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "signglove"))
    ap.add_argument("--work", help="folder for the runs (refuses to reuse one)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=60, help="epoch cap (the cosine schedule's length) of the students")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="the teacher's (default: --epochs)")
    ap.add_argument("--patience", type=int, default=1000, help="default: run the cosine schedule to its end")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--markdown", default=None, help="the table; its .json sibling gets every run's numbers")
    ap.add_argument("--profile", action="store_true", help="time the trainer's choices on one teacher and exit")
    args = ap.parse_args(argv)

    from ckreg.train import common
    from ckreg.train.recipes import ImagingConfig, OptimConfig, Teacher
    from ckreg.train.seeds import train_seeds

    t0 = time.perf_counter()
    ds = common.as_dataset(args.data)
    print(f"data: {len(ds)} episodes, {ds.n_channels} channels, {ds.num_classes} classes "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    if args.profile:
        return profile(ds, args.image_size, args.threads)
    if not args.work:
        ap.error("--work is required (unless --profile)")
    work = Path(args.work)
    t_epochs = args.teacher_epochs or args.epochs
    load_start = os.getloadavg()
    sgd = OptimConfig(optimizer="sgd", schedule="cosine", momentum=0.9, lr_min=1e-4)
    common_kw = dict(patience=args.patience, lr=0.05, weight_decay=1e-4, optim=sgd, threads=args.threads, png=False)
    wrn = dict(depth=16, widen_factor=1)

    def progress(name):
        def emit(ev):
            if ev.kind == "epoch":
                print(f"  {name} epoch {ev.epoch}/{ev.epochs}: val_loss {ev.val_loss:.4f} val_acc "
                      f"{100 * ev.val_acc:.1f}% ({ev.elapsed_s:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
        return emit

    def log(name):
        return lambda s, r: print(f"{name} seed {s}: test {r.test_accuracy:.4f}, {r.epochs_run} epochs, "
                                  f"{sum(r.epoch_times_s) / max(1, len(r.epoch_times_s)):.1f} s/epoch", flush=True)

    rows = []
    teacher = train_seeds("WRN", ds, work / "teacher", args.seeds, overrides={**wrn, "conv_dim": 2},
                          imaging=ImagingConfig(("gasf",), size=args.image_size), epochs=t_epochs,
                          on_run=log("teacher"), progress=progress("teacher"), **common_kw)
    rows.append(("teacher: WRN-16-1 2D, GASF", teacher, TEACHER_TARGET, t_epochs))
    student = train_seeds("WRN", ds, work / "student", args.seeds, overrides={**wrn, "conv_dim": 1},
                          epochs=args.epochs, on_run=log("student"), progress=progress("student"), **common_kw)
    rows.append(("student: WRN-16-1 1D, no KD", student, None, args.epochs))
    best = teacher.best
    t_obj = Teacher(path=best.files["weights"])          # one object: its logits are computed once
    kd = train_seeds("WRN", ds, work / "student-kd", args.seeds, overrides={**wrn, "conv_dim": 1},
                     teacher=t_obj, kd_temperature=4.0, kd_lambda=0.7, epochs=args.epochs,
                     on_run=log("student+KD"), progress=progress("student+KD"), **common_kw)
    rows.append(("student: WRN-16-1 1D, KD T=4 lambda=0.7", kd, STUDENT_TARGET, args.epochs))
    load_end = os.getloadavg()

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    def met(r, target):
        if target is None or r.test_accuracy_mean is None:
            return "-"
        return f">= {100 * target:.0f}%: " + ("met" if r.test_accuracy_mean >= target else "not met")

    import torch

    seeds = ",".join(str(r.seed) for r in teacher.runs)
    lines = [
        "| model | test accuracy % (mean ± std) | per seed | epochs | s/epoch | target |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, r, target, ep in rows:
        per = " / ".join(pct(x.test_accuracy) for x in r.runs)
        lines.append(f"| {name} | {pct(r.test_accuracy_mean)} ± {pct(r.test_accuracy_std)} | {per} | {ep} | "
                     f"{r.mean_epoch_s:.1f} | {met(r, target)} |")
    gain = None
    if kd.test_accuracy_mean is not None and student.test_accuracy_mean is not None:
        gain = kd.test_accuracy_mean - student.test_accuracy_mean
    wall = time.perf_counter() - t0
    deviations = []
    if t_epochs != 60 or args.epochs != 60:
        deviations.append(f"cosine schedule over {t_epochs} teacher / {args.epochs} student epochs "
                          "(lr 0.05 -> 0.0001 at the cap), not 60")
    if args.image_size != 64:
        deviations.append(f"GASF images {args.image_size} x {args.image_size}, not 64 x 64")
    caption = [
        "",
        f"Test accuracy on the held-out 15% test split of each seed's split (seeds {seeds}; "
        f"mean ± sample std), data {Path(args.data).name} ({len(ds)} episodes, {ds.num_classes} classes, data hash "
        f"{ds.data_hash[:12]}). SGD momentum 0.9, weight decay 1e-4, batch 32, cosine lr 0.05 -> 0.0001, "
        f"no early stopping; the best epoch by validation loss is kept. The KD students learn from the "
        f"teacher seed best by validation (seed {teacher.best_seed}); validation picks, test only reports.",
        f"KD student minus plain student: {100 * gain:+.2f} points." if gain is not None else "",
        f"s/epoch: wall time of one training epoch plus validation, {args.threads} thread(s), on a "
        f"{os.cpu_count()}-core machine shared with other work (load average {load_start[0]:.1f} at the start, "
        f"{load_end[0]:.1f} at the end); the whole table took {wall / 60:.0f} min "
        f"({dt.date.today().isoformat()}, torch {torch.__version__}).",
        "Deviations from the notes: " + ("; ".join(deviations) if deviations else "none") + ".",
        "GASF range per signal channel from the training split (`--image-rescale train-split`, the "
        "trainer's default), not per episode: per-episode images lose each sensor's level "
        "(`--profile`, linear probe).",
    ]
    table = "\n".join(lines + caption)
    print(table)
    out = {"rows": [{"model": name, "epochs": ep, "target": target, **r.model_dump(mode="json")}
                    for name, r, target, ep in rows],
           "kd_minus_student": gain, "seeds": seeds, "image_size": args.image_size, "threads": args.threads,
           "teacher_epochs": t_epochs, "student_epochs": args.epochs, "deviations": deviations,
           "load_avg_start": list(load_start), "load_avg_end": list(load_end), "wall_s": round(wall, 1),
           "data_hash": ds.data_hash, "n_episodes": len(ds), "torch": torch.__version__,
           "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    from ckreg.fsutil import write_text

    # run folders relative to --work: the committed results name no machine's paths
    text = json.dumps(out, indent=2)
    for prefix in {str(work.resolve()), str(work)}:
        text = text.replace(json.dumps(prefix)[1:-1], "WORK")
    out = json.loads(text)
    write_text(work / "results_kd.json", json.dumps(out, indent=2))
    if args.markdown:
        md = Path(args.markdown)
        write_text(md, table + "\n")
        write_text(md.with_suffix(".json"), json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
