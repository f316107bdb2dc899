"""Scanner bypasses: each fixture is named after the trick it reproduces, and where the real loader
is at hand (CPython's unpickler, torch, joblib) the test proves the loader runs past the trick."""

from __future__ import annotations

import bz2
import gzip
import lzma
import pickle
import random
import struct
import warnings
import zipfile
import zlib

import pytest

from ckreg.readers import read_checkpoint, read_scaler_summary
from ckreg.readers.pickle_vm import numpy_dtype_info, run_pickle
from readers_builders import global_op, reduce_call, tar_legacy_torch, wrap


def unsafe(res) -> set[str]:
    return {f.actual for f in res.findings if f.code == "unsafe-global"}


def unicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def call(module: str, name: str, arg: str = "x") -> bytes:
    """module.name(arg): a REDUCE that pushes its result."""
    return global_op(module, name) + b"(" + unicode(arg) + b"tR"


# ---------------------------------------------------------------- the VM keeps CPython's semantics

def _frame(n: int) -> bytes:
    return b"\x95" + struct.pack("<Q", n)


# name -> build(call bytes) -> a stream CPython accepts whose call runs after the oddity
ODDITIES = {
    "empty_frame": lambda c: b"\x80\x04" + _frame(0) + c + b".",
    "straddled_frame": lambda c: b"\x80\x04" + _frame(3) + c + b".",
    "nested_frame": lambda c: b"\x80\x04" + _frame(9 + len(c) + 1) + _frame(2) + c + b".",
    "stop_inside_a_frame": lambda c: b"\x80\x04" + _frame(len(c) + 3) + c + b".N.",
    "text_argument_over_64k": lambda c: b"\x80\x02V" + b"a" * 70_000 + b"\n0" + c + b".",
    "hex_int_literal": lambda c: b"\x80\x02I0x10\n0" + c + b".",
    "hex_long_literal": lambda c: b"\x80\x02L0x10L\n0" + c + b".",
    "octal_int_literal": lambda c: b"I010\n0" + c + b".",
    "first_opcode_not_proto": lambda c: c + b".",
    "proto_after_first_opcode": lambda c: b"N0\x80\x02" + c + b".",
    "setitem_on_a_list": lambda c: b"\x80\x02]K\x01aK\x00" + c + b"s.",
    "append_on_a_bytearray": lambda c: b"\x80\x05\x96" + struct.pack("<Q", 1) + b"aKba0" + c + b".",
}


@pytest.mark.parametrize("name", sorted(ODDITIES))
def test_cpython_accepts_it_so_the_vm_names_the_payload(name):
    build = ODDITIES[name]
    benign = build(call("builtins", "str"))
    assert "x" in repr(pickle.loads(benign)), "CPython's unpickler runs the call after the oddity"
    run = run_pickle(benign)
    assert run.clean, run.error           # followed, not reported as corruption
    hostile = build(call("os", "system", "id"))
    assert [g.full for g in run_pickle(hostile).globals] == ["os.system"]


def test_int_and_long_lines_follow_the_c_unpickler():
    from ckreg.readers.pickle_vm import c_int_line, c_long_line

    for line in (b"0x10\n", b"010\n", b" 12\n", b"+12\n", b"12 \n", b"1_000\n", b"00\n", b"01\n", b"001\n",
                 b"0x1950a86a20f9469cfc6c\n", b"-0\n", b"99999999999999999999999\n"):
        assert c_int_line(line) == pickle.loads(b"I" + line + b"."), line
        assert type(c_int_line(line)) is type(pickle.loads(b"I" + line + b"."))
    for line in (b"0x10L\n", b"10\n", b"1_0L\n", b" 5L\n"):
        assert c_long_line(line) == pickle.loads(b"L" + line + b"."), line
    for bad in (b"0x\n", b"12x\n"):
        assert c_int_line(bad) is None
        with pytest.raises(ValueError):
            pickle.loads(b"I" + bad + b".")


def test_payload_after_an_oddity_cpython_rejects_is_still_reported(write):
    """SETITEM on a tuple stops the real unpickler; globals after it are recorded anyway (fail closed)."""
    data = b"\x80\x02)K\x00K\x01s0" + call("os", "system", "id") + b"."
    with pytest.raises(TypeError):
        pickle.loads(data)
    res_path = write("oddity.pkl", data)
    res = read_checkpoint(res_path)
    assert "os.system" in unsafe(res)
    assert any(f.code == "pickle-malformed" for f in res.findings)


