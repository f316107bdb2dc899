"""Hostile files, each named after the advisory it reproduces. Reported, never executed (issue #2)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import pytest

from ckreg.readers import read_checkpoint, read_scaler_summary
from readers_builders import (FileTouchPayload, global_op, patch_member_headers, reduce_call, rewrite_zip, short_str,
                              wrap)


def unsafe(res) -> set[str]:
    """Unsafe globals, Python-2 spellings (torch.save writes protocol 2) folded to Python 3 names."""
    return {f.actual.replace("__builtin__.", "builtins.") for f in res.findings if f.code == "unsafe-global"}


def codes(res) -> set[str]:
    return {f.code for f in res.findings}


# ---------------------------------------------------------------- the __reduce__ payload, end to end


def test_reduce_payload_is_live_but_never_executed(tmp_path, save, tiny_state_dict):
    """A checkpoint whose unpickling creates a file: reported, and the file never appears."""
    # 1. prove the payload is real: plain pickle.load in a child process creates its target
    probe = tmp_path / "probe_created"
    payload_file = tmp_path / "payload.pkl"
    payload_file.write_bytes(pickle.dumps(FileTouchPayload(str(probe)), protocol=2))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(payload_file)!r}, 'rb'))"],
                   check=True, timeout=60)
    assert probe.exists()
    # 2. the same payload inside a Lightning-style checkpoint, legacy file and plain pickle
    target = tmp_path / "PWNED"
    evil = FileTouchPayload(str(target))
    paths = [
        save({"state_dict": tiny_state_dict, "hyper_parameters": {"x": evil}}, "evil.ckpt"),
        save({"state_dict": tiny_state_dict, "extra": evil}, "evil_legacy.pt", _use_new_zipfile_serialization=False),
    ]
    plain = tmp_path / "evil_plain.pkl"
    plain.write_bytes(pickle.dumps({"w": [1.0], "x": evil}, protocol=4))
    paths.append(plain)
    for path in paths:
        res = read_checkpoint(path)
        assert "builtins.exec" in unsafe(res), path
        f = next(f for f in res.findings if f.code == "unsafe-global")
        assert str(path) in f.message and "exec" in f.message and f.severity.value == "error"
    assert not target.exists()
    # the rest of the file is still inspected
    res = read_checkpoint(paths[0])
    assert list(res.tensors) == list(tiny_state_dict)


# ---------------------------------------------------------------- unsafe globals by name


@pytest.mark.parametrize("module,name", [
    ("pip", "main"),                       # CVE-2025-1716: picklescan did not treat pip as unsafe
    ("builtins", "getattr"),
    ("os", "system"), ("posix", "system"), ("nt", "system"),
    ("__builtin__", "eval"),               # Python 2 name, mapped to builtins.eval, still unsafe
    ("subprocess", "Popen"),
    ("torch", "load"),                     # a nested, unrestricted torch.load
    ("torch.serialization", "load"),
    ("_operator", "attrgetter"),           # GHSA-m273-6v24-x4m4: operator gadgets
    ("operator", "methodcaller"),
    ("pkgutil", "resolve_name"),           # the "universal" blocklist bypass: resolves any dotted name
    ("pickle", "loads"),                   # GHSA-84r2-jw7c-4r5q: nested pickle
    ("asyncio.unix_events", "_UnixSubprocessTransport"),  # CVE-2025-10157
    ("torch.nn.modules.linear", "Linear"),
    ("collections", "OrderedDict.fromkeys"),  # dotted qualname on an allowed module
    ("torch", "_utils._rebuild_tensor_v2"),   # dotted qualname spelling of an allowed function
    ("torch", "nn.modules.linear.Linear"),
    ("numpy", "load"),
])
def test_unlisted_globals_are_unsafe(write, module, name):
    body = b"\x8c" + bytes([len(module)]) + module.encode() + short_str(name) + b"\x93" + b")R"
    path = write(f"{module}_{name}.pkl", b"\x80\x04" + body + b".")
    res = read_checkpoint(path)
    assert {f.actual for f in res.findings if f.code == "unsafe-global"} == {f"{module}.{name}"}
    assert f"{module}.{name}" in res.globals


def test_ghsa_655q_fx9r_782v_every_global_is_judged_not_just_the_first(write):
    """picklescan missed globals; here every GLOBAL/STACK_GLOBAL/INST is judged."""
    body = (global_op("collections", "OrderedDict") + b")R0" + reduce_call("os", "system", "id") + b"0"
            + b"(" + b"S'x'\n" + b"i" + b"subprocess\ncall\n" + b"0N")
    res = read_checkpoint(write("many.pkl", wrap(body)))
    assert unsafe(res) == {"os.system", "subprocess.call"}


def test_ext_opcode_is_unsafe(write):
    res = read_checkpoint(write("ext.pkl", wrap(b"\x82\x01)R")))
    assert any(f.code == "unsafe-global" and "extension code 1" in f.message for f in res.findings)


# ---------------------------------------------------------------- zip tricks


@pytest.fixture
def evil_zip(save, tiny_state_dict, tmp_path):
    return save({"state_dict": tiny_state_dict, "x": FileTouchPayload(str(tmp_path / "PWNED"))}, "evil.pt")


def test_ghsa_w8jq_xcqf_f792_zip_flag_bits(evil_zip):
    """Flag bits that make Python's zipfile refuse the member must not hide the payload."""
    patch_member_headers(evil_zip, "data.pkl", flag_bits=0x1 | 0x800)
    with pytest.raises(RuntimeError):
        zipfile.ZipFile(evil_zip).read(next(n for n in zipfile.ZipFile(evil_zip).namelist() if n.endswith(".pkl")))
    res = read_checkpoint(evil_zip)
    assert "builtins.exec" in unsafe(res)
    assert any(f.code == "archive-anomaly" and "flag" in f.message for f in res.findings)


