"""Bad input: one clear error naming the file, or a finding; never a crash, never a hang (issue #2)."""

from __future__ import annotations

import os
import random
import struct
import zipfile
import zlib

import pytest

from ckreg.errors import FormatError, ReadError
from ckreg.readers import read_checkpoint
from readers_builders import global_op, rewrite_zip, wrap


def _raises_naming(path, match: str):
    with pytest.raises(ReadError) as info:
        read_checkpoint(path)
    assert info.value.path == str(path)
    assert str(path) in info.value.render()
    assert match.lower() in str(info.value).lower(), str(info.value)
    return info.value


def test_empty_file(write):
    _raises_naming(write("empty.pt", b""), "empty")


def test_random_bytes(write):
    rng = random.Random(1234)
    for i in range(20):
        data = bytes(rng.randrange(256) for _ in range(4096))
        path = write(f"random{i}.bin", data)
        try:
            res = read_checkpoint(path)
        except ReadError as exc:
            assert exc.path == str(path)
        else:  # survived as a "pickle": then it must be flagged as not clean
            assert any(f.code == "pickle-malformed" for f in res.findings)


def test_random_bytes_fixed_example(write):
    _raises_naming(write("noise.pt", bytes(range(7, 200))), "not a recognised")


def test_truncated_zip(save, tiny_state_dict, write):
    data = save(tiny_state_dict, "full.pt").read_bytes()
    _raises_naming(write("half.pt", data[: len(data) // 2]), "truncated")


def test_truncated_zip_keeps_findings_learned_so_far(save, tiny_state_dict, write, tmp_path):
    data = save(tiny_state_dict, "full.pt").read_bytes()
    err = _raises_naming(write("cut.pt", data[:-30]), "zip")
    assert isinstance(err, FormatError)
    assert hasattr(err, "findings")


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_truncated_legacy(save, tiny_state_dict, write, cut):
    data = save(tiny_state_dict, "legacy.pt", _use_new_zipfile_serialization=False).read_bytes()
    with pytest.raises(ReadError) as info:
        read_checkpoint(write("legacy_cut.pt", data[:-cut]))
    assert "legacy_cut.pt" in info.value.render()


def test_truncated_plain_pickle(write):
    import pickle

    data = pickle.dumps({"a": list(range(50)), "b": "x" * 100}, protocol=4)
    _raises_naming(write("cut.pkl", data[:-20]), "truncated")


def test_truncated_pickle_with_a_payload_still_reports_it(write):
    data = wrap(global_op("os", "system") + b"(S'id'\ntR" + b"(" + b"K\x01" * 50)
    with pytest.raises(ReadError) as info:
        read_checkpoint(write("evil_cut.pkl", data[:-1]))
    assert any(f.code == "unsafe-global" and f.actual == "os.system" for f in info.value.findings)


def test_zip_with_a_missing_storage_entry(save, tiny_state_dict, tmp_path):
    src = save(tiny_state_dict, "full.pt")
    out = rewrite_zip(src, tmp_path / "missing.pt", drop=lambda n: n.endswith("/data/1"))
    err = _raises_naming(out, "missing")
    assert "data/1" in str(err)
    assert err.partial is not None and err.partial.tensors  # the rest was still read


def test_zip_without_a_pickle(tmp_path):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    _raises_naming(path, "no */data.pkl")


def test_directory(tmp_path):
    d = tmp_path / "a_dir.ckpt"
    d.mkdir()
    _raises_naming(d, "directory")


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    os.symlink(b, a)
    os.symlink(a, b)
    _raises_naming(a, "symlink loop")


def test_dangling_symlink_and_missing_file(tmp_path):
    link = tmp_path / "dangling.pt"
    os.symlink(tmp_path / "nowhere.pt", link)
    _raises_naming(link, "dangling")
    _raises_naming(tmp_path / "absent.pt", "no such file")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    _raises_naming(fifo, "not a regular file")


def test_huge_declared_tensor_in_zip(save, torch_mod, tmp_path):
    """A storage pid claiming 2**40 elements, and a shape larger than its storage: tensor-implausible."""
    path = save({"w": torch_mod.zeros(4)}, "small.pt")
    z = zipfile.ZipFile(path)
    name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    pkl = z.read(name)
    # numel 4 (BININT1) in the persistent id -> 2**40 (LONG1); shape (4,) -> (2**30,)
    patched = pkl.replace(b"K\x04t", b"\x8a\x06" + (2 ** 40).to_bytes(6, "little") + b"t", 1)
    patched = patched.replace(b"K\x04\x85", b"J" + struct.pack("<i", 2 ** 30) + b"\x85", 1)
    assert patched != pkl
    out = rewrite_zip(path, tmp_path / "huge.pt", drop=lambda n: n == name, extra={name: patched})
    res = read_checkpoint(out)
    f = [f for f in res.findings if f.code == "tensor-implausible"]
    assert f and all(x.severity.value == "error" for x in f)
    assert res.tensors["w"].shape == (2 ** 30,)
    assert res.bytes_read < 64 * 1024


def test_huge_declared_tensor_in_legacy(save, torch_mod, tmp_path):
    path = save({"w": torch_mod.zeros(4)}, "legacy.pt", _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    # the raw storage header (element count, int64 LE) just before the 16 data bytes
    hdr = data.rfind(struct.pack("<q", 4))
    out = tmp_path / "legacy_huge.pt"
    out.write_bytes(data[:hdr] + struct.pack("<q", 2 ** 50) + data[hdr + 8:])
    with pytest.raises(ReadError) as info:
        read_checkpoint(out)
    assert any(f.code == "tensor-implausible" for f in info.value.findings)


def test_zip_bomb_members_are_capped(save, tiny_state_dict, tmp_path):
    src = save(tiny_state_dict, "b.pt")
    prefix = zipfile.ZipFile(src).namelist()[0].split("/")[0]
    out = tmp_path / "bomb.pt"
    rewrite_zip(src, out)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr(f"{prefix}/bomb.pkl", b"\x80\x04" + b"N" * (80 << 20), compress_type=zipfile.ZIP_DEFLATED)
    res = read_checkpoint(out)
    assert any(f.code == "archive-anomaly" and "cap" in f.message for f in res.findings)
    assert list(res.tensors) == list(tiny_state_dict)


def test_zip_bomb_main_pickle_is_refused(save, tiny_state_dict, tmp_path):
    src = save(tiny_state_dict, "b.pt")
    z = zipfile.ZipFile(src)
    name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    out = rewrite_zip(src, tmp_path / "bomb_main.pt", drop=lambda n: n == name)
    with zipfile.ZipFile(out, "a") as zz:
        zz.writestr(name, b"\x80\x04" + b"N" * (70 << 20) + b".", compress_type=zipfile.ZIP_DEFLATED)
    err = _raises_naming(out, "cannot read the pickle member")
    assert any("cap" in f.message for f in err.findings)


def test_deflated_members_are_read(save, tiny_state_dict, tmp_path):
    """Members compressed with deflate (re-zipped archives) are read and streamed."""
    src = save(tiny_state_dict, "b.pt")
    out = rewrite_zip(src, tmp_path / "deflated.pt", compress=lambda n: zipfile.ZIP_DEFLATED)
    res = read_checkpoint(out)
    assert not res.findings
    w = tiny_state_dict["RNN.1.weight_hh_l0"]
    assert b"".join(res.iter_tensor_bytes(res.tensors["RNN.1.weight_hh_l0"])) == w.numpy().tobytes()


def test_garbage_pickle_member_is_a_finding_not_a_crash(tmp_path):
    path = tmp_path / "garbage.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + zlib.compress(b"junk" * 100))
    res = read_checkpoint(path)
    assert any(f.code == "pickle-malformed" for f in res.findings)
    assert res.tensors == {}


def test_corrupt_deflate_stream(tmp_path):
    path = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + bytes(range(256)) * 40 + b"N.",
                   compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.find(b"archive/data.pkl") + len("archive/data.pkl")
    for i in range(start + 10, start + 60):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    err = _raises_naming(path, "cannot read the pickle member")
    assert any(f.code == "archive-anomaly" for f in err.findings)


def test_safetensors_header_past_end(write):
    data = struct.pack("<Q", 10_000) + b'{"a":1}'
    err = _raises_naming(write("bad.safetensors", data), "past the end")
    assert any(f.code == "safetensors-invalid" for f in err.findings)
