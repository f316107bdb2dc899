"""safetensors validation: what the reference loader checks, plus duplicate keys."""

from __future__ import annotations

import json
import struct

import pytest

from ckreg.errors import ReadError
from ckreg.readers import read_checkpoint


def build(header: dict | str, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    text = raw_header if raw_header is not None else (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text)) + text + data


def st_codes(res) -> list[str]:
    return [f.message for f in res.findings if f.code == "safetensors-invalid"]


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}


def test_valid_file_and_reference_loader_agree(write):
    safetensors = pytest.importorskip("safetensors")
    path = write("ok.safetensors", build(GOOD, struct.pack("<2f", 1.0, 2.0) + struct.pack("<q", 7)))
    res = read_checkpoint(path)
    assert res.findings == [] and res.tensors["a"].shape == (2,) and res.tensors["b"].dtype == "int64"
    with safetensors.safe_open(str(path), "np") as f:  # the reference loader accepts it
        assert sorted(f.keys()) == ["a", "b"]


@pytest.mark.parametrize("header,data,needle", [
    ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "non-negative"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "overlap"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "gap"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(12), "data section holds 12"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": 1}}, bytes(8),
     "__metadata__"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}, "b": GOOD["a"]}, bytes(8), "span 80"),
])
def test_violations_are_findings(write, header, data, needle):
    """Each violation is a finding; when no tensor is usable the read fails, carrying the findings."""
    path = write("v.safetensors", build(header, data))
    try:
        findings = read_checkpoint(path).findings
    except ReadError as exc:
        findings = exc.findings
    msgs = [f.message for f in findings if f.code == "safetensors-invalid"]
    assert any(needle in m for m in msgs), msgs
    safetensors = pytest.importorskip("safetensors")
    with pytest.raises(Exception):  # the reference loader refuses every one of them
        with safetensors.safe_open(str(path), "np") as f:
            for k in f.keys():
                f.get_tensor(k)


def test_duplicate_keys_are_flagged(write):
    raw = (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
           b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')
    res = read_checkpoint(write("dup.safetensors", build({}, bytes(8), raw_header=raw)))
    assert any("duplicate key 'a'" in m for m in st_codes(res))


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "not valid JSON"),
    (b'{"a": "\xff\xfe"}', "UTF-8"),
    (b"[1, 2]", "start with"),
])
def test_unusable_headers_raise(write, raw, needle):
    path = write("bad.safetensors", build({}, b"", raw_header=raw))
    if not raw.startswith(b"{"):
        with pytest.raises(ReadError):
            read_checkpoint(path)
        return
    with pytest.raises(ReadError) as info:
        read_checkpoint(path)
    assert needle in str(info.value)
    assert info.value.findings and info.value.findings[0].code == "safetensors-invalid"


def test_metadata_and_padding(write):
    header = json.dumps({"__metadata__": {"format": "pt"}, **GOOD}).encode()
    header += b" " * (-len(header) % 8)  # writers pad the header with spaces
    res = read_checkpoint(write("pad.safetensors", build({}, bytes(16), raw_header=header)))
    assert res.findings == [] and res.metadata["__metadata__"] == {"format": "pt"}
