"""Deployment formats per family: float torch vs ONNX vs INT8 ONNX, dynamic and static (accuracy, agreement, latency, size).

    python bench/bench_deploy.py --registry REG --data DATA [--split test|all] [--threads 2] [--out DIR] REF [REF ...]

Exports every REF with `ckreg export --format onnx`, `onnx-int8 --quant dynamic` and
`onnx-int8 --quant static` (calibrated on --calibration training episodes) into a
temporary folder, or into --out DIR (kept, e.g. for bench/e2e_deploy_check.py;
recorded in REG as artifacts, like any export), then prints one
table: accuracy of the float model and of each artifact on the same episodes,
agreement with the float model's top-1, mean latency per episode at batch 1 with
--threads intra-op threads (artifact, float torch, and their ratio), the artifact's
size, the latency the scale-aware design notes report for the float models (their
machine, not this one: a ratio to read, not a claim) and the status. The machine's
load average is printed before and after: latencies on a shared machine are only
comparable with each other, within one run. `--markdown` prints the rows as a
markdown table too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

NOTES_MS = {"MSCSGRU": 3.99, "MSCSGRU_ScaleAware": 8.45, "MSCSGRU_ScaleHard": 8.46}
KINDS = {"onnx": ("onnx", None), "int8-dynamic": ("onnx-int8", "dynamic"), "int8-static": ("onnx-int8", "static")}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("refs", nargs="+")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test", choices=["test", "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="keep the exports here (a new folder)")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kinds {unknown}; use {', '.join(KINDS)}")

    from ckreg.data import load_dataset
    from ckreg.deploy import export_deployment
    from ckreg.registry import Registry

    data = load_dataset(args.data)
    rows = []
    before = _load()
    if args.out is not None and args.out.exists():
        ap.error(f"{args.out} exists; give a new folder")
    with Registry(args.registry) as reg, tempfile.TemporaryDirectory() as scratch:
        tmp = args.out or Path(scratch)
        for ref in args.refs:
            for kind in kinds:
                fmt, quant = KINDS[kind]
                r = export_deployment(reg, ref, Path(tmp) / f"{ref.replace('@', '-')}-{kind}", fmt, data,
                                      split=args.split, threads=args.threads, latency_samples=args.latency_samples,
                                      quant=quant, calibration=args.calibration)
                rows.append((kind, r))
                print(f"{ref} {kind}: {r.status} ({r.accuracy:.2%}, float {r.float_accuracy:.2%})", file=sys.stderr,
                      flush=True)
    after = _load()
    print(f"split {args.split}; batch 1, {args.threads} intra-op threads; latency = mean ms per episode")
    print(f"before: {before}; after: {after}")
    head = (f"{'family':<19} {'kind':<12} {'acc':>7} {'float':>7} {'agree':>7} {'ms':>6} "
            f"{'float ms':>8} {'ratio':>6} {'KiB':>5} {'notes':>5} status")
    print(head)
    for kind, r in rows:
        ms, fms = r.latency.get("mean_ms"), r.float_latency.get("mean_ms")
        print(f"{r.family:<19} {kind:<12} {r.accuracy:>7.2%} {r.float_accuracy:>7.2%} {r.agreement:>7.2%} "
              f"{ms or 0:>6.2f} {fms or 0:>8.2f} {(fms / ms if ms and fms else 0):>5.2f}x {r.model_bytes / 1024:>5.0f} "
              f"{NOTES_MS.get(r.family, '-')!s:>5} {r.status}")
    if args.markdown:
        print()
        print("| model | kind | accuracy | float | agreement | ms/episode | median ms | float ms | size KiB "
              "| notes' float ms | status |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind, r in rows:
            lat, flat = r.latency, r.float_latency
            drop = "" if r.verified else f" ({-100 * r.accuracy_drop:+.2f} pt)"
            status = r.status if r.verified else f"**{r.status}**{drop}"
            print(f"| {r.ref} ({r.family}) | {kind} | {r.accuracy:.2%} | {r.float_accuracy:.2%} | {r.agreement:.2%} "
                  f"| {lat.get('mean_ms') or 0:.2f} | {lat.get('median_ms') or 0:.2f} | {flat.get('mean_ms') or 0:.2f} "
                  f"| {r.model_bytes / 1024:.0f} | {NOTES_MS.get(r.family, '-')} | {status} |")


if __name__ == "__main__":
    main()
