"""A hostile corpus written independently of the other reader tests.

Every file would run `touch MARKER` if `pickle.load`/`torch.load(weights_only=False)`
(or joblib, numpy with `allow_pickle=True`) read it the way that loader reads it;
each must be flagged by both `ckreg inspect --json` and `ckreg audit --format json`,
and no MARKER may appear. Benign files built the usual ways must not be flagged.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import pickletools
import struct
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckreg.cli import cli

BLOCKING = {"unsafe-global", "safetensors-invalid", "unreadable"}


def _su(s: str) -> bytes:  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _u4(s: str) -> bytes:  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


class _Evil:
    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _payloads(cmd: str) -> dict[str, bytes]:
    c = cmd.encode()
    inner = b"cos\nsystem\n(S'" + c + b"'\ntR."
    return {
        # module and name memoized, popped, then fetched back with BINGET for STACK_GLOBAL
        "stack_global_from_memoized_strings": b"\x80\x04" + _su("os") + b"\x94" + _su("system") + b"\x94"
        + b"00h\x00h\x01\x93" + _su(cmd) + b"\x85R.",
        # LONG_BINPUT at a memo index above 65535, re-memoized, fetched with LONG_BINGET
        "stack_global_long_binget_memo": b"\x80\x02" + _u4("os") + b"r" + struct.pack("<I", 70000)
        + _u4("system") + b"q\x07" + b"0j" + struct.pack("<I", 70000) + b"h\x07\x93" + _u4(cmd) + b"\x85R.",
        "inst_protocol0": b"(S'" + c + b"'\nios\nsystem\n.",
        "obj_protocol1": b"(cos\nsystem\nU" + bytes([len(c)]) + c + b"o.",
        "newobj_ex_subprocess_popen": b"\x80\x04" + _su("subprocess") + _su("Popen") + b"\x93("
        + _su("sh") + _su("-c") + _su(cmd) + b"l\x85}\x92.",
        "builtins_getattr_import_chain": b"\x80\x04" + _su("builtins") + _su("getattr") + b"\x93"
        + _su("builtins") + _su("__import__") + b"\x93" + _su("os") + b"\x85R" + _su("system") + b"\x86R"
        + _su(cmd) + b"\x85R.",
        "builtins_exec_inside_state_dict": b"\x80\x02}" + _su("state_dict") + b"}" + _su("a")
        + b"cbuiltins\nexec\n" + _su(f"import os;os.system({cmd!r})") + b"\x85Rss.",
        "protocol0_put_get_reduce": b"cos\nsystem\np0\n0g0\n(S'" + c + b"'\ntR.",
        "frame_nested_in_frame": b"\x80\x04\x95" + struct.pack("<Q", len(inner) + 9) + b"\x95"
        + struct.pack("<Q", len(inner)) + inner,
    }


def _zip(members: list[tuple[str, bytes]], **kw) -> bytes:
    b = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(b, "w", **kw) as z:
            for name, data in members:
                z.writestr(name, data)
    return b.getvalue()


def _zip_with_fake_eocd_in_comment(benign_pkl: bytes, payload: bytes) -> bytes:
    """A benign torch zip whose comment holds a second (payload) zip and its own EOCD, last in the file:
    readers that scan back for the end record take the payload's directory."""
    benign = _zip([("archive/data.pkl", benign_pkl), ("archive/version", b"3\n")])
    eo = benign.rfind(b"PK\x05\x06")
    body = benign[:eo]
    pz = _zip([("archive/data.pkl", payload), ("archive/version", b"3\n")])
    peo = pz.rfind(b"PK\x05\x06")
    sig, _, _, _, n, cdsize, cdoff, _ = struct.unpack("<4sHHHHIIH", pz[peo:peo + 22])
    shift = len(body) + 22
    cd = bytearray(pz[cdoff:cdoff + cdsize])
    i = 0
    while i < len(cd):
        fnl, exl, cml = struct.unpack("<HHH", cd[i + 28:i + 34])
        (off,) = struct.unpack("<I", cd[i + 42:i + 46])
        cd[i + 42:i + 46] = struct.pack("<I", off + shift)
        i += 46 + fnl + exl + cml
    comment = pz[:cdoff] + bytes(cd) + struct.pack("<4sHHHHIIH", sig, 0, 0, n, n, cdsize, cdoff + shift, 0)
    head = struct.unpack("<4sHHHHIIH", benign[eo:eo + 22])
    return body + struct.pack("<4sHHHHIIH", *head[:7], len(comment)) + comment


