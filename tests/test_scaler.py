"""Scalers: recipes, safe formats, the restricted unpickler, the CLI (issue #3, "Scalers")."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest

from ckreg.data import Dataset, split
from ckreg.errors import ScalerError, UnsafeFileError
from ckreg.scaler import (Scaler, ScalerRefusedError, ScalerVersionWarning, fit_scaler, load_scaler, save_json,
                          save_pickle)

pytest.importorskip("sklearn")


def _dataset(n=40, T=10, C=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, T, C)) * [1.0, 10.0, 100.0] + [5.0, -3.0, 50.0]).astype(np.float32)
    mask = np.zeros((n, T), np.uint8)
    lengths = rng.integers(3, T + 1, size=n)
    for i, L in enumerate(lengths):
        mask[i, L:] = 1
        X[i, L:] = 1.0                         # upstream padding rows: raw 1.0
    y = np.arange(n) % 4
    return Dataset(X=X, y=y, mask=mask, ids=[f"c{y[i]}/s/episode_{i:03d}.csv" for i in range(n)],
                   class_names=list("abcd"), channel_names=["u", "v", "w"])


def test_train_split_recipe_fits_training_episodes_unpadded_rows_only():
    ds = _dataset()
    sp = split(ds, seed=5)
    sc = fit_scaler(ds, "train-split", split=sp)
    rows = ds.X[sp.train][ds.mask[sp.train] == 0].astype(np.float64)
    np.testing.assert_allclose(sc.mean, rows.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(sc.scale, rows.std(axis=0), rtol=1e-10)
    assert sc.n_samples_seen == rows.shape[0] and sc.recipe == "train-split"
    assert sc.data_hash == ds.data_hash and sc.split["seed"] == 5
    assert sc.channel_names == ["u", "v", "w"] and sc.n_features == 3
    # without a split: the default seeded split
    assert fit_scaler(ds, "train-split", seed=5).mean == sc.mean


def test_upstream_recipe_fits_every_row_padding_included():
    ds = _dataset()
    sc = fit_scaler(ds, "upstream")
    rows = ds.X.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(sc.mean, rows.mean(axis=0), rtol=1e-10)
    assert sc.n_samples_seen == ds.X.shape[0] * ds.X.shape[1]
    assert sc.mean != fit_scaler(ds, "train-split").mean


def test_unknown_recipe_and_foreign_split():
    ds = _dataset()
    with pytest.raises(ScalerError, match="recipe"):
        fit_scaler(ds, "everything")
    other = _dataset(seed=1)
    with pytest.raises(ScalerError, match="another dataset"):
        fit_scaler(ds, "train-split", split=split(other))


def test_transform_matches_sklearn_and_checks_features():
    ds = _dataset()
    sc = fit_scaler(ds, "upstream")
    sk = sc.to_sklearn()
    np.testing.assert_allclose(sc.transform(ds.X).reshape(-1, 3), sk.transform(ds.X.reshape(-1, 3)), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ScalerError, match="3 features"):
        sc.transform(np.zeros((2, 5, 8)))
    with pytest.raises(ScalerError, match="8 input channels"):
        sc.check_input_size(8)
    sc.check_input_size(3)


def test_json_round_trip_and_no_clobber(tmp_path):
    sc = fit_scaler(_dataset(), "train-split")
    path = save_json(sc, tmp_path / "scaler.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "ckreg-scaler" and doc["recipe"] == "train-split" and "warnings" not in doc
    back = load_scaler(path)
    assert back.model_dump(exclude={"source", "source_format"}) == sc.model_dump(exclude={"source", "source_format"})
    assert back.source_format == "json"
    with pytest.raises(ScalerError, match="overwrite"):
        save_json(sc, path)
    save_json(sc, path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files left


def test_pickle_round_trip_is_a_real_sklearn_scaler(tmp_path):
    ds = _dataset()
    sc = fit_scaler(ds, "upstream")
    path = save_pickle(sc, tmp_path / "scaler.pkl")
    with open(path, "rb") as fh:
        sk = pickle.load(fh)                    # our own file: inference code can unpickle it
    np.testing.assert_allclose(sk.transform(ds.X.reshape(-1, 3)).reshape(ds.X.shape), sc.transform(ds.X),
                               rtol=1e-5, atol=1e-5)
    back = load_scaler(path)
    assert back.mean == sc.mean and back.scale == sc.scale and back.source_format == "pickle"
    assert back.recipe == "unknown" and back.n_samples_seen == sc.n_samples_seen


def test_joblib_plain_and_compressed(tmp_path):
    joblib = pytest.importorskip("joblib")
    sc = fit_scaler(_dataset(), "upstream")
    for name, kw in (("j.joblib", {}), ("z.joblib", {"compress": 3})):
        joblib.dump(sc.to_sklearn(), tmp_path / name, **kw)
        back = load_scaler(tmp_path / name)
        assert back.mean == sc.mean and back.source_format == "joblib"


# -- hostile pickles (CWE-502: deserialization of untrusted data) ---------------------

class _SystemCall:
    """The classic `__reduce__` payload: unpickling calls os.system(cmd)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.fixture
