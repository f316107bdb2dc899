"""Benchmark `ckreg inspect` against torch.load and the pickle scanners (issue #2, "Speed").

Builds a ~1 GB checkpoint (a state_dict of a few big float32 tensors, saved
with torch.save; generation is not timed, and is reused from --workdir), adds
the real archive's checkpoints when ../shared exists, then runs, each in a
fresh process and measured from a fresh intermediate process (so
`getrusage(RUSAGE_CHILDREN).ru_maxrss` is that one command's peak RSS):

    ckreg inspect FILE --json                       (the whole CLI process)
    python -c "pass"                                (interpreter start-up, for reference)
    python -c "torch.load(FILE, weights_only=True)"
    python -c "torch.load(FILE, weights_only=True, mmap=True)"
    picklescan -p FILE                              (only looks for unsafe globals)
    modelscan -p FILE                               (only looks for unsafe globals)

and prints wall time (the minimum of --repeat runs after one warm-up run, so
the page cache is warm and noise from other processes on a shared machine is
filtered out; `--stat median` for the median), peak memory (max over runs),
the bytes ckreg read, and the ratios torch.load / ckreg and ckreg / picklescan.
ckreg's bytecode is compiled first (`compileall`, as `pip install` does), so
a PYTHONDONTWRITEBYTECODE environment does not charge it for compiling.

Goals: < 1 MB read for the 1 GB file; ckreg >= 5x faster than torch.load and
within 2x of picklescan.

    python bench/bench_inspect.py                          # temp work dir, removed afterwards
    python bench/bench_inspect.py --workdir /tmp/ckreg-bench --repeat 5 --markdown
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "checkpoints" / "klp-archive"
PY = sys.executable

# each tool: argv builder. All run through this interpreter (no shell/shim start-up in the numbers).
TOOLS = {
    "python (no-op)": lambda f: [PY, "-c", "pass"],   # interpreter start-up: the floor for every tool
    "ckreg inspect": lambda f: [PY, "-c", "from ckreg.cli import main; main()", "inspect", f, "--json"],
    "torch.load": lambda f: [PY, "-c", f"import torch; torch.load({f!r}, weights_only=True)"],
    "torch.load mmap": lambda f: [PY, "-c", f"import torch; torch.load({f!r}, weights_only=True, mmap=True)"],
    "picklescan": lambda f: [PY, "-c", "import sys; from picklescan.cli import main; sys.exit(main())", "-p", f],
    "modelscan": lambda f: [PY, "-c", "import sys; from modelscan.cli import main; sys.exit(main())", "-p", f],
}

# Runs one command and reports its wall time and peak RSS; executed in a fresh process per measurement.
MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    cmd = json.loads(sys.argv[1])
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall": wall, "rss_kib": rss, "rc": p.returncode, "err": p.stderr.decode()[-300:]}))
""")


def build_big(workdir: Path, size_mb: int) -> Path:
    path = workdir / f"big_{size_mb}mb.pt"
    if path.exists():
        return path
    import torch

    n_tensors = 4
    per = size_mb * (1 << 20) // 4 // n_tensors          # float32 elements per tensor
    side = int(per ** 0.5)
    sd = {f"layers.{i}.weight": torch.full((side, per // side), float(i + 1)) for i in range(n_tensors)}
    sd["head.bias"] = torch.zeros(10)
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp)
    tmp.rename(path)
    return path


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([PY, "-c", MEASURE, json.dumps(cmd)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bytes_read(path: Path) -> int:
    """Bytes `ckreg inspect` reads: the readers' reads plus the file sha256 of small files."""
    from ckreg.inspect import inspect_path

    return inspect_path(path).bytes_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="where the big checkpoint is built and kept (default: temp, removed)")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per tool and file (after one warm-up)")
    ap.add_argument("--stat", choices=("min", "median"), default="min", help="wall-time statistic over the runs")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = ap.parse_args()

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="ckreg-bench-")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "src" / "ckreg")], check=False)
    pick = min if args.stat == "min" else statistics.median
    try:
        files = [build_big(workdir, args.size_mb)]
        if ARCHIVE.is_dir():
            files += sorted(ARCHIVE.rglob("*.ckpt"))
        tools = [t.strip() for t in args.tools.split(",") if t.strip()]
        rows = []
        for f in files:
            row = {"file": f.name if f.parent == workdir else str(f.relative_to(ARCHIVE)),
                   "size_mb": f.stat().st_size / 1e6, "bytes_read": bytes_read(f)}
            for tool in tools:
                runs = [measure(TOOLS[tool](str(f))) for _ in range(args.repeat + 1)][1:]  # first run warms the cache
                bad = [r for r in runs if r["rc"] not in (0, 1)]  # scanners exit 1 on findings
                row[tool] = {"wall": pick(r["wall"] for r in runs),
                             "rss_mb": max(r["rss_kib"] for r in runs) / 1024,
                             "rc": runs[0]["rc"], "err": bad[0]["err"] if bad else ""}
            rows.append(row)
            print(f"measured {row['file']}", file=sys.stderr, flush=True)
        print(f"wall = {args.stat} of {args.repeat} runs after a warm-up; peak RSS = max; "
              f"load average before/after: see `uptime`", file=sys.stderr)
        report(rows, tools, args.markdown)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


def report(rows: list[dict], tools: list[str], markdown: bool) -> None:
    head = ["file", "MB", "ckreg read"] + [f"{t} s / MB" for t in tools]
    ratios = []
    if "torch.load" in tools and "ckreg inspect" in tools:
        ratios += ["torch.load / ckreg", "torch.load mmap / ckreg"]
    if "picklescan" in tools and "ckreg inspect" in tools:
        ratios += ["ckreg / picklescan"]
    if "modelscan" in tools and "ckreg inspect" in tools:
        ratios += ["ckreg / modelscan"]
    head += ratios
    table = []
    for r in rows:
        line = [r["file"], f"{r['size_mb']:.1f}", _human(r["bytes_read"])]
        for t in tools:
            m = r[t]
            cell = f"{m['wall']:.2f} s / {m['rss_mb']:.0f} MB"
            if m["err"]:
                cell += " (failed)"
            line.append(cell)
        ck = r.get("ckreg inspect", {}).get("wall")
        for name in ratios:
            if name == "torch.load / ckreg":
                line.append(_ratio(r["torch.load"]["wall"], ck))
            elif name == "torch.load mmap / ckreg":
                line.append(_ratio(r["torch.load mmap"]["wall"], ck))
            elif name == "ckreg / picklescan":
                line.append(_ratio(ck, r["picklescan"]["wall"]))
            elif name == "ckreg / modelscan":
                line.append(_ratio(ck, r["modelscan"]["wall"]))
        table.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for line in table:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    failed = [(r["file"], t, r[t]["err"]) for r in rows for t in tools if r[t]["err"]]
    for f, t, err in failed:
        print(f"note: {t} failed on {f}: {err.strip().splitlines()[-1] if err.strip() else '?'}")
    if markdown:
        print()
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in table:
            print("| " + " | ".join(str(x) for x in line) + " |")


def _human(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


if __name__ == "__main__":
    main()
