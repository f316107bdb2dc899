"""Benchmark remote inspection (`ckreg inspect s3://...`) against downloading the file.

Builds checkpoints of several sizes (torch zip and legacy files saved with torch.save,
safetensors files written directly; 100 tensors each, so that the pickle and the
zip directory are those of a real model), puts them on two servers, then for each
file measures, with ckreg's caches emptied before every run:

    ckreg: inspect_path(URL)       bytes transferred, requests, wall time
    download: fs.get_file(URL)     the obvious alternative (before any local look)

and prints bytes transferred against file size and the time ratio download / ckreg
(the minimum of --repeat runs). Then it audits the whole S3 prefix
(`ckreg.audit.audit("s3://bucket/prefix")`) against downloading every object.
Goal: at most 64 KiB transferred per 1 GB checkpoint.

Servers: an S3 server, $CKREG_TEST_S3_ENDPOINT (`eval "$(.ci/services.sh start)"`), or, without
it, a moto server this script starts on a free port; and a local HTTP server that
answers Range requests from the files on disk (`http://` URLs, fsspec's HTTP
filesystem). moto builds the whole object in memory for every GET, ranged or not,
so on moto each range request costs as much server time as a download: its times
understate ckreg's advantage on a real store, where a range request costs one
round trip; the HTTP server shows range requests at their real cost. moto also
holds a whole object in memory per request, so the legacy file (one small range
per storage, fetched 16 at a time) is not put on moto from 512 MiB up.
Generation streams big tensors from untouched memory (RAM stays low); it is not
timed and is reused from --workdir.

    python bench/bench_remote.py                                  # 1 MB, 64 MB, 1 GB
    python bench/bench_remote.py --sizes 1,64 --repeat 5 --markdown
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import threading
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
N_TENSORS = 100


def build(workdir: Path, kind: str, size_mb: int) -> Path:
    """A checkpoint of about `size_mb` MiB holding N_TENSORS float32 tensors."""
    suffix = {"torch-zip": "pt", "torch-legacy": "legacy.pt", "safetensors": "safetensors"}[kind]
    path = workdir / f"{kind}_{size_mb}mb.{suffix}"
    if path.exists():
        return path
    per = max(1, size_mb * (1 << 20) // 4 // N_TENSORS)
    cols = 256
    rows = max(1, per // cols)
    tmp = path.with_name(path.name + ".tmp")
    if kind == "safetensors":
        header, offset = {}, 0
        for i in range(N_TENSORS):
            n = rows * cols * 4
            header[f"layers.{i}.weight"] = {"dtype": "F32", "shape": [rows, cols], "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header).encode()
        with open(tmp, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            fh.truncate(8 + len(raw) + offset)            # zero-filled data, written sparse
    else:
        import torch

        sd = {f"layers.{i}.weight": torch.empty(rows, cols) for i in range(N_TENSORS)}   # pages never touched
        torch.save(sd, tmp, _use_new_zipfile_serialization=(kind == "torch-zip"))
        del sd
    os.replace(tmp, path)
    return path


def start_moto(workdir: Path) -> tuple[str, subprocess.Popen]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    log = open(workdir / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return url, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start (pip install 'moto[server]')")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=a-b` support (what object stores and CDNs answer)."""

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
        rng = self.headers.get("Range", "")
        start, end = 0, size - 1
        if rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a or 0), min(size - 1, int(b) if b else size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(start)
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        while self._left > 0:
            chunk = source.read(min(1 << 20, self._left))
            if not chunk:
                break
            outputfile.write(chunk)
            self._left -= len(chunk)

    def log_message(self, *args):
        pass


def start_http(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    handler = lambda *a, **kw: RangeHandler(*a, directory=str(folder), **kw)  # noqa: E731

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 128     # concurrent range requests: no SYNs dropped by a 5-deep backlog

    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def fresh() -> None:
    """Empty ckreg's caches of remote blocks and listings (each run pays for what it reads)."""
    from ckreg.readers import remote

    with remote._lock:
        remote._OBJECTS.clear()
        remote._INFO.clear()
        remote._LISTING.clear()
        remote._cached_bytes = 0


def best_of(fn, repeat: int):
    times, value = [], None
    for _ in range(repeat):
        fresh()
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def human(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,64,1024", help="checkpoint sizes in MiB (comma separated)")
    ap.add_argument("--kinds", default="torch-zip,safetensors,torch-legacy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated files here (reused)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ckreg-bench-remote-"))
    workdir.mkdir(parents=True, exist_ok=True)
    moto = None
    endpoint = os.environ.get("CKREG_TEST_S3_ENDPOINT")
    if not endpoint:
        endpoint, moto = start_moto(workdir)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        run(args, workdir, endpoint)
    finally:
        if moto is not None:
            moto.terminate()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args, workdir: Path, endpoint: str) -> None:
    import boto3

    from ckreg.audit import audit
    from ckreg.inspect import inspect_path
    from ckreg.readers import remote

    bucket = f"ckreg-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    fs, _ = remote.filesystem(f"s3://{bucket}")
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    files = [build(workdir, kind, size) for size in sizes for kind in kinds]
    served = workdir / "served"
    served.mkdir(exist_ok=True)
    for path in files:
        link = served / path.name
        if not link.exists():
            os.link(path, link)
    http_url, server = start_http(served)
    import fsspec

    tables = {}
    try:
        for store in ("s3", "http"):
            tables[store] = rows = []
            sfs = fs if store == "s3" else fsspec.filesystem("http")
            for path in files:
                if store == "s3" and "legacy" in path.name and path.stat().st_size >= 512 << 20:
                    continue   # moto: one whole object in memory per concurrent request
                url = f"s3://{bucket}/archive/{path.name}" if store == "s3" else f"{http_url}/{path.name}"
                if store == "s3":
                    fs.put_file(str(path), url)
                rows.append(measure(url, path, sfs, workdir, args.repeat, inspect_path, remote))
        stored = sum(r[1] for r in tables["s3"])
        t_audit, report = best_of(lambda: audit(f"s3://{bucket}/archive", cache=False, hash_policy="none"),
                                  args.repeat)
        dldir = workdir / "download-all"

        def download_all():
            shutil.rmtree(dldir, ignore_errors=True)
            fs.get(f"s3://{bucket}/archive/", str(dldir) + "/", recursive=True)

        t_dl_all, _ = best_of(download_all, args.repeat)
        shutil.rmtree(dldir, ignore_errors=True)
    finally:
        server.shutdown()
        fs.rm(f"{bucket}/archive", recursive=True)     # moto keeps every object until it stops
    rows = tables["s3"]
    transfer = report.extra["transfer"]
    rows.append((f"audit of {len(rows)} files", stored, transfer["total"], transfer["requests"], t_audit, t_dl_all))
    for store, title in (("s3", "S3 (moto; every GET costs the server a whole-object read)"),
                         ("http", "HTTP server answering Range requests from disk")):
        print(f"\n{title}")
        show(tables[store], args.markdown)
    for name, s, b, *_ in [r for r in tables["http"] if r[1] >= 512 << 20]:
        print(f"goal (<= 64 KiB per 1 GB checkpoint): {name} {human(b)} -> "
              f"{'met' if b / (s / (1 << 30)) <= 64 << 10 else 'NOT met'}")


def measure(url: str, path: Path, fs, workdir: Path, repeat: int, inspect_path, remote) -> tuple:
    dl = workdir / "download.tmp"

    def inspect_it():
        before = remote.transfers()
        insp = inspect_path(url)
        assert insp.error is None, insp.error
        return remote.transferred(url, since=before)

    t_ckreg, (nbytes, requests) = best_of(inspect_it, repeat)
    t_dl, _ = best_of(lambda: fs.get_file(url, str(dl)), repeat)
    dl.unlink(missing_ok=True)
    print(f"  {url}: {human(nbytes)} in {requests} requests, {t_ckreg * 1000:.0f} ms "
          f"(download {t_dl * 1000:.0f} ms)", file=sys.stderr)
    return path.name, path.stat().st_size, nbytes, requests, t_ckreg, t_dl


def show(rows: list[tuple], markdown: bool) -> None:
    header = ("file", "size", "transferred", "of size", "requests", "ckreg", "download", "download/ckreg")
    table = [(n, human(s), human(b), f"{100 * b / s:.2g}%", str(r), f"{tc * 1000:.0f} ms",
              f"{td * 1000:.0f} ms", f"{td / tc:.1f}x") for n, s, b, r, tc, td in rows]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