def cwe502_reduce_os_system_pkl(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "scaler.pkl"
    sk = fit_scaler(_dataset(), "upstream").to_sklearn()
    sk.mean_ = [_SystemCall(f"touch {marker}")]        # hidden inside a legitimate-looking scaler
    path.write_bytes(pickle.dumps(sk, protocol=4))
    return path, marker


def test_refuses_reduce_to_os_system(cwe502_reduce_os_system_pkl):
    path, marker = cwe502_reduce_os_system_pkl
    with pytest.raises(ScalerRefusedError) as info:
        load_scaler(path)
    err = info.value
    assert isinstance(err, ScalerError) and isinstance(err, UnsafeFileError)
    assert "system" in str(err) and err.path == str(path)
    assert str(path) in err.render()
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"),
                                         ("sklearn.pipeline", "Pipeline"), ("numpy", "load")])
def test_refuses_any_other_global(tmp_path, module, name):
    # PROTO 4, GLOBAL module name, EMPTY_TUPLE, REDUCE, STOP
    payload = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")R."
    path = tmp_path / "x.pkl"
    path.write_bytes(payload)
    with pytest.raises(ScalerRefusedError, match=f"{module}.{name}"):
        load_scaler(path)


def test_cve_2024_34997_joblib_object_array_payload_refused(tmp_path):
    """joblib reads object-dtype arrays with a nested pickle stream: it must go through the same allowlist."""
    joblib = pytest.importorskip("joblib")
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _SystemCall(f"touch {marker}")
    sk = fit_scaler(_dataset(), "upstream").to_sklearn()
    sk.feature_names_in_ = arr
    joblib.dump(sk, tmp_path / "s.joblib")
    with pytest.raises(ScalerRefusedError, match="system"):
        load_scaler(tmp_path / "s.joblib")
    assert not marker.exists()


def test_not_a_scaler_and_broken_files(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1.0, 2.0]))
    with pytest.raises(ScalerError, match="not a StandardScaler"):
        load_scaler(tmp_path / "list.pkl")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps(fit_scaler(_dataset(), "upstream").to_sklearn())[:50])
    with pytest.raises(ScalerError):
        load_scaler(tmp_path / "trunc.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ScalerError, match="empty"):
        load_scaler(tmp_path / "empty.pkl")
    (tmp_path / "other.json").write_text('{"mean": [1]}')
    with pytest.raises(ScalerError, match="not a ckreg scaler"):
        load_scaler(tmp_path / "other.json")
    with pytest.raises(ScalerError, match="no such file"):
        load_scaler(tmp_path / "missing.pkl")


def test_version_skew_warns_instead_of_failing(tmp_path):
    import io

    from sklearn.preprocessing import StandardScaler

    sk = fit_scaler(_dataset(), "upstream").to_sklearn()
    state = {**sk.__dict__, "_sklearn_version": "0.0.1"}     # as an old scikit-learn would have written it

    class OldPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, StandardScaler):
                return (StandardScaler, (), state)
            return NotImplemented

    buf = io.BytesIO()
    OldPickler(buf, protocol=4).dump(sk)
    path = tmp_path / "old.pkl"
    path.write_bytes(buf.getvalue())
    with pytest.warns(ScalerVersionWarning, match="0.0.1"):
        sc = load_scaler(path)
    assert sc.sklearn_version == "0.0.1" and "0.0.1" in sc.warnings[0]
    assert sc.mean == [float(v) for v in sk.mean_]


