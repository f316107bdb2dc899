"""Every format, detected from bytes; tensors described without reading their bytes; bytes streamed exactly."""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict

import pytest

from ckreg.readers import read_checkpoint


def _torch_bytes(t) -> bytes:
    import torch

    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def _assert_matches(res, sd):
    assert list(res.tensors) == list(sd)
    for name, t in sd.items():
        rec = res.tensors[name]
        assert rec.shape == tuple(t.shape), name
        assert rec.dtype == str(t.dtype).removeprefix("torch."), name
        assert b"".join(res.iter_tensor_bytes(rec)) == _torch_bytes(t), name


@pytest.mark.parametrize("kw,fmt", [
    ({}, "torch-zip"),
    ({"pickle_protocol": 4}, "torch-zip"),
    ({"pickle_protocol": 5}, "torch-zip"),
    ({"_use_new_zipfile_serialization": False}, "torch-legacy"),
    ({"_use_new_zipfile_serialization": False, "pickle_protocol": 4}, "torch-legacy"),
])
def test_torch_save_formats(save, tiny_state_dict, kw, fmt):
    path = save(tiny_state_dict, "w.bin", **kw)
    res = read_checkpoint(path)
    assert res.format == fmt
    assert res.findings == []
    _assert_matches(res, tiny_state_dict)
    assert res.unwrap == ["the file is a plain state_dict"]


def test_extension_does_not_decide_the_format(save, tiny_state_dict, tmp_path):
    path = save(tiny_state_dict, "weights.safetensors")  # a torch zip with a misleading name
    assert read_checkpoint(path).format == "torch-zip"


def test_views_offsets_and_non_contiguous_tensors_stream_exactly(save, torch_mod):
    torch = torch_mod
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    sd = OrderedDict(
        full=base, transposed=base.t(), sliced=base[2:5, 3:9], strided=base[::2, ::3],
        row=base[4], scalar=base[1, 1], bf16=torch.arange(5, dtype=torch.bfloat16),
        empty=torch.zeros(0, 3), boolean=torch.tensor([True, False, True]),
    )
    for kw in ({}, {"_use_new_zipfile_serialization": False}):
        res = read_checkpoint(save(sd, "views.pt", **kw))
        _assert_matches(res, sd)
        assert res.tensors["sliced"].storage_offset == 23
        assert res.tensors["transposed"].stride == (1, 10)
        assert res.tensors["full"].tie_key[0] == res.tensors["transposed"].tie_key[0]  # shared storage


def test_tied_weights_share_a_storage(save, torch_mod):
    w = torch_mod.randn(4, 4)
    res = read_checkpoint(save({"enc.weight": w, "dec.weight": w}, "tied.pt"))
    assert res.tensors["enc.weight"].tie_key == res.tensors["dec.weight"].tie_key


def test_reading_does_not_touch_tensor_bytes(save, torch_mod):
    """bytes_read stays tiny for a file that is mostly tensor data (issue #2, Speed)."""
    sd = {f"layer{i}.weight": torch_mod.zeros(512, 512) for i in range(8)}  # 8 MiB
    path = save(sd, "big.pt")
    res = read_checkpoint(path)
    assert path.stat().st_size > 8_000_000
    assert res.bytes_read < 64 * 1024
    before = res.bytes_read
    digest = hashlib.sha256()
    for chunk in res.iter_tensor_bytes(res.tensors["layer3.weight"]):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(bytes(512 * 512 * 4)).hexdigest()
    assert 512 * 512 * 4 <= res.bytes_read - before <= 512 * 512 * 4 + 128  # + one local zip header


def test_file_sha256_is_lazy(save, tiny_state_dict):
    path = save(tiny_state_dict, "x.pt")
    res = read_checkpoint(path)
    assert res.sha256_if_known is None
    assert res.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert res.bytes_read >= path.stat().st_size


def test_safetensors(tmp_path, tiny_state_dict):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "m.safetensors"
    st.save_file(dict(tiny_state_dict), str(path), metadata={"format": "pt", "family": "GRU"})
    res = read_checkpoint(path)
    assert res.format == "safetensors" and res.findings == [] and res.globals == []
    assert res.metadata["__metadata__"] == {"format": "pt", "family": "GRU"}
    assert sorted(res.tensors) == sorted(tiny_state_dict)
    for name, t in tiny_state_dict.items():
        assert b"".join(res.iter_tensor_bytes(res.tensors[name])) == _torch_bytes(t)


@pytest.mark.parametrize("protocol", range(0, 6))
def test_plain_pickled_dicts(tmp_path, protocol):
    """Plain pickles of hyperparameter/metadata dicts are read, with no unsafe findings."""
    np = pytest.importorskip("numpy")
    obj = {"epoch": 3, "hparams": {"lr": 0.01, "layers": [1, 2]}, "mean": np.arange(3.0),
           "best": np.float32(0.5), "tags": {"a", "b"}, "blob": b"\x00\x01"}
    path = tmp_path / f"p{protocol}.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    res = read_checkpoint(path)
    assert res.format == "pickle"
    assert not [f for f in res.findings if f.severity.value == "error"], res.findings
    assert res.metadata["epoch"] == 3
    assert res.metadata["keys"] == list(obj)


def test_plain_pickle_of_torch_tensors_is_read_but_flagged(tmp_path, tiny_state_dict):
    """pickle.dump of tensors embeds torch.storage._load_from_bytes: a nested torch.load (unsafe)."""
    path = tmp_path / "sd.pkl"
    path.write_bytes(pickle.dumps(dict(tiny_state_dict), protocol=2))
    res = read_checkpoint(path)
    assert res.format == "pickle"
    assert "torch.storage._load_from_bytes" in {f.actual for f in res.findings if f.code == "unsafe-global"}
    assert list(res.tensors) == list(tiny_state_dict)
    assert res.tensors["RNN.0.weight"].shape == (16, 8)
    assert res.tensors["head.weight"].dtype == "float64"   # read from the embedded legacy storage file


def test_holding_a_small_file_reads_it_once_for_both_hashes(tmp_path, monkeypatch):
    """`ReadResult.holding_source`: one read of the whole file gives the same sha256 and weights
    hash as reading it per tensor, and no file is opened per tensor."""
    torch = pytest.importorskip("torch")
    from ckreg.inspect import weights_sha256
    from ckreg.readers import fileio, read_checkpoint

    path = tmp_path / "m.pt"
    torch.save({f"layer{i}.weight": torch.randn(16, 8) for i in range(6)}, path)
    plain = read_checkpoint(path)
    want = (plain.sha256, weights_sha256(plain))   # per tensor, one open each
    res = read_checkpoint(path)
    before = res.bytes_read
    opened = []
    real = fileio.RandomAccessFile.__init__

    def counting(self, *a, **k):
        opened.append(a[0] if a else k.get("path"))
        real(self, *a, **k)

    monkeypatch.setattr(fileio.RandomAccessFile, "__init__", counting)
    with res.holding_source():
        got = (res.sha256, weights_sha256(res))
    assert got == want and len(opened) == 1
    assert res.bytes_read - before == path.stat().st_size
