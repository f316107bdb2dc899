"""Benchmark `ckreg audit` on a generated archive: cold, warm (cache) and the obvious alternative.

Generates archives of N small checkpoints (default N = 1000, 5000; mixed
families from the spec's reference configurations, saved with torch.save,
bare or in Lightning-like wrappers, ~5% duplicated weights with other bytes,
~20% with sidecar scalers plus folder-level scalers) - generation is not
timed - then runs

    ckreg audit DIR --format json --jobs 2

pinned to 2 cores, and prints in one run:

- for each N, a cold audit without a cache (`--no-cache`): files/s, CPU
  seconds and peak memory;
- for the largest N, a cold audit filling a fresh cache (`--cache C`), then a
  warm audit of the unchanged archive with the same cache: files/s of both
  and the warm/cold ratio;
- the obvious alternative on the largest N: `torch.load(weights_only=True)`
  of every file and a sha256 of its tensors, one process, and the audit's
  ratio to it (cold and warm);
- the load average before and after, since the wall-clock rates depend on it.

Goals: cold >= 500 files/s on 2 cores, memory flat in the number of files,
warm >= 20x faster than cold.

    python bench/bench_audit.py                      # 1000 and 5000, work dir in $TMPDIR
    python bench/bench_audit.py --sizes 1000 --work /tmp/ckreg-bench --no-baseline --no-warm
    python bench/bench_audit.py --warm --sizes 5000  # only cold-with-cache vs warm (and the baseline)

Every audit is a fresh `python -c "from ckreg.cli import main; main()"`
process, run with bytecode caching on (into a pycache folder in the work dir,
compiled by one untimed run first), as an installed ckreg runs:
`PYTHONDONTWRITEBYTECODE` would make every process, pool workers included,
recompile ckreg and its dependencies from source.

Peak memory is measured two ways: the largest single process of the audit
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`, read in a fresh intermediate process
per run so runs do not mix) and the sum over the audit's process tree
(sampled from /proc every 50 ms, Linux only; worker pools count here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GEN_VERSION = 3  # 3: templates from ckreg.zoo
FAMILIES = ["GRU", "GRU2", "StackedGRU", "MSCSGRU", "MS3DGRU", "CNNGRU", "MSCGRU"]
CKREG = [sys.executable, "-c", "from ckreg.cli import main; main()"]


# ----------------------------------------------------------------------------- generation


def _templates():
    """One reference-size state_dict per family (families.md: C=8, H=64, K=24, F=32), from the zoo."""
    import torch

    from ckreg.arch import ArchSpec
    from ckreg.zoo import build

    specs = {"GRU": ArchSpec.for_family("GRU"), "GRU2": ArchSpec.for_family("GRU", num_layers=2),
             "StackedGRU": ArchSpec.for_family("StackedGRU"), "CNNGRU": ArchSpec.for_family("CNNGRU"),
             "MSCSGRU": ArchSpec.for_family("MSCSGRU"), "MSCGRU": ArchSpec.for_family("MSCGRU"),
             "MS3DGRU": ArchSpec.for_family("MS3DGRU")}
    torch.manual_seed(0)
    return {fam: {k: v.detach().clone() for k, v in build(specs[fam]).state_dict().items()} for fam in FAMILIES}


def _scaler_bytes() -> bytes:
    """A pickled sklearn StandardScaler like the archive's (falls back to a plain dict without sklearn)."""
    try:
        import numpy as np
        from sklearn.preprocessing import StandardScaler

        s = StandardScaler().fit(np.random.default_rng(0).normal(size=(200, 8)))
        return pickle.dumps(s, protocol=4)
    except ImportError:
        return pickle.dumps({"mean": [0.0] * 8, "scale": [1.0] * 8}, protocol=4)


