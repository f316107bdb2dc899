"""Content-addressed blobs: layout, dedupe, integrity on read and in `verify` (issue #5)."""

from __future__ import annotations

import stat

import pytest

from ckreg.errors import IntegrityError
from ckreg.registry.blobs import BlobStore
from reghelpers import corrupt_blob, delete_blob, sha256_of, stub_add


def test_put_is_content_addressed_and_deduplicated(tmp_path, blob_file):
    store = BlobStore(tmp_path / "reg")
    src = blob_file(1)
    first = store.put_file(src)
    digest = sha256_of(src)
    assert first.sha256 == digest and first.created
    assert first.path == tmp_path / "reg" / "blobs" / "sha256" / digest[:2] / digest
    assert first.path.read_bytes() == src.read_bytes()
    assert not (stat.S_IMODE(first.path.stat().st_mode) & 0o222), "blobs are stored read-only"

    copy = tmp_path / "copy.bin"
    copy.write_bytes(src.read_bytes())
    again = store.put_file(copy)
    assert again.sha256 == digest and not again.created
    assert [d for d, _ in store.iter_blobs()] == [digest]
    assert list((tmp_path / "reg" / "tmp").iterdir()) == [], "no temp file is left behind"


def test_registering_the_same_file_twice_under_two_names_stores_one_blob(reg, blob_file):
    a = stub_add(reg, blob_file(1), name="A")
    b = stub_add(reg, blob_file(1), name="B")
    assert a.sha256 == b.sha256
    assert len(list(reg.blobs.iter_blobs())) == 1


def test_flipped_byte_is_refused_on_read(reg, blob_file):
    v = stub_add(reg, blob_file(1))
    assert reg.blob_path(v.sha256).read_bytes() == blob_file(1).read_bytes()
    if not reg.blobs.remote:
        assert reg.blob_path(v.sha256) == reg.blobs.path_for(v.sha256)
    corrupt_blob(reg, v.sha256)
    with pytest.raises(IntegrityError, match="corrupted"):
        reg.blob_path(v.sha256)
    with pytest.raises(IntegrityError, match="corrupted"):
        reg.blobs.read_bytes(v.sha256)


def test_verify_reports_corrupt_and_missing_blobs_with_their_users(reg, blob_file):
    v1 = stub_add(reg, blob_file(1))
    v2 = stub_add(reg, blob_file(2))
    assert reg.verify() == []
    corrupt_blob(reg, v1.sha256)
    delete_blob(reg, v2.sha256)
    problems = {p.kind: p for p in reg.verify()}
    assert set(problems) == {"corrupt", "missing"}
    assert problems["corrupt"].sha256 == v1.sha256 and problems["corrupt"].referenced_by == ["GRU@1"]
    assert problems["missing"].sha256 == v2.sha256 and problems["missing"].referenced_by == ["GRU@2"]


def test_stray_file_in_blob_store_is_reported(reg, blob_file):
    stub_add(reg, blob_file(1))
    if reg.blobs.remote:
        reg.blobs.fs.pipe_file(f"{reg.blobs.dir}/zz/notes.txt", b"hello")
    else:
        stray = reg.blobs.dir / "zz" / "notes.txt"
        stray.parent.mkdir()
        stray.write_text("hello")
    assert [p.kind for p in reg.verify()] == ["misplaced"]


def test_re_adding_the_original_repairs_a_corrupted_blob(reg, blob_file):
    src = blob_file(1)
    v = stub_add(reg, src)
    corrupt_blob(reg, v.sha256)
    assert [p.kind for p in reg.verify()] == ["corrupt"]
    res = reg.blobs.put_file(src)
    assert res.repaired
    assert reg.blobs.read_bytes(v.sha256) == src.read_bytes()
    assert reg.verify() == []