def test_ghsa_7q5r_7gvp_wc82_bad_crc(evil_zip, save, tiny_state_dict, torch_mod):
    """A bad CRC crashes zipfile-based scanners, but torch loads the file: we read it and warn."""
    benign = save(tiny_state_dict, "benign_badcrc.pt")
    patch_member_headers(benign, "data.pkl", crc=0xDEADBEEF)
    torch_mod.load(benign, weights_only=True)            # torch tolerates it
    assert not read_checkpoint(benign).unsafe
    patch_member_headers(evil_zip, "data.pkl", crc=0xDEADBEEF)
    res = read_checkpoint(evil_zip)
    assert "builtins.exec" in unsafe(res)
    assert any(f.code == "archive-anomaly" and "CRC" in f.message for f in res.findings)


def test_ghsa_769v_p64c_89pr_non_standard_member_names(evil_zip, tmp_path, torch_mod, save, tiny_state_dict):
    """The pickle is found by content/record, not by a hard-coded 'archive/data.pkl'."""
    renamed = rewrite_zip(evil_zip, tmp_path / "renamed.pt", rename=lambda n: "x.y z/" + n.split("/", 1)[1])
    res = read_checkpoint(renamed)
    assert "builtins.exec" in unsafe(res) and list(res.tensors) == list(tiny_state_dict)
    # torch itself loads such a file (benign twin)
    benign = rewrite_zip(save(tiny_state_dict, "b.pt"), tmp_path / "benign_renamed.pt",
                         rename=lambda n: "x.y z/" + n.split("/", 1)[1])
    torch_mod.load(benign, weights_only=True)
    assert not read_checkpoint(benign).findings


def test_extra_pickle_member_with_odd_name_is_scanned(save, tiny_state_dict, tmp_path):
    """One bad member must not hide others: a second pickle under any name is sniffed by content."""
    src = save(tiny_state_dict, "b.pt")
    evil = pickle.dumps(FileTouchPayload(str(tmp_path / "PWNED")), protocol=4)
    prefix = zipfile.ZipFile(src).namelist()[0].split("/")[0]
    out = rewrite_zip(src, tmp_path / "extra.pt", extra={f"{prefix}/data/9999": evil, f"{prefix}/notes.bin": evil,
                                                         f"{prefix}/extra.pkl": evil})
    res = read_checkpoint(out)
    assert "builtins.exec" in unsafe(res)
    assert sum("builtins.exec" in f.message for f in res.findings) == 1  # judged once per global
    assert any("not referenced" in f.message for f in res.findings if f.code == "archive-anomaly")
    assert list(res.tensors) == list(tiny_state_dict)


