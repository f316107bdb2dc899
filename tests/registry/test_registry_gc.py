"""gc removes only blobs no version references, and spares in-flight ones (issue #5)."""

from __future__ import annotations

import os
import time

from reghelpers import stub_add


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_gc_removes_only_unreferenced_old_blobs(reg, blob_file):
    v = stub_add(reg, blob_file(1))
    orphan = reg.blobs.put_file(blob_file(2))          # e.g. left by a registration that failed
    if reg.blobs.remote:   # an object store sets the time itself (whole seconds): let them really age
        time.sleep(2.2)
        grace = 1.5
    else:
        _age(orphan.path, 7200)
        _age(reg.blobs.path_for(v.sha256), 7200)
        grace = 3600
    recent = reg.blobs.put_file(blob_file(3))          # e.g. a registration in flight

    dry = reg.gc(grace_seconds=grace)
    assert dry.dry_run and dry.removed == [orphan.sha256] and dry.kept_recent == [recent.sha256]
    assert reg.blobs.exists(orphan.sha256), "a dry run deletes nothing"
    assert reg.events(kind="gc") == []

    done = reg.gc(dry_run=False, grace_seconds=grace)
    assert done.removed == [orphan.sha256] and done.bytes == orphan.size
    assert not reg.blobs.exists(orphan.sha256) and reg.blobs.exists(recent.sha256)
    assert reg.blob_path(v.sha256).exists(), "referenced blobs survive"
    assert reg.verify() == []
    (event,) = reg.events(kind="gc")
    assert event.data["removed"] == [orphan.sha256]


def test_gc_cleans_stale_temp_files(reg, blob_file):
    stub_add(reg, blob_file(1))
    tmp = reg.blobs.cache_dir if reg.blobs.remote else reg.blobs.tmp   # where interrupted writes leave temps
    tmp.mkdir(parents=True, exist_ok=True)
    stale = tmp / "put-abandoned.tmp"
    stale.write_bytes(b"half a blob")
    _age(stale, 7200)
    res = reg.gc(dry_run=False)
    assert res.temps == [str(stale)] and not stale.exists()
