"""Two processes registering at once lose nothing (issue #5), tested with real processes.

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
mode, reg_path, go, *args = sys.argv[1:]
reg = Registry(reg_path)
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


def _run_workers(tmp_path: Path, reg_path: Path, jobs: list[list[str]]) -> list[list[dict]]:
    go = tmp_path / f"go-{time.monotonic_ns()}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, job[0], str(reg_path), str(go), *job[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for job in jobs]
    time.sleep(0.3)   # let every worker import and reach the barrier
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append([json.loads(line) for line in out.splitlines() if line.strip()])
    return outs


def test_two_processes_registering_at_once_lose_nothing(tmp_path, blob_file):
    reg_path = tmp_path / "reg"
    files = [blob_file(i) for i in range(20)]
    outs = _run_workers(tmp_path, reg_path, [["add", *map(str, files[:10])], ["add", *map(str, files[10:])]])
    reported = [r for out in outs for r in out]
    assert len(reported) == 20

    reg = Registry(reg_path)
    versions = reg.ls("GRU")
    assert sorted(v.version for v in versions) == list(range(1, 21)), "20 versions, numbers unique and dense"
    by_sha = {v.sha256: v for v in versions}
    assert set(by_sha) == {sha256_of(f) for f in files}, "every file registered exactly once"
    for r in reported:
        assert by_sha[r["sha256"]].ref == r["ref"], "each process got back the version it created"
    assert reg.verify() == [], "blobs intact"
    assert len(reg.events(kind="registered")) == 20 and len(reg.events(kind="registry-created")) == 1


def test_concurrent_registration_of_the_same_files_is_idempotent(tmp_path, blob_file):
    reg_path = tmp_path / "reg"
    files = [str(blob_file(i)) for i in range(6)]
    outs = _run_workers(tmp_path, reg_path, [["add", *files], ["add", *reversed(files)]])
    reg = Registry(reg_path)
    assert len(reg.ls()) == 6
    refs_a = {r["file"]: r["ref"] for r in outs[0]}
    refs_b = {r["file"]: r["ref"] for r in outs[1]}
    assert refs_a == refs_b, "both processes agree on each file's version"
    assert len(reg.events(kind="registered")) == 6


def test_concurrent_alias_cas_has_exactly_one_winner(tmp_path, blob_file):
    reg_path = tmp_path / "reg"
    with Registry(reg_path) as reg:
        for i in range(3):
            stub_add(reg, blob_file(i))
    outs = _run_workers(tmp_path, reg_path, [["alias", str(n)] for n in (1, 2, 3)])
    results = [out[0] for out in outs]
    winners = [r["won"] for r in results if "won" in r]
    assert len(winners) == 1 and sum("lost" in r for r in results) == 2
    reg = Registry(reg_path)
    assert reg.resolve("GRU@prod").version == winners[0]
    assert [e.data["to"] for e in reg.events(kind="alias-moved")] == winners
