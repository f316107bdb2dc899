"""Generic .npz format and the deterministic stratified split (issue #3, "Data")."""

from __future__ import annotations

import numpy as np
import pytest

from ckreg.data import Dataset, load_npz, load_signglove, split
from ckreg.errors import DataError



def _arrays(n=30, T=6, C=3, K=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, T, C)).astype(np.float32), np.arange(n) % K


def test_npz_round_trip_keeps_everything_and_the_hash(tree, tmp_path):
    ds = load_signglove(tree)
    path = ds.save_npz(tmp_path / "d.npz")
    back = load_npz(path)
    assert back.data_hash == ds.data_hash
    assert back.ids == ds.ids and back.class_names == ds.class_names and back.channel_names == ds.channel_names
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.mask, ds.mask)
    with pytest.raises(DataError, match="overwrite"):
        ds.save_npz(path)


def test_npz_minimal_defaults(tmp_path):
    X, y = _arrays()
    np.savez(tmp_path / "m.npz", X=X, y=y)
    ds = load_npz(tmp_path / "m.npz")
    assert (ds.mask == 0).all() and ds.class_names == ["0", "1", "2"]
    assert ds.channel_names == ["ch0", "ch1", "ch2"] and ds.ids[0] == "m.npz#0"


@pytest.mark.parametrize("arrays,match", [
    (dict(y=np.zeros(3, int)), "missing array 'X'"),
    (dict(X=np.zeros((3, 4)), y=np.zeros(3, int)), r"X must be \[N, T, C\]"),
    (dict(X=np.zeros((3, 4, 2)), y=np.zeros(2, int)), "y must be"),
    (dict(X=np.zeros((3, 4, 2)), y=np.zeros(3)), "y must be"),
    (dict(X=np.zeros((3, 4, 2)), y=np.zeros(3, int), mask=np.zeros((3, 5))), "mask must be"),
    (dict(X=np.zeros((3, 4, 2)), y=np.array([0, 1, 2]), class_names=np.array(["a", "b"])), "class_names has only"),
    (dict(X=np.zeros((3, 4, 2)), y=np.zeros(3, int), channel_names=np.array(["a"])), "channel_names must be"),
    (dict(X=np.zeros((0, 4, 2)), y=np.zeros(0, int)), "no episodes"),
])
def test_npz_validation(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_npz(tmp_path / "bad.npz")


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path):
    X, y = _arrays()
    np.savez(tmp_path / "obj.npz", X=X, y=y, class_names=np.array([object(), "b", "c"], dtype=object))
    with pytest.raises(DataError, match="unpickling"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError):
        load_npz(tmp_path / "junk.npz")


def _ds(n_per_class=(20, 20, 7, 1)):
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    X = np.zeros((len(y), 4, 2), np.float32)
    return Dataset(X=X, y=y, mask=np.zeros((len(y), 4), np.uint8), ids=[f"e{i:03d}" for i in range(len(y))],
                   class_names=[f"c{k}" for k in range(len(n_per_class))], channel_names=["a", "b"])


def test_split_is_deterministic_disjoint_and_complete():
    ds = _ds()
    a, b = split(ds, seed=3), split(ds, seed=3)
    assert a.to_dict() == b.to_dict()
    assert split(ds, seed=4).test_ids != a.test_ids
    parts = [set(a.train.tolist()), set(a.val.tolist()), set(a.test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == set(range(len(ds)))
    assert a.to_dict()["data_hash"] == ds.data_hash
    assert a.train_ids == [ds.ids[i] for i in a.train]


def test_split_is_stratified_and_keeps_one_for_training():
    ds = _ds()
    s = split(ds, seed=0, val=0.15, test=0.15)
    counts = {part: np.bincount(ds.y[s.indices(part)], minlength=4).tolist() for part in ("train", "val", "test")}
    assert counts["test"] == [3, 3, 1, 0] and counts["val"] == [3, 3, 1, 0]
    assert counts["train"] == [14, 14, 5, 1]


def test_split_does_not_depend_on_load_order():
    ds = _ds()
    perm = np.random.default_rng(0).permutation(len(ds))
    shuffled = Dataset(X=ds.X[perm], y=ds.y[perm], mask=ds.mask[perm], ids=[ds.ids[i] for i in perm],
                       class_names=ds.class_names, channel_names=ds.channel_names)
    assert sorted(split(ds, seed=1).test_ids) == sorted(split(shuffled, seed=1).test_ids)


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (-0.1, 0.1), (0.2, 1.0)])
def test_split_rejects_bad_fractions(val, test):
    with pytest.raises(DataError):
        split(_ds(), val=val, test=test)


def test_subset_and_summary(tmp_path, glove):
    ds = load_signglove(glove.make_tree(tmp_path / "g"))
    sub = ds.subset([0, 2])
    assert len(sub) == 2 and sub.ids == [ds.ids[0], ds.ids[2]] and sub.data_hash != ds.data_hash
    summary = ds.summary()
    assert summary["n_episodes"] == len(ds) and summary["class_counts"]["ㄱ"] == 6
