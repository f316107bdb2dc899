"""Deployment formats per family: float torch vs ONNX vs INT8 ONNX (accuracy, agreement, latency, size).

    python bench/bench_deploy.py --registry REG --data DATA [--split test|all] [--threads 2] REF [REF ...]

Exports every REF with `ckreg export --format onnx` and `onnx-int8` into a temporary
folder (recorded in REG as artifacts, like any export), then prints one table: accuracy
of the float model and of each artifact on the same episodes, agreement with the float
model's top-1, mean latency per episode at batch 1 with --threads intra-op threads, the
artifact's size, and the latency the scale-aware design notes report for the float
models (their machine, not this one: a ratio to read, not a claim).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

NOTES_MS = {"MSCSGRU": 3.99, "MSCSGRU_ScaleAware": 8.45, "MSCSGRU_ScaleHard": 8.46}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("refs", nargs="+")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test", choices=["test", "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-samples", type=int, default=100)
    args = ap.parse_args()

    from ckreg.data import load_dataset
    from ckreg.deploy import export_deployment
    from ckreg.registry import Registry

    data = load_dataset(args.data)
    rows = []
    with Registry(args.registry) as reg, tempfile.TemporaryDirectory() as tmp:
        for ref in args.refs:
            for fmt in ("onnx", "onnx-int8"):
                r = export_deployment(reg, ref, Path(tmp) / f"{ref.replace('@', '-')}-{fmt}", fmt, data,
                                      split=args.split, threads=args.threads, latency_samples=args.latency_samples)
                rows.append(r)
    print(f"split {args.split}; batch 1, {args.threads} intra-op threads; latency = mean ms per episode")
    head = (f"{'family':<20} {'format':<10} {'acc':>7} {'float':>7} {'agree':>7} {'ms':>6} "
            f"{'float ms':>8} {'ratio':>6} {'KiB':>6} {'notes ms':>8} status")
    print(head)
    for r in rows:
        ms, fms = r.latency.get("mean_ms"), r.float_latency.get("mean_ms")
        print(f"{r.family:<20} {r.format:<10} {r.accuracy:>7.2%} {r.float_accuracy:>7.2%} {r.agreement:>7.2%} "
              f"{ms or 0:>6.2f} {fms or 0:>8.2f} {(fms / ms if ms and fms else 0):>5.2f}x {r.model_bytes / 1024:>6.0f} "
              f"{NOTES_MS.get(r.family, '-')!s:>8} {r.status}")


if __name__ == "__main__":
    main()
