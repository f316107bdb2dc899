"""Benchmark the bundled trainer: every family, default settings, on the SignGlove data.

For each family: `ckreg.train.train` with the trainer's defaults (or an
`--epochs` cap), then `ckreg.train.evaluate` on the held-out test split for
accuracy and inference latency (ms per episode, batch 1, one thread,
torch.inference_mode). Prints one line per epoch and a summary per family,
appends every result to `<work>/results.jsonl` as soon as it exists, and
rewrites a markdown table after each family (so a long run that is stopped
still leaves its finished rows).

The obvious alternative to compare with is the design notes' inference
figures (MSCSGRU 3.99 ms, MSCSGRU_ScaleAware 8.45 ms per episode): the table
prints our latency and the ratio where a figure exists.

    python bench/bench_train.py --families GRU,MS3DGRU,MS3DStackedGRU \
        --markdown bench/results_train.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ckreg.arch import FAMILIES  # noqa: E402

DESIGN_NOTES_MS = {"MSCSGRU": 3.99, "MSCSGRU_ScaleAware": 8.45}


def _row(r: dict) -> str:
    ref = DESIGN_NOTES_MS.get(r["family"])
    lat = r.get("latency_ms")
    ratio = f"{ref:.2f} ({lat / ref:.2f}x)" if ref and lat else "-"
    cap = f" (cap {r['epoch_cap']})" if r.get("epoch_cap") else ""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    return (f"| {r['family']} | {r['params']:,} | {r['epochs_run']}{cap} / best {r['best_epoch']} | "
            f"{r['stop_reason']} | {r['mean_epoch_s']:.2f} | {r['wall_time_s']:.0f} | "
            f"{pct(r['test_accuracy'])} ({r['n_test']}) | {pct(r.get('all_accuracy'))} | "
            f"{lat:.2f} | {r['latency']['median_ms']:.2f} | {ratio} | {r.get('load_avg_1m', '-')} |")


def write_markdown(path: Path, rows: list[dict], header: dict) -> None:
    lines = [
        f"Measured {header['date']} on {header['machine']} ({header['cpus']} CPUs, torch {header['torch']}, "
        f"{header['threads']} training thread(s)); data {header['data']} ({header['n_episodes']} episodes, "
        f"hash {header['data_hash'][:12]}); seed {header['seed']}.",
        "",
        "| family | params | epochs run / best | stop | s per epoch | total s | test acc (n) | all-episode acc "
        "| latency ms/episode (mean) | (median) | design notes ms (ratio to mean) | load avg |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[_row(r) for r in rows],
        "",
        "Latency: mean of one forward pass per episode at batch 1, 1 intra-op thread, "
        "torch.inference_mode, over test-split episodes after 5 warm-up passes.",
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "signglove"))
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset (default: all)")
    ap.add_argument("--epochs", type=int, default=None, help="epoch cap for every family (default: trainer's)")
    ap.add_argument("--cap", action="append", default=[], metavar="FAMILY=N",
                    help="epoch cap for one family (repeatable), e.g. --cap WRN=10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="training threads (default: the trainer's, 1)")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--work", default=None, help="output folder for the runs (default: /tmp/ckreg-bench-<time>)")
    ap.add_argument("--markdown", default=None, help="write the table here too")
    args = ap.parse_args(argv)

    import torch

    from ckreg.data import load_dataset
    from ckreg.train import evaluate, train

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families: {', '.join(unknown)}")
    caps = {}
    for item in args.cap:
        fam, _, n = item.partition("=")
        caps[fam] = int(n)
    work = Path(args.work or f"/tmp/ckreg-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data)
    header = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": os.cpu_count(),
              "torch": torch.__version__, "threads": args.threads or 1,
              "data": args.data, "n_episodes": len(ds), "data_hash": ds.data_hash, "seed": args.seed}
    print(f"# {len(ds)} episodes, {len(families)} families, work dir {work}", flush=True)
    rows: list[dict] = []
    for fam in families:
        cap = caps.get(fam, args.epochs)

        def progress(ev, fam=fam):
            if ev.kind == "epoch":
                print(f"{fam:>20} epoch {ev.epoch:3d}/{ev.epochs}  loss {ev.train_loss:.4f} acc {ev.train_acc:.3f}  "
                      f"val loss {ev.val_loss:.4f} acc {ev.val_acc:.3f}  best {ev.best_epoch}  "
                      f"{ev.elapsed_s:7.1f}s", flush=True)

        out = work / fam
        kw = {"threads": args.threads} if args.threads else {}
        res = train(fam, ds, out, seed=args.seed, epochs=cap, progress=progress, force=True, **kw)
        ev_test = evaluate(out / "model.ckpt", out / "scaler.json", ds, split="test",
                           latency_samples=args.latency_samples)
        ev_all = evaluate(out / "model.ckpt", out / "scaler.json", ds, split="all", latency_samples=0)
        m = res.metrics
        row = {
            "family": fam, "params": res.params, "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
            "epoch_cap": cap, "stop_reason": res.stop_reason, "mean_epoch_s": m["mean_epoch_s"],
            "wall_time_s": res.wall_time_s, "test_accuracy": res.test_accuracy, "n_test": res.n_test,
            "eval_test_accuracy": ev_test.accuracy, "all_accuracy": ev_all.accuracy,
            "latency_ms": ev_test.latency_ms, "latency": ev_test.latency, "threads": m["threads"],
            "weights_sha256": res.weights_sha256, "out": str(out),
            "load_avg_1m": round(os.getloadavg()[0], 1),   # shared box: other jobs inflate the timings
        }
        rows.append(row)
        with open(work / "results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"== {fam}: test {res.test_accuracy:.4f} ({res.n_test}), all {ev_all.accuracy:.4f}, "
              f"{res.epochs_run} epochs (best {res.best_epoch}, {res.stop_reason}), "
              f"{m['mean_epoch_s']:.2f} s/epoch, {res.wall_time_s:.0f} s total, "
              f"latency {ev_test.latency_ms:.2f} ms/episode", flush=True)
        write_markdown(work / "results.md", rows, header)
        if args.markdown:
            write_markdown(Path(args.markdown), rows, header)
    print((work / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