@pytest.mark.realdata
def test_real_scaler_pkl(archive_dir):
    path = archive_dir / "best_model" / "scaler.pkl"
    with pytest.warns(ScalerVersionWarning, match="1.4.2"):
        sc = load_scaler(path)
    assert sc.n_features == 8 and len(sc.mean) == len(sc.scale) == len(sc.var) == 8
    assert sc.sklearn_version == "1.4.2" and all(s > 0 for s in sc.scale)
    twin = archive_dir / "archive" / "checkpoints_backup" / "checkpoints_backup" / "scaler.pkl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalerVersionWarning)
        assert load_scaler(twin).mean == sc.mean


# -- CLI ------------------------------------------------------------------------

def _tree(root):
    for c, cls in enumerate(("ㄱ", "ㅏ")):
        for e in range(6):
            p = root / cls / "1" / f"episode_{c}_{e}.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            rows = ["flex1,flex2,flex3,flex4,flex5,pitch,roll,yaw"]
            rows += [",".join(str(100 * c + e + r + k) for k in range(8)) for r in range(5 + e)]
            p.write_text("\n".join(rows) + "\n")
    return root


def test_cli_fit_and_inspect(tmp_path):
    from click.testing import CliRunner

    from ckreg.cli import cli

    data = _tree(tmp_path / "glove")
    out = tmp_path / "out" / "scaler.json"
    runner = CliRunner()
    res = runner.invoke(cli, ["scaler", "fit", "--data", str(data), "--recipe", "upstream", "--out", str(out),
                              "--pkl"])
    assert res.exit_code == 0, res.output
    assert out.exists() and out.with_suffix(".pkl").exists()
    sc = load_scaler(out)
    assert sc.recipe == "upstream" and sc.n_features == 8 and sc.n_samples_seen == 12 * 87
    assert load_scaler(out.with_suffix(".pkl")).mean == sc.mean
    again = runner.invoke(cli, ["scaler", "fit", "--data", str(data), "--out", str(out)])
    assert again.exit_code == 2 and "overwrite" in again.output
    forced = runner.invoke(cli, ["scaler", "fit", "--data", str(data), "--out", str(out), "--force", "--seed", "1"])
    assert forced.exit_code == 0 and load_scaler(out).recipe == "train-split"
    res = runner.invoke(cli, ["scaler", "inspect", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_features"] == 8
    res = runner.invoke(cli, ["scaler", "inspect", str(out.with_suffix(".pkl"))])
    assert res.exit_code == 0 and "flex1" not in res.output and "features: 8" in res.output


def test_cli_refuses_hostile_and_empty(tmp_path, cwe502_reduce_os_system_pkl):
    from click.testing import CliRunner

    from ckreg.cli import cli

    path, marker = cwe502_reduce_os_system_pkl
    res = CliRunner().invoke(cli, ["scaler", "inspect", str(path)])
    assert res.exit_code == 2 and "refused" in res.output and "Traceback" not in res.output
    assert not marker.exists()
    (tmp_path / "nothing").mkdir()
    res = CliRunner().invoke(cli, ["scaler", "fit", "--data", str(tmp_path / "nothing"), "--out",
                                   str(tmp_path / "s.json")])
    assert res.exit_code == 2 and "no episodes" in res.output