def build_hostile(d: Path, marker: Path) -> dict[str, str]:
    """Write the corpus into `d`; returns {file name: what it reproduces}."""
    cmd = f"touch {marker}"
    P = _payloads(cmd)
    out: dict[str, str] = {}

    def put(name: str, data: bytes, why: str) -> None:
        (d / name).write_bytes(data)
        out[name] = why

    for k, v in P.items():
        put(f"{k}.pkl", v, k)
    benign_pkl = pickle.dumps({"a": 1}, protocol=2)
    ver = ("archive/version", b"3\n")
    put("zip_member_named_dotdot.pt", _zip([("archive/data.pkl", benign_pkl), ver,
                                             ("archive/../x.pkl", P["stack_global_from_memoized_strings"])]),
        "extra member 'archive/../x.pkl'")
    put("zip_member_odd_case.pt", _zip([("archive/data.pkl", benign_pkl), ver,
                                         ("archive/Extra.PkL", P["inst_protocol0"])]), "extra member in odd case")
    put("zip_member_no_proto_as_storage_name.pt",
        _zip([("archive/data.pkl", benign_pkl), ver, ("archive/data/99", P["protocol0_put_get_reduce"])]),
        "protocol-0 pickle as an unreferenced storage member")
    put("zip_duplicate_name_payload_first.pt",
        _zip([("archive/data.pkl", P["builtins_getattr_import_chain"]), ver, ("archive/data.pkl", benign_pkl)]),
        "duplicate data.pkl, payload first")
    put("zip_duplicate_name_payload_last.pt",
        _zip([("archive/data.pkl", benign_pkl), ver, ("archive/data.pkl", P["builtins_getattr_import_chain"])]),
        "duplicate data.pkl, payload last")
    put("zip_first_entry_sets_folder.pt",
        _zip([("evil/data.pkl", P["inst_protocol0"]), ("archive/data.pkl", benign_pkl), ver]),
        "first entry's folder is the one torch reads")
    z64 = io.BytesIO()
    with zipfile.ZipFile(z64, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        for name, data in [("archive/data.pkl", P["obj_protocol1"]), ver]:
            with z.open(name, "w", force_zip64=True) as f:
                f.write(data)
    put("zip64_deflated_payload.pt", z64.getvalue(), "ZIP64 entries, deflated")
    put("zip_fake_end_record_in_comment.pt",
        _zip_with_fake_eocd_in_comment(benign_pkl, P["newobj_ex_subprocess_popen"]),
        "a second end-of-central-directory record inside the comment")
    inner = _zip([("inner/data.pkl", P["inst_protocol0"]), ("inner/version", b"3\n")])
    put("zip_nested_torch_zip_member.pt",
        _zip([("archive/data.pkl", benign_pkl), ver, ("archive/extra/model.pt", inner)]),
        "a torch zip stored inside a torch zip")
    put("pickle_prefix_then_benign_zip.pt", P["inst_protocol0"] + _zip([("archive/data.pkl", benign_pkl), ver]),
        "torch.load unpickles the prefix (not a zip by its first bytes)")
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    sysinfo = pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    put("legacy_payload_in_second_pickle.pt",
        magic + P["stack_global_from_memoized_strings"] + sysinfo + pickle.dumps({}, 2) + pickle.dumps([], 2),
        "legacy torch file, payload where the protocol version goes")
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    put("safetensors_then_pickle.safetensors",
        struct.pack("<Q", len(hdr)) + hdr + bytes(8) + P["builtins_getattr_import_chain"],
        "pickle after a valid safetensors header and data")
    put("gzip_wrapped_pickle.pt", gzip.compress(P["builtins_getattr_import_chain"]), "gzip stream named .pt")
    put("weights.bin", pickle.dumps(_Evil(cmd), protocol=0), "protocol-0 pickle named weights.bin")
    put("blob", zlib.compress(pickle.dumps(_Evil(cmd), protocol=1)), "zlib protocol-1 pickle, no extension")
    put("bz2_pickle.pkl", bz2.compress(P["obj_protocol1"]), "bz2 stream")
    put("xz_nested_frames.dat", lzma.compress(P["frame_nested_in_frame"]), "xz stream of nested frames")
    return out


@pytest.fixture
def hostile_dir(tmp_path):
    d = tmp_path / "hostile"
    d.mkdir()
    marker = tmp_path / "MARKER"
    return d, marker, build_hostile(d, marker)


def _inspect(path: Path) -> tuple[int, set[str], str]:
    r = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert r.exit_code in (0, 1, 2), r.output
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        return r.exit_code, set(), r.output
    j = j[0] if isinstance(j, list) else j
    return r.exit_code, {f["code"] for f in j.get("findings", []) if f["severity"] == "error"}, r.output


def _audit(d: Path) -> tuple[int, dict[str, set[str]], dict]:
    r = CliRunner().invoke(cli, ["audit", str(d), "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    rep = json.loads(r.stdout)
    by: dict[str, set[str]] = {}
    for f in rep["findings"]:
        if f["severity"] == "error":
            by.setdefault(Path(f["path"]).name, set()).add(f["code"])
    return r.exit_code, by, rep


def test_raw_pickles_are_valid_streams(tmp_path):
    # the fixtures are real pickles (parsed, never loaded): a malformed fixture would prove nothing
    for name, data in _payloads(f"touch {tmp_path / 'MARKER'}").items():
        if name == "frame_nested_in_frame":
            continue  # pickletools (like pickle.py) rejects nested frames; the C unpickler accepts them
        ops = [op.name for op, _, _ in pickletools.genops(data)]
        assert ops[-1] == "STOP" and ({"REDUCE", "INST", "OBJ", "NEWOBJ_EX"} & set(ops)), name


def test_every_hostile_file_is_flagged_by_inspect_and_audit_and_never_run(hostile_dir):
    d, marker, corpus = hostile_dir
    missed = []
    for name, why in corpus.items():
        rc, errors, out = _inspect(d / name)
        if rc == 0 or "unsafe-global" not in errors and "safetensors-invalid" not in errors:
            missed.append(f"inspect {name} ({why}): rc={rc} {sorted(errors)}")
    rc, by, rep = _audit(d)
    assert rc == 1
    for name, why in corpus.items():
        if not by.get(name, set()) & {"unsafe-global", "safetensors-invalid"}:
            missed.append(f"audit {name} ({why}): {sorted(by.get(name, set()))}")
    assert not missed, "\n".join(missed)
    assert rep["skipped"] == []
    assert not marker.exists()


@pytest.mark.parametrize("name", ["joblib_payload_after_arrays.joblib", "joblib_compressed_payload.pkl",
                                  "npy_object_array_named.bin", "npz_object_member_odd_case.npz"])
def test_numpy_and_joblib_containers(tmp_path, name):
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    marker = tmp_path / "MARKER"
    cmd = f"touch {marker}"
    d = tmp_path / "c"
    d.mkdir()
    p = d / name
    if name.startswith("joblib_payload_after"):
        joblib.dump({"arr": np.arange(10.0), "evil": _Evil(cmd), "arr2": np.ones((3, 3))}, p)
    elif name.startswith("joblib_compressed"):
        joblib.dump({"arr": np.arange(10.0), "evil": _Evil(cmd)}, p, compress=3)
    elif name.startswith("npy_"):
        b = io.BytesIO()
        np.save(b, np.array([{"k": _Evil(cmd)}], dtype=object), allow_pickle=True)
        p.write_bytes(b.getvalue())
    else:
        b, ok = io.BytesIO(), io.BytesIO()
        np.save(b, np.array([_Evil(cmd)], dtype=object), allow_pickle=True)
        np.save(ok, np.zeros(3))
        p.write_bytes(_zip([("Weights.NPY", b.getvalue()), ("ok.npy", ok.getvalue())]))
    rc, errors, out = _inspect(p)
    assert rc == 1 and "unsafe-global" in errors, out
    rc, by, _ = _audit(d)
    assert rc == 1 and "unsafe-global" in by.get(name, set())
    assert not marker.exists()


def test_text_ckpt_and_empty_files_are_reported_not_ignored(tmp_path):
    (tmp_path / "notes.ckpt").write_text("this is not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("notes.ckpt", "empty.pt"):
        r = CliRunner().invoke(cli, ["inspect", str(tmp_path / name)])
        assert r.exit_code == 2 and name in r.output and "Traceback" not in r.output
    rc, by, rep = _audit(tmp_path)
    named = set(by) | {Path(s["path"]).name for s in rep["skipped"]}
    assert {"notes.ckpt", "empty.pt"} <= named


def test_benign_files_are_not_flagged(tmp_path, torch_mod):
    torch = torch_mod
    from ckreg.zoo.io import write_lightning_ckpt

    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sd = m.state_dict()
    torch.save(sd, tmp_path / "sd.pt")
    torch.save(sd, tmp_path / "sd_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"epoch": 1, "state_dict": OrderedDict((f"model.{k}", v) for k, v in sd.items()),
                "hyper_parameters": {"lr": 0.1, "path": Path("/data")}}, tmp_path / "light.ckpt")
    write_lightning_ckpt(sd, {"family": "gru", "hidden": 3}, tmp_path / "zoo.ckpt")
    st = pytest.importorskip("safetensors.torch")
    st.save_file({k: v.contiguous() for k, v in sd.items() if v.dim()}, str(tmp_path / "m.safetensors"))
    for name in ("sd.pt", "sd_legacy.pt", "light.ckpt", "zoo.ckpt", "m.safetensors"):
        rc, errors, out = _inspect(tmp_path / name)
        assert rc == 0 and not errors, out
    rc, by, rep = _audit(tmp_path)
    assert rc == 0 and by == {}
    assert not [f for f in rep["findings"] if f["code"] in ("unsafe-global", "pickle-malformed", "archive-anomaly")]