def test_cve_2025_32434_style_payload_then_broken_structure(save, tiny_state_dict, tmp_path):
    """Payload first, then bytes that break the pickle (the trick that escaped blocklist scanners)."""
    src = save(tiny_state_dict, "b.pt")
    z = zipfile.ZipFile(src)
    pkl_name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    broken = wrap(reduce_call("os", "system", "echo pwned"))[:-1] + b"\xff\xfe garbage"
    out = rewrite_zip(src, tmp_path / "broken.pt", rename=None,
                      drop=lambda n: n == pkl_name, extra={pkl_name: broken})
    res = read_checkpoint(out)
    assert "os.system" in unsafe(res)
    assert "pickle-malformed" in codes(res)


def test_torchscript_archive_is_flagged(tmp_path, torch_mod):
    """torch < 2.6 with weights_only=True handed TorchScript archives to torch.jit.load (CVE-2025-32434 fix,
    pytorch/pytorch#143326): a TorchScript archive is not a weights file."""
    m = torch_mod.jit.script(torch_mod.nn.Linear(2, 2))
    path = tmp_path / "scripted.pt"
    torch_mod.jit.save(m, str(path))
    try:
        res = read_checkpoint(path)
    except Exception as exc:  # a ReadError is acceptable, but it must say why
        assert "TorchScript" in str(exc)
        return
    assert any("TorchScript" in f.message for f in res.findings)


def test_pickle_appended_after_stop_in_data_pkl(save, tiny_state_dict, tmp_path):
    src = save(tiny_state_dict, "b.pt")
    z = zipfile.ZipFile(src)
    pkl_name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    doubled = z.read(pkl_name) + wrap(reduce_call("os", "system", "id"))
    out = rewrite_zip(src, tmp_path / "doubled.pt", drop=lambda n: n == pkl_name, extra={pkl_name: doubled})
    res = read_checkpoint(out)
    assert "os.system" in unsafe(res)
    assert list(res.tensors) == list(tiny_state_dict)


# ---------------------------------------------------------------- legacy format: every pickle


def test_legacy_payload_in_sys_info_pickle(save, tiny_state_dict, tmp_path):
    """Legacy files are a sequence of pickles; torch.load unpickles all of them, so all are scanned."""
    src = save(tiny_state_dict, "legacy.pt", _use_new_zipfile_serialization=False)
    data = src.read_bytes()
    from ckreg.readers.pickle_vm import run_pickle

    first = run_pickle(data)
    second = run_pickle(data, first.end)
    evil = wrap(reduce_call("os", "system", "id"))
    out = tmp_path / "legacy_evil.pt"
    out.write_bytes(data[:second.end] + evil + data[run_pickle(data, second.end).end:])
    res = read_checkpoint(out)
    assert "os.system" in unsafe(res)
    assert list(res.tensors) == list(tiny_state_dict)


def test_legacy_payload_after_the_storages(save, tiny_state_dict, tmp_path):
    src = save(tiny_state_dict, "legacy.pt", _use_new_zipfile_serialization=False)
    out = tmp_path / "legacy_tail.pt"
    out.write_bytes(src.read_bytes() + wrap(reduce_call("os", "system", "id")))
    res = read_checkpoint(out)
    assert "os.system" in unsafe(res)
    assert "archive-anomaly" in codes(res)


# ---------------------------------------------------------------- scalers


def test_scaler_with_unsafe_global_is_reported_not_run(tmp_path):
    pytest.importorskip("sklearn")
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    s = StandardScaler().fit(np.arange(12.0).reshape(4, 3))
    target = tmp_path / "PWNED"
    s.extra_ = FileTouchPayload(str(target))
    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(s, protocol=4))
    summary = read_scaler_summary(path)
    assert {f.actual for f in summary.findings if f.code == "unsafe-global"} == {"builtins.exec"}
    assert summary.n_features == 3 and summary.mean == [4.5, 5.5, 6.5]
    assert not target.exists()


def test_pickle_member_without_the_data_pkl_name_is_found_by_content(save, tiny_state_dict, tmp_path):
    src = save({"state_dict": tiny_state_dict, "x": FileTouchPayload(str(tmp_path / "PWNED"))}, "b.pt")
    out = rewrite_zip(src, tmp_path / "odd_name.pt",
                      rename=lambda n: n.replace("data.pkl", "weights.bin") if n.endswith("data.pkl") else n)
    res = read_checkpoint(out)
    assert "builtins.exec" in unsafe(res)
    assert list(res.tensors) == list(tiny_state_dict)
    assert any("no */data.pkl" in f.message for f in res.findings if f.code == "archive-anomaly")
