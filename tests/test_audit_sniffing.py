"""The audit sniffs every regular file by content: a hostile file is flagged whatever its name, protocol or
container, and every file it does not check is listed in `skipped` with the reason."""

from __future__ import annotations

import gzip
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "readers"))

from ckreg.audit import audit  # noqa: E402
from ckreg.inspect import exit_code, inspect_path  # noqa: E402
from readers_builders import global_op, reduce_call, wrap  # noqa: E402

PAYLOAD0 = b"cos\nsystem\n(S'echo pwned'\ntR."            # protocol 0, no PROTO


def _npy_object(body: bytes) -> bytes:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (118 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def hostile_corpus(root: Path) -> dict[str, bytes]:
    files = {
        "p0/model.pkl": PAYLOAD0,
        "p1/model.pkl": pickle.dumps(0, protocol=1)[:0] + b"cos\nsystem\nq\x00(X\x02\x00\x00\x00idtR.",
        "noproto/weights.dat": global_op("os", "system") + b"(X\x02\x00\x00\x00idtR.",
        "named/notes.txt": PAYLOAD0,
        "named/features.npy": wrap(reduce_call("os", "system", "id")),
        "named/backup.bak": wrap(reduce_call("os", "system", "id"), proto=4),
        "named/NOEXT": wrap(reduce_call("subprocess", "Popen", "id")),
        "jl/model.joblib": gzip.compress(wrap(reduce_call("os", "system", "id"), proto=4)),
        "jl/stuff.pkl.z": wrap(reduce_call("builtins", "exec", "1")),
        "npy/obj.npy": _npy_object(wrap(reduce_call("os", "system", "id"))),
        "legacy0/model.bin": b"L0x1950a86a20f9469cfc6cL\n.I1001\n.(dp0\n." + PAYLOAD0 + b"(l.",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    npz = root / "npz/arrays.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("obj.npy", _npy_object(wrap(reduce_call("os", "system", "id"))))
    hf = root / "hf/pytorch_model.bin"
    hf.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(hf, "w") as z:
        z.writestr("archive/.format_version", b"1")
        z.writestr("archive/data.pkl", wrap(reduce_call("os", "system", "id")))
        z.writestr("archive/version", b"3\n")
    return {**{k: b"" for k in files}, "npz/arrays.npz": b"", "hf/pytorch_model.bin": b""}


def test_every_hostile_file_is_flagged_by_audit_and_inspect(tmp_path):
    names = hostile_corpus(tmp_path)
    (tmp_path / "README.md").write_text("# models\n\nGRU checkpoints, see below.\n")
    (tmp_path / "named/readme").write_text("config notes\nlearning rate 0.01\n")
    report = audit(tmp_path)
    flagged = {f.path for f in report.findings if f.code == "unsafe-global"}
    assert set(names) <= flagged, sorted(set(names) - flagged)
    for rel in names:
        insp = inspect_path(tmp_path / rel)
        assert any(f.code == "unsafe-global" for f in insp.findings), rel
        assert exit_code([insp]) >= 1
    # the benign text files are not flagged, and each is named in skipped with why
    skipped = {s.path: s.reason for s in report.skipped}
    assert "README.md" in skipped and "text" in skipped["README.md"]
    assert "named/readme" in skipped and not any(f.path == "named/readme" for f in report.findings)
    # nothing is ignored without a word
    every = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert every == set(report.checked) | set(skipped)


def test_numeric_arrays_and_plain_zips_are_skipped_with_a_reason(tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "x.npy", np.arange(3.0))
    np.savez(tmp_path / "y.npz", a=np.arange(3))
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:
        z.writestr("a.csv", "1,2\n")
    report = audit(tmp_path)
    reasons = {s.path: s.reason for s in report.skipped}
    assert "numpy" in reasons["x.npy"] and "pickle" in reasons["data.zip"] and "y.npz" in reasons
    assert not report.findings


def test_inspect_recognises_a_scaler_as_audit_does(tmp_path):
    pytest.importorskip("sklearn")
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(StandardScaler().fit(np.arange(12.0).reshape(6, 2)), protocol=4))
    insp = inspect_path(path)
    assert insp.family == "scaler" and exit_code([insp]) == 0
    assert not [f for f in insp.findings if f.severity.value == "error"]
    assert insp.metadata["scaler"]["n_features"] == 2
    report = audit(tmp_path)
    assert "scaler.pkl" in report.extra["scalers"] and not report.findings


def test_real_archive_scalers_inspect_clean(archive_dir):
    for p in sorted(Path(archive_dir).rglob("scaler.pkl")):
        insp = inspect_path(p)
        assert insp.family == "scaler" and exit_code([insp]) == 0, p