def test_payload_past_two_million_objects_is_named():
    data = b"\x80\x04(" + b"}" * 3000 + b"1" + call("os", "system", "id") + b"."
    run = run_pickle(data, max_objects=2000)
    assert not run.clean and "objects" in run.error
    assert "os.system" in [g.full for g in run.globals]


def test_stack_global_past_the_budget_is_resolved_or_fail_closed():
    sg = b"\x8c\x02os\x94\x8c\x06system\x94\x93(" + unicode("id") + b"tR"
    data = b"\x80\x04(" + b"}" * 3000 + b"1" + sg + b"h\x00h\x01\x93."
    run = run_pickle(data, max_objects=2000)
    names = [g.full for g in run.globals]
    assert names[0] == "os.system" and len(names) == 2


# ---------------------------------------------------------------- torch zip member selection


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def test_member_selection_is_torch_s_own(tmp_path, torch_mod):
    """Random layouts of case-variant data.pkl members: ckreg picks the member torch.load reads."""
    from ckreg.readers import zipread
    from ckreg.readers.fileio import RandomAccessFile

    variants = ["data.pkl", "DATA.PKL", "Data.pkl", "data.PKL", "dAta.pkl"]
    side = {"version": b"3\n", "byteorder": b"little", ".format_version": b"1", ".data/version": b"3\n"}
    rng = random.Random(7)
    for trial in range(20):
        names = rng.sample(variants, rng.randint(2, 4)) + rng.sample(sorted(side), rng.randint(1, 4))
        rng.shuffle(names)
        if "version" not in names:
            names.append("version")
        path = _zip(tmp_path / f"t{trial}.pt", [
            ("archive/" + n, pickle.dumps(variants.index(n), protocol=2) if n in variants else side[n])
            for n in names])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = torch_mod.load(path, weights_only=True)
        with RandomAccessFile(str(path)) as f:
            idx = zipread.read_index(f)
        m = idx.locate(idx.torch_prefix + b"/data.pkl")
        assert variants.index(m.name.split("/", 1)[1]) == got, names


def test_uppercase_data_pkl_payload_listed_before_benign_data_pkl(tmp_path, save, tiny_state_dict):
    """archive/DATA.PKL (payload) before archive/data.pkl: reported whichever member a loader takes."""
    src = save(tiny_state_dict, "good.pt")
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    payload = wrap(reduce_call("os", "system", "echo pwned"))
    path = _zip(tmp_path / "evil.pt", [("archive/DATA.PKL", payload)] + members)
    res = read_checkpoint(path)
    assert "os.system" in {a.replace("posix.", "os.") for a in unsafe(res)}
    # and the same payload under any other name or case is found by its bytes
    for name in ("archive/notes.txt", "archive/Data.Pkl", "archive/extra"):
        path = _zip(tmp_path / "evil2.pt", members + [(name, payload)])
        assert "os.system" in unsafe(read_checkpoint(path)), name


def test_protocol0_payload_member_without_proto_is_found(tmp_path, save, tiny_state_dict):
    src = save(tiny_state_dict, "good.pt")
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    payload = b"cos\nsystem\n(S'id'\ntR."
    path = _zip(tmp_path / "evil.pt", members + [("archive/readme", payload)])
    assert "os.system" in unsafe(read_checkpoint(path))
    assert not unsafe(read_checkpoint(src))


def test_negative_storage_element_count_is_a_finding(write):
    body = (b"\x80\x02}X\x01\x00\x00\x00w" + global_op("torch._utils", "_rebuild_tensor_v2") +
            b"((X\x07\x00\x00\x00storage" + global_op("torch", "FloatStorage") +
            b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\xfb\xff\xff\xfftQK\x00K\x01\x85K\x01\x85\x89"
            b"ccollections\nOrderedDict\n)RtRs.")
    path = write("neg.pt", b"")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/data/0", b"\0" * 4)
        z.writestr("archive/version", b"3\n")
    res = read_checkpoint(path)
    assert any(f.code == "tensor-implausible" and "negative" in f.message for f in res.findings)


# ---------------------------------------------------------------- joblib arrays sized as joblib sizes them


