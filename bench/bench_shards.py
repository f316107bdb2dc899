"""Benchmark sharded audits: N shards + the merge against one unsharded audit.

Generates the archive of bench/bench_audit.py (N small checkpoints of mixed
families, ~5% duplicated weights, sidecar and folder scalers; generation not
timed), then runs, one process each on one core (`--jobs 1`, as one machine
per shard would):

    ckreg audit DIR --format json                                  (the obvious alternative)
    ckreg audit DIR --shard I/K --format json --output shard-I.json  (I = 1..K, one after the other)
    ckreg report merge shard-*.json --format json

and prints the unsharded wall time, the slowest shard, the merge, the time to
a merged report with K machines (slowest shard + merge) and its ratio to the
unsharded audit, the sharding overhead (sum of shard times / unsharded), the
shard reports' size per file, and whether the merged report equals the
unsharded one (findings, checked, skipped, errors).

    python bench/bench_shards.py                         # 1000 files, K = 2, 4
    python bench/bench_shards.py --files 2000 --shards 4,8 --work /tmp/ckreg-bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import CKREG, generate  # noqa: E402


def _run(args: list[str], out: Path | None = None) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(CKREG + args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"ckreg {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return wall, proc.stdout


def _normal(text: str) -> dict:
    data = json.loads(text)
    return {k: sorted(json.dumps(v, sort_keys=True) for v in data[k]) for k in ("checked", "findings", "skipped", "errors")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--shards", default="2,4", help="comma-separated shard counts K")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ckreg-bench-shards")
    args = ap.parse_args()
    root = args.work / f"archive-{args.files}"
    generate(root, args.files)
    common = ["--jobs", "1", "--no-cache", "--fail-on", "never", "--format", "json"]
    whole_s, whole = _run(["audit", str(root), *common])
    print(f"{args.files} files, one core per process")
    print(f"{'K':>3} {'unsharded':>10} {'max shard':>10} {'merge':>7} {'K machines':>11} {'speed-up':>9} "
          f"{'overhead':>9} {'KB/file':>8} {'equal':>6}")
    for k in (int(x) for x in args.shards.split(",")):
        out = args.work / f"shards-{args.files}-{k}"
        out.mkdir(parents=True, exist_ok=True)
        times, paths = [], []
        for i in range(1, k + 1):
            p = out / f"shard-{i}.json"
            if p.exists():
                p.unlink()
            wall, _ = _run(["audit", str(root), "--shard", f"{i}/{k}", *common, "--output", str(p)])
            times.append(wall)
            paths.append(str(p))
        merge_s, merged = _run(["report", "merge", *paths, "--fail-on", "never", "--format", "json"])
        size_kb = sum(os.path.getsize(p) for p in paths) / 1024 / args.files
        to_report = max(times) + merge_s
        print(f"{k:>3} {whole_s:>9.1f}s {max(times):>9.1f}s {merge_s:>6.1f}s {to_report:>10.1f}s "
              f"{whole_s / to_report:>8.2f}x {sum(times) / whole_s:>8.2f}x {size_kb:>8.1f} "
              f"{str(_normal(merged) == _normal(whole)):>6}")


if __name__ == "__main__":
    main()
