"""Scalers (pickle, joblib, JSON) and the real archive; reading works where `import torch` fails."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ckreg.errors import ScalerError
from ckreg.readers import read_checkpoint, read_scaler_summary

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def fitted_scaler():
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.preprocessing import StandardScaler

    X = np.random.RandomState(0).randn(50, 8) * 3 + 1
    return StandardScaler().fit(X)


@pytest.mark.parametrize("how", ["pickle2", "pickle4", "pickle5", "joblib", "joblib-zlib", "joblib-gzip"])
def test_scaler_formats(tmp_path, fitted_scaler, how):
    import numpy as np

    path = tmp_path / f"scaler_{how}"
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(fitted_scaler, protocol=int(how[-1])))
    else:
        import joblib

        compress = {"joblib": 0, "joblib-zlib": ("zlib", 3), "joblib-gzip": ("gzip", 3)}[how]
        joblib.dump(fitted_scaler, path, compress=compress)
    s = read_scaler_summary(path)
    assert s.findings == [], s.findings
    assert s.format == ("joblib" if how.startswith("joblib") else "pickle")
    assert s.class_name == "sklearn.preprocessing._data.StandardScaler"
    assert s.n_features == 8 and s.n_samples_seen == 50
    assert np.allclose(s.mean, fitted_scaler.mean_) and np.allclose(s.scale, fitted_scaler.scale_)
    assert np.allclose(s.var, fitted_scaler.var_)
    assert s.sklearn_version


def test_scaler_feature_names(tmp_path, fitted_scaler):
    import joblib
    import numpy as np

    fitted_scaler.feature_names_in_ = np.array([f"flex{i}" for i in range(1, 6)] + ["pitch", "roll", "yaw"],
                                               dtype=object)
    for name, dump in (("s.pkl", lambda p: p.write_bytes(pickle.dumps(fitted_scaler))),
                       ("s.joblib", lambda p: joblib.dump(fitted_scaler, p))):
        path = tmp_path / name
        dump(path)
        s = read_scaler_summary(path)
        assert s.feature_names[:2] == ["flex1", "flex2"] and s.feature_names[-1] == "yaw"
        assert not s.findings


def test_scaler_json(tmp_path):
    doc = {"mean": [1.0, 2.0], "scale": [0.5, 0.25], "var": [0.25, 0.0625], "n_features": 2,
           "n_samples_seen": 10, "channel_names": ["a", "b"], "recipe": "train-split", "data_hash": "abc"}
    path = tmp_path / "scaler.json"
    path.write_text(json.dumps(doc))
    s = read_scaler_summary(path)
    assert (s.format, s.n_features, s.mean, s.feature_names, s.recipe, s.data_hash) == (
        "json", 2, [1.0, 2.0], ["a", "b"], "train-split", "abc")


def test_scaler_errors(tmp_path, save, tiny_state_dict):
    with pytest.raises(ScalerError):
        read_scaler_summary(tmp_path / "absent.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ScalerError, match="empty"):
        read_scaler_summary(tmp_path / "empty.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ScalerError, match="scaler"):
        read_scaler_summary(tmp_path / "list.pkl")


# ---------------------------------------------------------------- the real archive


def _archive_files(archive_dir: Path) -> list[Path]:
    return sorted(p for p in archive_dir.rglob("*") if p.is_file())


@pytest.mark.realdata
def test_real_archive_checkpoints_are_benign_and_described(archive_dir):
    ckpts = [p for p in _archive_files(archive_dir) if p.suffix == ".ckpt"]
    assert len(ckpts) == 4
    for path in ckpts:
        res = read_checkpoint(path)
        assert res.format == "torch-zip"
        assert res.findings == [], res.findings     # zero unsafe (or other) findings on benign files
        assert res.unwrap == ["state_dict found under key 'state_dict'"]
        m = res.metadata
        assert m["pytorch-lightning_version"] == "2.2.2" and m["has_optimizer_state"] is True
        assert m["monitor"] == "val/loss" and isinstance(m["best_model_score"], float)
        assert res.bytes_read < 64 * 1024 < res.size
        assert all(t.storage and t.storage.device == "cuda:0" for t in res.tensors.values())
    ms3d = read_checkpoint(archive_dir / "best_model" / "ms3dgru_best.ckpt")
    assert ms3d.tensors["tower1.0.weight"].shape == (32, 1, 3, 3, 3)
    assert ms3d.tensors["cnn_post.0.num_batches_tracked"].shape == ()
    assert ms3d.tensors["cnn_post.0.num_batches_tracked"].dtype == "int64"


@pytest.mark.realdata
def test_real_archive_scaler(archive_dir):
    s = read_scaler_summary(archive_dir / "best_model" / "scaler.pkl")
    assert s.findings == []
    assert s.n_features == 8 and len(s.mean) == 8 and len(s.scale) == 8
    assert s.class_name.endswith("StandardScaler") and s.sklearn_version == "1.4.2"
    assert s.n_samples_seen == 250908
    assert s.mean[0] == pytest.approx(759.3289, rel=1e-6)
    # read as a *checkpoint*, the same file is flagged: it needs sklearn to load
    assert read_checkpoint(archive_dir / "best_model" / "scaler.pkl").unsafe


@pytest.mark.realdata
def test_real_scaler_matches_sklearn(archive_dir):
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    import joblib

    ref = joblib.load(archive_dir / "best_model" / "scaler.pkl")   # trusted, shared test material
    s = read_scaler_summary(archive_dir / "best_model" / "scaler.pkl")
    assert np.array_equal(np.array(s.mean), ref.mean_) and np.array_equal(np.array(s.var), ref.var_)


# ---------------------------------------------------------------- no torch on this path


def test_reading_works_where_import_torch_fails(tmp_path, save, tiny_state_dict, lightning_ckpt):
    """Readers use the standard library only: a subprocess with a torch that raises on import."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked for this test')\n")
    zip_path = save(tiny_state_dict, "z.pt")
    legacy = save(tiny_state_dict, "l.pt", _use_new_zipfile_serialization=False)
    code = f"""
import sys
try:
    import torch
    raise SystemExit('torch import was not blocked')
except ImportError:
    pass
from ckreg.readers import read_checkpoint, read_scaler_summary
for p in {[str(zip_path), str(legacy), str(lightning_ckpt)]!r}:
    r = read_checkpoint(p)
    assert len(r.tensors) == 8 and not r.unsafe, (p, r.findings)
    b''.join(r.iter_tensor_bytes(next(iter(r.tensors.values()))))
heavy = [m for m in ('torch', 'numpy', 'safetensors', 'sklearn', 'joblib') if m in sys.modules]
assert not heavy, heavy
print('ok')
"""
    env = {"PYTHONPATH": f"{block.parent}{os.pathsep}{SRC}", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