def _np_dtype(spec: str) -> bytes:
    return (global_op("numpy", "dtype") + b"(" + unicode(spec) + b"\x89\x88tR"
            + b"(K\x03" + unicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")


def _joblib_scaler(dtype_spec: str, hidden: bytes) -> bytes:
    """A joblib StandardScaler whose mean_ array (2 x float64) is followed by `hidden` opcodes."""
    wrapper = (global_op("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81}("
               + unicode("subclass") + global_op("numpy", "ndarray") + unicode("shape") + b"K\x02\x85"
               + unicode("order") + unicode("C") + unicode("dtype") + _np_dtype(dtype_spec)
               + unicode("allow_mmap") + b"\x88ub" + struct.pack("<2d", 1.5, -2.0))
    return (b"\x80\x02" + global_op("sklearn.preprocessing._data", "StandardScaler") + b")\x81}("
            + unicode("with_mean") + b"\x88" + unicode("n_features_in_") + b"K\x02"
            + unicode("mean_") + wrapper + hidden + unicode("scale_") + b"]" + b"(G?\xf0\x00\x00\x00\x00\x00\x00"
            + b"G?\xf0\x00\x00\x00\x00\x00\x00e" + b"ub.")


def test_joblib_scaler_with_float64_dtype_hiding_opcodes(write):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    benign = write("scaler_probe.pkl", _joblib_scaler("float64", unicode("probe") + call("builtins", "str", "ran")))
    loaded = joblib.load(benign)
    assert loaded.probe == "ran" and list(loaded.mean_) == [1.5, -2.0]   # joblib runs what follows 16 bytes
    evil = write("scaler.pkl", _joblib_scaler("float64", unicode("probe") + call("os", "system", "id")))
    s = read_scaler_summary(evil)
    assert "os.system" in {f.actual for f in s.findings if f.code == "unsafe-global"}
    assert s.mean == [1.5, -2.0]
    assert "os.system" in unsafe(read_checkpoint(evil))


@pytest.mark.parametrize("spec", ["float64", "<f8", "f8", "d", "double", "float", "int32", "i4", "<i4", ">i2",
                                  "uint8", "U10", "<U3", "S5", "|b1", "bool", "?", "complex128", "c16",
                                  "M8[ns]", "datetime64[ns]", "O", "object", "e", "float16"])
def test_dtype_sizes_are_numpy_s(spec):
    np = pytest.importorskip("numpy")
    d = np.dtype(spec)
    assert numpy_dtype_info(spec) == (d.kind, d.itemsize)


@pytest.mark.parametrize("spec", ["l", "g", "p", "longdouble", "f8,i4", "(2,)f8", "8f", "f 8", "f08", "i3", "x8",
                                  "<float64", ""])
def test_dtype_spellings_not_understood_fail_closed(spec, write):
    from ckreg.errors import ScalerError

    assert numpy_dtype_info(spec) is None
    try:
        found = read_scaler_summary(write("odd.pkl", _joblib_scaler(spec, b""))).findings
    except ScalerError as exc:
        found = exc.findings
    assert any(f.code == "pickle-malformed" and "not understood" in f.message for f in found)


# ---------------------------------------------------------------- formats and containers


def test_safetensors_header_length_with_low_byte_0x80_is_not_a_pickle(tmp_path):
    import json

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    n = 0x180
    header = header + b" " * (n - len(header))
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", n) + header + b"\0" * 8)
    assert path.read_bytes()[:2] == b"\x80\x01"
    res = read_checkpoint(path)
    assert res.format == "safetensors" and list(res.tensors) == ["w"] and not res.findings


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "zlib"])
def test_compressed_joblib_payload_is_inflated_and_scanned(write, kind):
    data = wrap(reduce_call("os", "system", "id"))
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zlib": zlib.compress}[kind](data)
    res = read_checkpoint(write(f"model.{kind}", packed))
    assert "os.system" in unsafe(res) and res.format.endswith(kind)


def test_decompression_bomb_is_refused(write, monkeypatch):
    from ckreg.readers import core

    monkeypatch.setattr(core, "PLAIN_PICKLE_CAP", 1 << 16)
    path = write("bomb.gz", gzip.compress(b"N" * (1 << 20)))
    with pytest.raises(Exception) as err:
        read_checkpoint(path)
    assert "cap" in str(err.value)


