"""Registry throughput: add and resolve on SQLite + a folder vs PostgreSQL + S3.

Registers N distinct small files (64 KiB each, an explicit GRU spec, so the
inspector is not what is timed), then resolves `NAME@k` N times, on each
backend, and prints operations per second and the ratio of each backend to
the embedded default.

    python bench/bench_registry.py                     # SQLite + folder only
    eval "$(.ci/services.sh start)"                    # a throw-away PostgreSQL and S3 (moto) server
    python bench/bench_registry.py --n 200             # both; PostgreSQL + S3 from CKREG_TEST_PG_URL / _S3_ENDPOINT

Against moto's S3 server (one Python process on the same machine) the S3 side is
pessimistic compared with a real object store, and optimistic on latency.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace


def _files(root: Path, n: int, size: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"f{i}.bin"
        seed = hashlib.sha256(f"bench-{i}".encode()).digest()
        p.write_bytes(seed * (size // 32))
        out.append(p)
    return out


def run(reg, files: list[Path]) -> dict:
    from ckreg.arch import ArchSpec

    spec = ArchSpec.for_family("GRU", hidden_size=8, num_classes=4)
    t0 = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        insp = SimpleNamespace(family="GRU", hyperparameters=spec.weight_hparams(), format="bench", error=None,
                               sha256=hashlib.sha256(data).hexdigest(), weights_sha256=None)
        reg.add(f, name="GRU", spec=spec, inspection=insp)
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(1, len(files) + 1):
        reg.resolve(f"GRU@{k}")
    resolve_s = time.perf_counter() - t0
    n = len(files)
    return {"add_per_s": n / add_s, "resolve_per_s": n / resolve_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=64 * 1024)
    args = ap.parse_args()
    from ckreg.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="ckreg-bench-registry-"))
    files = _files(work / "files", args.n, args.size)
    results = {"sqlite+folder": run(Registry(work / "reg"), files)}
    pg, s3 = os.environ.get("CKREG_TEST_PG_URL"), os.environ.get("CKREG_TEST_S3_ENDPOINT")
    if pg and s3:
        import boto3
        import psycopg

        os.environ.setdefault("AWS_ENDPOINT_URL", s3)
        db = f"ckreg_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        bucket = f"ckreg-bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=s3).create_bucket(Bucket=bucket)
        os.environ["CKREG_CACHE_DIR"] = str(work / "cache")
        reg = Registry(work / "team", db=pg.rpartition("/")[0] + f"/{db}", store=f"s3://{bucket}/reg")
        try:
            results["postgres+s3"] = run(reg, files)
        finally:
            reg.close()
            with psycopg.connect(pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    else:
        print("PostgreSQL + S3 skipped: set CKREG_TEST_PG_URL and CKREG_TEST_S3_ENDPOINT (.ci/services.sh start)")
    base = results["sqlite+folder"]
    print(f"\nregistry add/resolve, N={args.n} files of {args.size // 1024} KiB")
    print(f"{'backend':<16} {'add/s':>8} {'resolve/s':>10} {'add vs sqlite':>14} {'resolve vs sqlite':>18}")
    for name, r in results.items():
        print(f"{name:<16} {r['add_per_s']:>8.1f} {r['resolve_per_s']:>10.1f} "
              f"{r['add_per_s'] / base['add_per_s']:>13.2f}x {r['resolve_per_s'] / base['resolve_per_s']:>17.2f}x")


if __name__ == "__main__":
    main()