def generate(root: Path, n: int, seed: int = 0) -> dict:
    """Write an archive of n checkpoints under root (cached by a marker file)."""
    marker = root / ".bench.json"
    want = {"version": GEN_VERSION, "n": n, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return want
    import torch

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    templates = _templates()
    scaler = _scaler_bytes()
    saved = []   # (state_dict) of earlier files, for duplicates
    for i in range(n):
        folder = root / f"run_{i // 50:03d}"
        folder.mkdir(exist_ok=True)
        fam = FAMILIES[i % len(FAMILIES)]
        if saved and rng.random() < 0.05:
            sd = rng.choice(saved)                           # identical weights, different bytes below
        else:
            sd = {k: v.clone() for k, v in templates[fam].items()}
            g = torch.Generator().manual_seed(seed * 1_000_003 + i)
            for k, v in sd.items():
                if v.is_floating_point() and v.dim() > 0:
                    v.copy_(torch.randn(v.shape, generator=g) * 0.1)
            saved.append(sd)
        style = i % 3
        name = rng.choice(["GRU_best", "model", "best", "ckpt", "MSCSGRU_best", "ms3dgru_best"]) + f"_{i:04d}"
        if style == 0:
            obj, ext = sd, ".pt"
        else:
            obj = {"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": i % 100, "global_step": i * 37,
                   "pytorch-lightning_version": "2.1.0", "hyper_parameters": {"lr": 0.001, "hidden_size": 64}}
            ext = ".ckpt"
        torch.save(obj, folder / f"{name}{ext}")
        if rng.random() < 0.2:
            (folder / f"{name}.scaler.pkl").write_bytes(scaler)
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and int(folder.name.split("_")[1]) % 2 == 0:
            (folder / "scaler.pkl").write_bytes(scaler)
    marker.write_text(json.dumps(want))
    return want


# ----------------------------------------------------------------------------- measuring


def _descendants(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc/<pid>/task/<tid>/children; cheap, no full /proc scan)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _sample(pids: list[int], cpu: dict[int, float]) -> int:
    """Sum of VmRSS (kB) over pids; records each pid's CPU seconds so far into `cpu`."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            fields = stat[stat.rindex(")") + 2:].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / _TICK     # utime + stime
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            pass
    return total


def measure_child(path: str, jobs: int, cores: int, extra: list[str] | None = None) -> dict:
    """Run in a fresh process: pin to `cores` CPUs, run the audit, report time, CPU and memory.

    getrusage(RUSAGE_CHILDREN) sees the audit process itself but not pool workers
    started through a forkserver (they are not our children), so the process
    tree is also sampled from /proc every 50 ms: peak summed RSS and CPU seconds. The wall time
    ends when the audit does (`wait`, not the next sampling tick).
    """
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:cores]
        os.sched_setaffinity(0, cpus)
    out_path = Path(tempfile.mkstemp(suffix=".json")[1])
    sample = sys.platform.startswith("linux")
    cpu: dict[int, float] = {}
    peak_tree = 0
    t0 = time.perf_counter()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(CKREG + ["audit", path, "--format", "json", "--jobs", str(jobs), "--fail-on", "never",
                                         *(extra or ["--no-cache"])],
                                stdout=out, stderr=subprocess.PIPE)
        while True:
            if sample:
                peak_tree = max(peak_tree, _sample(_descendants(proc.pid), cpu))
            try:   # wakes up when the audit ends, not at the next 50 ms tick (a warm audit takes ~0.4 s)
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    maxrss_kb = ru.ru_maxrss if sys.platform != "darwin" else ru.ru_maxrss // 1024
    try:
        report = json.loads(out_path.read_text())
    except ValueError:
        report = None
    out_path.unlink()
    checked = len(report.get("checked", [])) if isinstance(report, dict) else None
    main_cpu = ru.ru_utime + ru.ru_stime
    workers_cpu = sum(v for p, v in cpu.items() if p != proc.pid)
    cache = (report.get("extra") or {}).get("cache") if isinstance(report, dict) else None
    return {"rc": proc.returncode, "wall_s": wall, "cache": cache, "maxrss_mb": maxrss_kb / 1024, "tree_peak_mb": peak_tree / 1024,
            "checked": checked, "findings": len(report.get("findings", [])) if isinstance(report, dict) else None,
            "cpu_s": main_cpu + workers_cpu, "main_cpu_s": main_cpu, "workers_cpu_s": workers_cpu,
            "stderr": err[-2000:]}


def measure(path: Path, jobs: int, cores: int, extra: list[str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure-child", str(path), "--jobs", str(jobs),
                           "--cores", str(cores), "--audit-args", json.dumps(extra or ["--no-cache"])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measuring failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline(path: Path) -> dict:
    """The obvious alternative: torch.load(weights_only=True) every checkpoint and hash its tensors."""
    import torch

    files = sorted(p for p in path.rglob("*") if p.suffix in (".pt", ".ckpt"))
    t0 = time.perf_counter()
    for f in files:
        obj = torch.load(f, map_location="cpu", weights_only=True)
        sd = obj.get("state_dict", obj)
        h = hashlib.sha256()
        for k in sorted(sd):
            v = sd[k]
            if torch.is_tensor(v):
                h.update(k.encode())
                h.update(v.contiguous().numpy().tobytes())
    return {"files": len(files), "wall_s": time.perf_counter() - t0}


def _load() -> str:
    """The load averages (1, 5, 15 min) and the CPU count: the machine may be shared."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def _bytecode_env(work: Path) -> None:
    """Audit processes compile once into a pycache folder of the work dir, as an installed ckreg would."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(work / "pycache"))
    sys.dont_write_bytecode = False


def _warm_up(work: Path, jobs: int, cores: int) -> None:
    """One untimed audit of a tiny archive: compiles the bytecode the timed runs import."""
    tiny = work / "n20"
    generate(tiny, 20)
    measure(tiny, jobs, cores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000", help="comma-separated archive sizes (checkpoints)")
    ap.add_argument("--work", default=None, help="work dir for the archives (default: $TMPDIR/ckreg-bench; kept as a cache)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (best wall time is kept)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-warm", action="store_true", help="skip the cold-with-cache vs warm comparison")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    ap.add_argument("--warm", action="store_true",
                    help="only the incremental audit (and the baseline): a cold run filling a fresh cache, "
                         "then a warm run on the unchanged archive")
    ap.add_argument("--measure-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--audit-args", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_child:
        extra = json.loads(args.audit_args) if args.audit_args else None
        print(json.dumps(measure_child(args.measure_child, args.jobs, args.cores, extra)))
        return

    work = Path(args.work or Path(tempfile.gettempdir()) / "ckreg-bench")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"generating archives in {work} (not timed) ...", flush=True)
    for n in sizes:
        t0 = time.perf_counter()
        generate(work / f"n{n}", n)
        print(f"  n={n}: {time.perf_counter() - t0:.1f} s", flush=True)
    _bytecode_env(work)
    _warm_up(work, args.jobs, args.cores)
    load_before = _load()
    print(f"{load_before} before measuring", flush=True)
    results = [] if args.warm else cold_table(work, sizes, args)
    warm = None if args.no_warm else warm_compare(work, max(sizes), args)
    base = None if args.no_baseline else baseline(work / f"n{max(sizes)}")
    load_after = _load()
    print(f"{load_after} after measuring"
          + ("  - the machine is busy: wall times are pessimistic, see CPU s" if _busy(args.cores) else ""))

    n = max(sizes)
    if results:
        rate = results[-1]["files_per_s"]
        print(f"cold (no cache) at N={results[-1]['n']}: {rate:.0f} files/s - goal >= 500: "
              f"{'met' if rate >= 500 else 'MISSED'}")
    if warm:
        print(f"cold (fresh cache) at N={n}: {warm['cold_files_per_s']:.0f} files/s; warm: "
              f"{warm['warm_files_per_s']:.0f} files/s; warm/cold = {warm['ratio']:.1f}x - goal >= 20x: "
              f"{'met' if warm['ratio'] >= 20 else 'MISSED'}")
    if base:
        rate = base["files"] / base["wall_s"]
        line = f"baseline torch.load(weights_only=True)+sha256, 1 process, N={base['files']}: {rate:.0f} files/s"
        if results and results[-1]["n"] == n:
            line += f"; audit cold (no cache) / baseline = {results[-1]['files_per_s'] / rate:.2f}x"
        if warm:
            line += (f"; cold (fresh cache) / baseline = {warm['cold_files_per_s'] / rate:.2f}x"
                     f"; warm / baseline = {warm['warm_files_per_s'] / rate:.1f}x")
        print(line)
    if args.json:
        print(json.dumps({"results": results, "warm": warm, "baseline": base,
                          "load_before": load_before, "load_after": load_after}, indent=2))


def _busy(cores: int) -> bool:
    try:
        return os.getloadavg()[0] > cores
    except OSError:
        return False


def cold_table(work: Path, sizes: list[int], args) -> list[dict]:
    """Cold audits without a cache (`--no-cache`), one row per N."""
    results = []
    for n in sizes:
        runs = [measure(work / f"n{n}", args.jobs, args.cores) for _ in range(max(1, args.repeat))]
        best = min(runs, key=lambda r: r["wall_s"])
        best["n"] = n
        best["files_per_s"] = n / best["wall_s"]
        best["peak_mb"] = max(r["maxrss_mb"] for r in runs)
        best["tree_peak_mb_max"] = max(r["tree_peak_mb"] for r in runs)
        results.append(best)
        if best["rc"] not in (0, 1) or (best["checked"] is not None and best["checked"] < n):
            print(f"  WARNING n={n}: audit rc={best['rc']} checked={best['checked']}\n{best['stderr']}", flush=True)

    print(f"\nckreg audit DIR --format json --jobs {args.jobs} --no-cache, pinned to {args.cores} cores "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs on the machine)")
    print(f"{'N':>6} {'checked':>8} {'wall s':>8} {'files/s':>9} {'CPU s':>7} {'files/CPU-s':>12} "
          f"{'main RSS MB':>12} {'tree RSS MB':>12} {'findings':>9}")
    for r in results:
        print(f"{r['n']:>6} {str(r['checked']):>8} {r['wall_s']:>8.2f} {r['files_per_s']:>9.1f} {r['cpu_s']:>7.2f} "
              f"{r['n'] / max(r['cpu_s'], 1e-9):>12.1f} {r['peak_mb']:>12.1f} {r['tree_peak_mb_max']:>12.1f} "
              f"{str(r['findings']):>9}")
    for r in results:
        # A projection, not a measurement: what the same CPU work takes on `cores` idle cores
        # when the workers' share parallelises perfectly and the main process's does not.
        ideal = r["main_cpu_s"] + r["workers_cpu_s"] / max(1, min(args.cores, args.jobs))
        r["projected_idle_files_per_s"] = r["n"] / max(ideal, 1e-9)
    print("projected on idle cores (main CPU + workers CPU / cores; use when the machine is busy): "
          + ", ".join(f"N={r['n']}: {r['projected_idle_files_per_s']:.0f} files/s" for r in results))
    if len(results) > 1:
        growth = results[-1]["peak_mb"] / max(results[0]["peak_mb"], 1e-9)
        tree = results[-1]["tree_peak_mb_max"] / max(results[0]["tree_peak_mb_max"], 1e-9)
        print(f"peak RSS N={results[-1]['n']} / N={results[0]['n']}: main process {growth:.2f}x, process tree {tree:.2f}x "
              f"(files {results[-1]['n'] / results[0]['n']:.0f}x)")
    return results


def warm_compare(work: Path, n: int, args) -> dict:
    """Cold (a fresh cache, written as it goes) vs warm (every file unchanged) on the same archive.

    With --repeat, each cold run gets its own fresh cache; the best cold and the best warm are kept.
    """
    colds, warms, hits = [], [], None
    for _ in range(max(1, args.repeat)):
        cache = Path(tempfile.mkdtemp()) / "inspections.sqlite"
        try:
            colds.append(measure(work / f"n{n}", args.jobs, args.cores, ["--cache", str(cache)]))
            for _ in range(max(1, args.repeat)):
                warms.append(measure(work / f"n{n}", args.jobs, args.cores, ["--cache", str(cache)]))
        finally:
            shutil.rmtree(cache.parent, ignore_errors=True)
    cold = min(colds, key=lambda r: r["wall_s"])
    warm = min(warms, key=lambda r: r["wall_s"])
    hits = (warm.get("cache") or {}).get("hits")
    same = cold["checked"] == warm["checked"] and cold["findings"] == warm["findings"]
    out = {"n": n, "cold_wall_s": cold["wall_s"], "warm_wall_s": warm["wall_s"], "cold_cpu_s": cold["cpu_s"],
           "warm_cpu_s": warm["cpu_s"], "cold_files_per_s": n / cold["wall_s"], "warm_files_per_s": n / warm["wall_s"],
           "ratio": cold["wall_s"] / max(warm["wall_s"], 1e-9), "warm_hits": hits, "same_counts": same}
    print(f"\nckreg audit DIR --format json --jobs {args.jobs} --cache C, pinned to {args.cores} cores "
          "(cold: C fresh; warm: the same C, archive unchanged)")
    print(f"{'N':>6} {'cold s':>8} {'cold f/s':>9} {'cold CPU s':>11} {'warm s':>8} {'warm f/s':>9} "
          f"{'warm CPU s':>11} {'hits':>6} {'warm/cold':>10}")
    print(f"{n:>6} {out['cold_wall_s']:>8.2f} {out['cold_files_per_s']:>9.1f} {out['cold_cpu_s']:>11.2f} "
          f"{out['warm_wall_s']:>8.2f} {out['warm_files_per_s']:>9.1f} {out['warm_cpu_s']:>11.2f} {str(hits):>6} "
          f"{out['ratio']:>9.1f}x")
    if not same:
        print(f"  WARNING: cold and warm reports differ in size: checked {cold['checked']} vs {warm['checked']}, "
              f"findings {cold['findings']} vs {warm['findings']}")
    return out


if __name__ == "__main__":
    main()