def test_npy_object_array_payload(write):
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (118 - len(header)) + b"\n"
    path = write("feats.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                 + wrap(reduce_call("os", "system", "id")))
    res = read_checkpoint(path)
    assert "os.system" in unsafe(res)
    assert any(f.code == "npy-object-array" for f in res.findings)


def test_npz_with_an_object_array_member(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.npz"
    np.savez(path, a=np.arange(3), b=np.array([print], dtype=object))
    res = read_checkpoint(path)
    assert "builtins.print" in unsafe(res)


def test_numeric_npy_is_not_a_checkpoint(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "x.npy"
    np.save(path, np.arange(4.0))
    from ckreg.errors import ReadError

    with pytest.raises(ReadError, match="no pickle"):
        read_checkpoint(path)


def test_tar_format_legacy_torch_file(tmp_path):
    path = tmp_path / "old.tar"
    tar_legacy_torch(path)
    res = read_checkpoint(path)
    assert "os.system" in unsafe(res)
    assert any(f.code == "format-unsupported" for f in res.findings)


def test_hex_magic_legacy_file_is_read_as_legacy(write):
    magic = b"L0x1950a86a20f9469cfc6cL\n."
    data = magic + pickle.dumps(1001, protocol=0) + pickle.dumps({}, protocol=0) \
        + wrap(reduce_call("os", "system", "id")) + pickle.dumps([], protocol=0)
    res = read_checkpoint(write("old.bin", data))
    assert res.format == "torch-legacy" and "os.system" in unsafe(res)


# ---------------------------------------------------------------- zips stored inside a torch zip


def _zip_bytes(members, *, date_time=(2024, 1, 1, 0, 0, 0), method=zipfile.ZIP_STORED) -> bytes:
    import io

    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=date_time), data, compress_type=method)
    return b.getvalue()


BENIGN = pickle.dumps({"w": 1}, protocol=2)
PROTO0_PAYLOAD = b"(S'echo x'\nios\nsystem\n."   # INST os.system, protocol 0


def _torch_zip_around(inner: bytes, **kw) -> bytes:
    return _zip_bytes([("archive/data.pkl", BENIGN), ("archive/version", b"3\n"), ("archive/extra/model.pt", inner)],
                      **kw)


@pytest.mark.parametrize("second", range(0, 60, 2))
def test_torch_zip_inside_torch_zip_whatever_its_timestamp(tmp_path, second):
    """The inner zip's local header (PK..., then its DOS time and date) was once scanned as a
    pickle stream, so whether its payload was found hung on the second the file was written."""
    inner = _zip_bytes([("inner/data.pkl", PROTO0_PAYLOAD), ("inner/version", b"3\n")],
                       date_time=(2026, 12, 3, 6, 26, second))
    p = tmp_path / "zip_nested_torch_zip_member.pt"
    p.write_bytes(_torch_zip_around(inner, date_time=(2026, 12, 3, 6, 26, second)))
    res = read_checkpoint(p)
    assert unsafe(res) == {"os.system"}
    assert any("archive/extra/model.pt!inner/data.pkl" in f.message for f in res.findings if f.code == "unsafe-global")


def test_deflated_zip_two_levels_down(tmp_path):
    innermost = _zip_bytes([("x/data.pkl", call_pickle("subprocess", "Popen"))], method=zipfile.ZIP_DEFLATED)
    middle = _zip_bytes([("m/README.txt", b"hello"), ("m/model.bin", innermost)], method=zipfile.ZIP_DEFLATED)
    p = tmp_path / "zip_in_zip_in_zip_deflated.pt"
    p.write_bytes(_torch_zip_around(middle, method=zipfile.ZIP_DEFLATED))
    res = read_checkpoint(p)
    assert unsafe(res) == {"subprocess.Popen"}
    assert any("extra/model.pt!m/model.bin!x/data.pkl" in f.message for f in res.findings)


def test_zips_nested_past_the_depth_limit_are_reported_not_passed(tmp_path):
    from ckreg.readers.core import NESTED_ZIP_DEPTH

    blob = _zip_bytes([("z/data.pkl", BENIGN)])
    for level in range(NESTED_ZIP_DEPTH + 1):
        blob = _zip_bytes([(f"l{level}/inner.zip", blob)])
    p = tmp_path / "zip_nested_past_the_limit.pt"
    p.write_bytes(_torch_zip_around(blob))
    res = read_checkpoint(p)
    assert any(f.code == "format-unsupported" and "nested more than" in f.message for f in res.findings)


def test_a_member_that_starts_like_a_zip_but_is_not_one_is_reported(tmp_path):
    p = tmp_path / "zip_member_with_a_zip_signature_only.pt"
    p.write_bytes(_torch_zip_around(b"PK\x03\x04" + b"\0" * 40 + PROTO0_PAYLOAD))
    res = read_checkpoint(p)
    assert any(f.code == "format-unsupported" and "cannot be opened" in f.message for f in res.findings)


def call_pickle(module: str, name: str) -> bytes:
    """A protocol-2 pickle calling module.name('x')."""
    return b"\x80\x02" + call(module, name) + b"."
