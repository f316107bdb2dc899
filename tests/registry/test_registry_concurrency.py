"""Processes registering and moving aliases at once lose nothing, on SQLite + folder and PostgreSQL + S3.

Each worker is a fresh Python process that waits at a file barrier, so the
registrations really overlap; they all start on a registry that does not
exist yet, so creation races too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckreg.registry import Registry
from reghelpers import sha256_of, stub_add

# Imports only ckreg.registry (start-up matters with several workers on 2 cores); the stub
# inspection is reghelpers.stub_inspection's, as plain attributes.
WORKER = r"""
import hashlib, json, sys, time
from pathlib import Path
from types import SimpleNamespace
from ckreg.arch import ArchSpec
from ckreg.registry import AliasConflictError, Registry
mode, reg_path, db, store, go, *args = sys.argv[1:]
reg = Registry(reg_path, db=None if db == "-" else db, store=None if store == "-" else store)
spec = ArchSpec.for_family("GRU", hidden_size=8, num_classes=4)
while not Path(go).exists():
    time.sleep(0.002)
if mode == "add":
    for f in args:
        data = Path(f).read_bytes()
        insp = SimpleNamespace(family="GRU", hyperparameters=spec.weight_hparams(), format="stub", error=None,
                               sha256=hashlib.sha256(data).hexdigest(),
                               weights_sha256=hashlib.sha256(b"weights:" + data).hexdigest())
        v = reg.add(Path(f), name="GRU", spec=spec, inspection=insp)
        print(json.dumps({"file": f, "ref": v.ref, "sha256": v.sha256}), flush=True)
elif mode == "alias":
    try:
        reg.alias("GRU", "prod", int(args[0]), expect=None)
        print(json.dumps({"won": int(args[0])}))
    except AliasConflictError:
        print(json.dumps({"lost": int(args[0])}))
"""


@pytest.fixture(params=["sqlite+folder", "postgres+s3"])
def backend(request, tmp_path, monkeypatch) -> dict:
    """Where the racing processes' registry lives: (path, db, store); the same tests on both backends."""
    if request.param == "sqlite+folder":
        return {"path": tmp_path / "reg", "db": None, "store": None}
    pg_url = request.getfixturevalue("pg_url")
    bucket = request.getfixturevalue("s3_bucket")   # sets AWS_ENDPOINT_URL etc., which the workers inherit
    monkeypatch.setenv("CKREG_CACHE_DIR", str(tmp_path / "cache"))
    return {"path": tmp_path / "reg", "db": pg_url, "store": f"s3://{bucket}/team"}


def _open(backend: dict) -> Registry:
    return Registry(backend["path"], db=backend["db"], store=backend["store"])


def _run_workers(tmp_path: Path, backend: dict, jobs: list[list[str]]) -> list[list[dict]]:
    go = tmp_path / f"go-{time.monotonic_ns()}"
    where = [str(backend["path"]), backend["db"] or "-", backend["store"] or "-"]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, job[0], *where, str(go), *job[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for job in jobs]
    time.sleep(0.3)   # let every worker import and reach the barrier
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append([json.loads(line) for line in out.splitlines() if line.strip()])
    return outs


def test_two_processes_registering_at_once_lose_nothing(tmp_path, blob_file, backend):
    files = [blob_file(i) for i in range(20)]
    outs = _run_workers(tmp_path, backend, [["add", *map(str, files[:10])], ["add", *map(str, files[10:])]])
    reported = [r for out in outs for r in out]
    assert len(reported) == 20

    reg = _open(backend)
    versions = reg.ls("GRU")
    assert sorted(v.version for v in versions) == list(range(1, 21)), "20 versions, numbers unique and dense"
    by_sha = {v.sha256: v for v in versions}
    assert set(by_sha) == {sha256_of(f) for f in files}, "every file registered exactly once"
    for r in reported:
        assert by_sha[r["sha256"]].ref == r["ref"], "each process got back the version it created"
    assert reg.verify() == [], "blobs intact"
    assert len(reg.events(kind="registered")) == 20 and len(reg.events(kind="registry-created")) == 1


def test_concurrent_registration_of_the_same_files_is_idempotent(tmp_path, blob_file, backend):
    files = [str(blob_file(i)) for i in range(6)]
    outs = _run_workers(tmp_path, backend, [["add", *files], ["add", *reversed(files)]])
    reg = _open(backend)
    assert len(reg.ls()) == 6
    refs_a = {r["file"]: r["ref"] for r in outs[0]}
    refs_b = {r["file"]: r["ref"] for r in outs[1]}
    assert refs_a == refs_b, "both processes agree on each file's version"
    assert len(reg.events(kind="registered")) == 6


def test_concurrent_alias_cas_has_exactly_one_winner(tmp_path, blob_file, backend):
    with _open(backend) as reg:
        for i in range(3):
            stub_add(reg, blob_file(i))
    outs = _run_workers(tmp_path, backend, [["alias", str(n)] for n in (1, 2, 3)])
    results = [out[0] for out in outs]
    winners = [r["won"] for r in results if "won" in r]
    assert len(winners) == 1 and sum("lost" in r for r in results) == 2
    reg = _open(backend)
    assert reg.resolve("GRU@prod").version == winners[0]
    assert [e.data["to"] for e in reg.events(kind="alias-moved")] == winners
