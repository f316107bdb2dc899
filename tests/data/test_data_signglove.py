"""SignGlove folder loader: layout, class order, columns, cut/pad, degenerate episodes (issue #3, "Data")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ckreg.data import SIGNGLOVE_CHANNELS, SIGNGLOVE_CLASSES, load_dataset, load_signglove
from ckreg.errors import DataError



def test_layout_columns_and_padding(tree):
    ds = load_signglove(tree, T=12)
    assert ds.X.shape == (18, 12, 8) and ds.X.dtype == np.float32
    assert ds.mask.shape == (18, 12) and ds.mask.dtype == np.uint8
    assert ds.channel_names == list(SIGNGLOVE_CHANNELS)
    # columns reordered to flex1..flex5, pitch, roll, yaw (file order is pitch, roll, yaw, flex1..)
    first = ds.ids.index(sorted(i for i in ds.ids if i.startswith("ㄱ/1/"))[0])
    row1 = ds.X[first, 1]
    seed = float(ds.X[first, 0, 0] - 100)
    assert row1.tolist() == pytest.approx([101 + seed, 201 + seed, 301 + seed, 401 + seed, 501 + seed,
                                           -1 - seed, 2 + seed, 0.5])
    # 10 rows, padded to 12 with raw 1.0 and mask 1
    assert (ds.mask[:, :10] == 0).all() and (ds.mask[:, 10:] == 1).all()
    assert (ds.X[:, 10:] == 1.0).all()
    assert ds.n_valid.tolist() == [10] * 18


def test_cut_to_T(tree):
    ds = load_signglove(tree, T=4)
    assert ds.X.shape[1] == 4 and (ds.mask == 0).all()
    assert ds.X[0, 3, 0] == pytest.approx(ds.X[0, 0, 0] + 3)


def test_class_order_is_the_spec_order_with_all_24_names(tmp_path, glove):
    root = glove.make_tree(tmp_path / "g", classes=("ㅏ", "ㄱ", "ㅣ"), sessions=1, per_session=2)
    ds = load_signglove(root)
    assert ds.class_names == list(SIGNGLOVE_CLASSES)
    by_class = {i.split("/")[0]: int(y) for i, y in zip(ds.ids, ds.y)}
    assert by_class == {"ㄱ": 0, "ㅏ": 14, "ㅣ": 23}


def test_unknown_class_folders_fall_back_to_sorted_names(tmp_path, glove):
    root = glove.make_tree(tmp_path / "g", classes=("zeta", "alpha"), sessions=1, per_session=1)
    ds = load_signglove(root)
    assert ds.class_names == ["alpha", "zeta"]
    ds2 = load_signglove(root, classes=["zeta", "alpha"])
    assert ds2.class_names == ["zeta", "alpha"] and sorted(ds2.y.tolist()) == [0, 1]


def test_ids_are_relative_posix_paths_and_sorted(tree):
    ds = load_signglove(tree)
    assert all(not i.startswith("/") and i.endswith(".csv") and i.count("/") == 2 for i in ds.ids)
    assert ds.ids == sorted(ds.ids, key=lambda i: (SIGNGLOVE_CLASSES.index(i.split("/")[0]), i))


def _set_cell(path, line: int, column: int, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[line].split(",")
    cells[column] = value
    lines[line] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _degenerate_tree(tmp_path, glove):
    root = glove.make_tree(tmp_path / "g", classes=("ㄱ",), sessions=1, per_session=2)
    d = root / "ㄱ" / "1"
    (d / "episode_empty.csv").write_bytes(b"")
    (d / "episode_headeronly.csv").write_text(glove.HEADER + "\n")
    glove.write_episode(d / "episode_onerow.csv", 1)
    glove.write_episode(d / "episode_noyaw.csv", 5, header=glove.HEADER.replace(",yaw,", ",yaw_x,"))
    bad = glove.write_episode(d / "episode_text.csv", 5)
    _set_cell(bad, line=3, column=6, value="abc")        # column 6 = flex2
    (d / "episode_binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    return root


def test_degenerate_episodes_are_reported_and_skipped(tmp_path, glove):
    root = _degenerate_tree(tmp_path, glove)
    ds = load_signglove(root)
    assert len(ds) == 2
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ds.problems}
    assert set(reasons) == {"episode_empty.csv", "episode_headeronly.csv", "episode_onerow.csv",
                            "episode_noyaw.csv", "episode_text.csv", "episode_binary.csv"}
    assert "empty" in reasons["episode_empty.csv"]
    assert "no data rows" in reasons["episode_headeronly.csv"]
    assert "one row" in reasons["episode_onerow.csv"]
    assert "missing columns: yaw" in reasons["episode_noyaw.csv"]
    assert "'abc'" in reasons["episode_text.csv"] and "flex2" in reasons["episode_text.csv"]
    assert "unreadable" in reasons["episode_binary.csv"]
    assert all(str(root) in p for p, _ in ds.problems)      # full paths, not just names


def test_keep_degenerate_keeps_what_has_rows(tmp_path, glove):
    root = _degenerate_tree(tmp_path, glove)
    ds = load_signglove(root, keep_degenerate=True, T=8)
    names = {i.rsplit("/", 1)[-1] for i in ds.ids}
    assert {"episode_onerow.csv", "episode_noyaw.csv", "episode_text.csv"} <= names
    assert "episode_empty.csv" not in names and "episode_headeronly.csv" not in names
    assert len(ds.degenerate) == 3
    one = ds.ids.index(next(i for i in ds.ids if i.endswith("episode_onerow.csv")))
    assert ds.n_valid[one] == 1 and (ds.X[one, 1:] == 1.0).all()
    noyaw = ds.ids.index(next(i for i in ds.ids if i.endswith("episode_noyaw.csv")))
    assert np.isnan(ds.X[noyaw, :5, 7]).all() and not np.isnan(ds.X[noyaw, :5, :7]).any()
    text = ds.ids.index(next(i for i in ds.ids if i.endswith("episode_text.csv")))
    assert np.isnan(ds.X[text]).sum() == 1
    assert any("kept" in r for _, r in ds.problems)


def test_no_episodes_is_a_data_error(tmp_path):
    (tmp_path / "empty" / "ㄱ" / "1").mkdir(parents=True)
    with pytest.raises(DataError, match="no episodes"):
        load_signglove(tmp_path / "empty")
    with pytest.raises(DataError):
        load_signglove(tmp_path / "missing")


def test_all_degenerate_is_a_data_error(tmp_path, glove):
    glove.write_episode(tmp_path / "g" / "ㄱ" / "1" / "episode_a.csv", 1)
    with pytest.raises(DataError, match="degenerate"):
        load_signglove(tmp_path / "g")
    assert len(load_signglove(tmp_path / "g", keep_degenerate=True)) == 1


def test_data_hash_is_stable_and_content_sensitive(tmp_path, glove):
    a = glove.make_tree(tmp_path / "a")
    b = glove.make_tree(tmp_path / "b")
    ha = load_signglove(a).data_hash
    assert ha == load_signglove(b).data_hash          # same content elsewhere on disk: same hash
    # CRLF line endings do not change the parsed content
    p = next((b / "ㄱ" / "1").glob("*.csv"))
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    assert load_signglove(b).data_hash == ha
    _set_cell(p, line=2, column=5, value="123.25")     # column 5 = flex1
    assert load_signglove(b).data_hash != ha
    assert load_signglove(a, T=20).data_hash != ha     # T is part of what a model sees


def test_load_dataset_dispatch(tree, tmp_path):
    assert load_dataset(tree).format == "signglove"
    npz = load_signglove(tree).save_npz(tmp_path / "d.npz")
    assert load_dataset(npz).format == "npz"
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported"):
        load_dataset(tmp_path / "x.txt")
    with pytest.raises(DataError):
        load_dataset(tmp_path / "nope")


@pytest.mark.realdata
def test_real_signglove(signglove_dir):
    ds = load_signglove(signglove_dir)
    assert len(ds) == 1443 and ds.X.shape == (1443, 87, 8)
    assert [p.rsplit("/", 1)[-1] for p, _ in ds.problems] == ["episode_20251001_154132_ㅊ_3.csv"]
    assert len(load_signglove(signglove_dir, keep_degenerate=True)) == 1444
    assert ds.class_names == list(SIGNGLOVE_CLASSES)
    assert not math.isnan(float(ds.X.sum()))
