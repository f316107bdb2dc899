"""inspect_path / inspect_paths on real files: every family in every container, the real
archive, hashes, metadata from files, and bad input that must never end a run."""

from __future__ import annotations

import os
import pickle

import pytest

from ckreg.arch import FAMILIES, ArchSpec
from ckreg.inspect import inspect_path, inspect_paths, spec_from_inspection
from ckreg.inspect.layouts import param_counts

# every family at its reference configuration (WRN as WRN16-1 1D)
ALL = [(f, {"depth": 16, "widen_factor": 1, "conv_dim": 1} if f == "WRN" else {}) for f in FAMILIES]
KINDS = ["lightning", "plain", "prefixed", "safetensors"]
PREFIXES = ["model.", "module.", "_orig_mod."]


def _expect(insp, family, overrides):
    spec = ArchSpec.for_family(family, **overrides)
    if family in ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"):
        assert insp.family == "ambiguous"
        assert insp.ambiguous_between == ["MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"]
    else:
        assert insp.family == family, (insp.error, [(c.family, c.broken[:2]) for c in insp.candidates])
        assert insp.confidence == 1.0
    assert insp.hyperparameters == spec.weight_hparams()
    assert (insp.params.trainable, insp.params.buffers) == param_counts(spec)
    assert insp.leftovers == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family,overrides", ALL, ids=[f for f, _ in ALL])
def test_every_family_in_every_container(save_ckpt, family, overrides, kind):
    prefix = PREFIXES[FAMILIES.index(family) % len(PREFIXES)] if kind == "prefixed" else ""
    path = save_ckpt(family, kind="plain" if kind == "prefixed" else kind, prefix=prefix, overrides=overrides)
    insp = inspect_path(path)
    assert insp.error is None
    assert insp.format == ("safetensors" if kind == "safetensors" else "torch-zip")
    _expect(insp, family, overrides)
    if prefix:
        assert any(prefix in e for e in insp.evidence), insp.evidence


@pytest.mark.parametrize("wrap,prefix", [
    ("model_state_dict", "module."), ("net", "_orig_mod."), ("model", "module._orig_mod."),
    ("state_dict", "_orig_mod.module."), ("lightning", "model._orig_mod."),
])
def test_wrappers_and_stacked_prefixes(save_ckpt, wrap, prefix):
    insp = inspect_path(save_ckpt("MSCSGRU", kind=wrap, prefix=prefix))
    _expect(insp, "MSCSGRU", {})


UNSEEN = [
    ("GRU", {"hidden_size": 32, "num_layers": 3, "num_classes": 10, "proj_size": 100}, "lightning"),
    ("GRU", {"bidirectional": True, "hidden_size": 16}, "safetensors"),
    ("LSTM", {"num_layers": 1, "hidden_size": 48}, "plain"),
    ("StackedLSTM", {"num_layers": 3, "bidirectional": True}, "lightning"),
    ("CNNGRU", {"cell": "LSTM", "num_layers": 2}, "safetensors"),
    ("MSCSGRU", {"num_classes": 34}, "lightning"),
    ("MS3DGRU", {"tower_kernels": [[3, 5, 3], [5, 5, 5], [7, 7, 7]]}, "safetensors"),
    ("MS3DStackedGRU", {"hidden_size": 32, "cnn_filters": 8}, "plain"),
    ("MSCGRU_ScaleAware", {"hidden_size": 48}, "lightning"),
    ("WRN", {"depth": 16, "widen_factor": 3, "conv_dim": 1}, "lightning"),
    ("WRN", {"depth": 28, "widen_factor": 1, "conv_dim": 2}, "safetensors"),
    ("WRN", {"depth": 28, "widen_factor": 3, "conv_dim": 2, "num_classes": 10}, "plain"),
]


@pytest.mark.parametrize("family,overrides,kind", UNSEEN, ids=lambda v: str(v))
def test_unseen_variants_from_files(save_ckpt, family, overrides, kind):
    insp = inspect_path(save_ckpt(family, kind=kind, overrides=overrides))
    _expect(insp, family, overrides)
    assert spec_from_inspection(insp) == ArchSpec.for_family(family, **overrides)


# -- the real archive ---------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("name", ["GRU_best.ckpt", "GRU_best-v1.ckpt"])
def test_archive_gru(archive_dir, name):
    insp = inspect_path(archive_dir / "archive/checkpoints_backup/checkpoints_backup" / name)
    assert insp.family == "GRU" and insp.confidence == 1.0
    h = insp.hyperparameters
    assert (h["num_layers"], h["hidden_size"], h["proj_size"], h["num_classes"], h["input_size"]) == (2, 64, 128, 24, 8)
    assert h["cell"] == "GRU" and h["bidirectional"] is False
    assert (insp.params.trainable, insp.params.buffers) == (74_776, 0)
    assert insp.metadata.get("epoch") == 57
    assert insp.not_recorded == {"dropout": "not recorded in the weights"}
    assert not insp.findings


@pytest.mark.realdata
def test_archive_mscsgru(archive_dir):
    insp = inspect_path(archive_dir / "archive/checkpoints_backup/checkpoints_backup/MSCSGRU_best.ckpt")
    assert insp.family == "MSCSGRU" and insp.confidence == 1.0
    assert insp.hyperparameters["tower_kernels"] == [[3], [5], [7]]
    assert insp.hyperparameters["num_layers"] == 2 and insp.hyperparameters["conv_dim"] == 1
    assert (insp.params.trainable, insp.params.buffers) == (71_800, 388)


@pytest.mark.realdata
def test_archive_ms3dgru(archive_dir):
    insp = inspect_path(archive_dir / "best_model/ms3dgru_best.ckpt")
    assert insp.family == "MS3DGRU" and insp.confidence == 1.0
    assert insp.hyperparameters["tower_kernels"] == [[3, 3, 3], [5, 5, 5], [7, 7, 7]]
    assert insp.hyperparameters["conv_dim"] == 3 and insp.hyperparameters["num_layers"] == 1
    assert (insp.params.trainable, insp.params.buffers) == (58_840, 388)
    assert "tower2 kernel 5x5x5 from tower2.0.weight [32, 1, 5, 5, 5]" in insp.evidence
    assert spec_from_inspection(insp) == ArchSpec.for_family("MS3DGRU")


@pytest.mark.realdata
def test_archive_gru_pair_same_weights(archive_dir):
    d = archive_dir / "archive/checkpoints_backup/checkpoints_backup"
    a, b = inspect_paths([d / "GRU_best.ckpt", d / "GRU_best-v1.ckpt"], hash_weights=True)
    assert a.weights_sha256 and a.weights_sha256 == b.weights_sha256
    assert a.layout_sha256 == b.layout_sha256
    assert a.sha256 and b.sha256 and a.sha256 != b.sha256  # different bytes, same weights


# -- hashes ------------------------------------------------------------------------

def test_weights_sha256_ignores_container_and_metadata(save_ckpt, family_state_dict):
    sd = family_state_dict("CNNGRU")
    paths = [
        save_ckpt(sd, kind="lightning", epoch=3),
        save_ckpt(sd, kind="lightning", epoch=9, hyper_parameters={"lr": 0.01, "dropout": 0.3}),
        save_ckpt(sd, kind="plain"),
        save_ckpt(sd, kind="plain", prefix="module."),
        save_ckpt(sd, kind="safetensors", metadata={"format": "pt"}),
    ]
    got = inspect_paths(paths, hash_weights=True)
    assert len({i.weights_sha256 for i in got}) == 1 and got[0].weights_sha256
    assert len({i.layout_sha256 for i in got}) == 1
    assert len({i.sha256 for i in got}) == len(paths)
    changed = dict(sd)
    changed["gru.bias_hh_l0"] = sd["gru.bias_hh_l0"] + 1
    other = inspect_path(save_ckpt(changed, kind="plain"), hash_weights=True)
    assert other.layout_sha256 == got[0].layout_sha256 and other.weights_sha256 != got[0].weights_sha256


def test_hashes_only_on_request(save_ckpt, monkeypatch):
    import hashlib

    import ckreg.inspect.core as core

    path = save_ckpt("GRU")
    insp = inspect_path(path)
    # small files: the file hash is one cheap read; the weights hash only on request
    assert insp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert insp.weights_sha256 is None and insp.layout_sha256
    monkeypatch.setattr(core, "FILE_HASH_BYTES", 1024)    # a "large" file: nothing streamed
    insp = inspect_path(path)
    assert insp.sha256 is None and insp.weights_sha256 is None and insp.bytes_read < path.stat().st_size


def test_tied_tensors_counted_once_from_file(save_ckpt, family_state_dict):
    sd = family_state_dict("GRU")
    sd["extra_head.weight"] = sd["output_layers.output_layers.3.weight"]  # same storage: tied
    insp = inspect_path(save_ckpt(sd, kind="plain"))
    assert insp.params.trainable == 49_816
    assert insp.leftovers == ["extra_head.weight"]


# -- metadata in files -----------------------------------------------------------------

def test_lightning_hyper_parameters(save_ckpt):
    path = save_ckpt("MS3DGRU", hyper_parameters={"hidden_size": 32, "dropout": 0.1, "pool": [2, 4, 2]},
                     hparams_name="kwargs")
    insp = inspect_path(path)
    assert insp.family == "MS3DGRU"
    bad = [f for f in insp.findings if f.code == "metadata-contradicts-weights"]
    assert len(bad) == 1 and bad[0].expected == 64 and bad[0].actual == 32
    assert insp.not_recorded == {"dropout": 0.1, "pool": [2, 4, 2]}
    spec = spec_from_inspection(insp)
    assert spec.hidden_size == 64 and spec.pool == [2, 4, 2] and spec.dropout == 0.1


def test_metadata_names_scale_hard(save_ckpt):
    insp = inspect_path(save_ckpt("MSCSGRU_ScaleHard", hyper_parameters={"model_name": "MSCSGRU_ScaleHard"}))
    assert insp.family == "MSCSGRU_ScaleHard"
    st = inspect_path(save_ckpt("MSCSGRU_ScaleHard", kind="safetensors",
                                metadata={"family": "MSCSGRU_ScaleAware", "format": "pt"}))
    assert st.family == "MSCSGRU_ScaleAware"


# -- bad input -------------------------------------------------------------------------

class _Payload:
    """Pickling this would make the unpickler create a file (it must never run)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _bad_files(tmp_path, good):
    data = good.read_bytes()
    files = {
        "empty": tmp_path / "empty.ckpt",
        "truncated": tmp_path / "truncated.ckpt",
        "random": tmp_path / "random.pt",
        "directory": tmp_path / "adir.ckpt",
        "loop": tmp_path / "loop.ckpt",
        "missing": tmp_path / "missing.ckpt",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["random"].write_bytes(os.urandom(4096))
    files["directory"].mkdir()
    os.symlink(files["loop"], files["loop"])
    return files


def test_bad_inputs_never_raise_and_name_the_file(tmp_path, save_ckpt):
    good = save_ckpt("GRU")
    bad = _bad_files(tmp_path, good)
    for kind, path in bad.items():
        insp = inspect_path(path)
        assert insp.error, kind
        assert str(path) in insp.error, (kind, insp.error)
        assert [f.code for f in insp.findings if f.code == "unreadable"] == ["unreadable"], kind
        assert insp.family == "unknown" and insp.confidence == 0.0


def test_malicious_pickle_is_reported_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {}, "payload": _Payload(marker)}, fh, protocol=4)
    insp = inspect_path(path)
    assert not marker.exists()
    unsafe = [f for f in insp.findings if f.code == "unsafe-global"]
    assert unsafe and any("system" in f.message for f in unsafe)
    assert str(path) in unsafe[0].message or unsafe[0].path == str(path)


def test_inspect_paths_keeps_order_with_bad_files(tmp_path, save_ckpt):
    good = [save_ckpt("GRU"), save_ckpt("MSCGRU"), save_ckpt("WRN", overrides={"depth": 10, "conv_dim": 1})]
    bad = _bad_files(tmp_path, good[0])
    paths = [good[0], bad["empty"], good[1], bad["directory"], good[2], bad["missing"]]
    for kwargs in ({"jobs": 1}, {"jobs": 3}, {"jobs": 2, "pool": "thread"}):
        got = inspect_paths(paths, **kwargs)
        assert [i.path for i in got] == [str(p) for p in paths]
        assert [i.family for i in got] == ["GRU", "unknown", "MSCGRU", "unknown", "WRN", "unknown"]
        assert [bool(i.error) for i in got] == [False, True, False, True, False, True]


def test_nothing_written(tmp_path, save_ckpt):
    path = save_ckpt("CNNGRU")
    before = sorted(os.listdir(tmp_path)), path.stat().st_mtime_ns
    inspect_paths([path, tmp_path / "nope.ckpt"], hash_weights=True)
    assert (sorted(os.listdir(tmp_path)), path.stat().st_mtime_ns) == before


@pytest.mark.parametrize("name,dtype,shape", [
    ("rnn.weight_ih_l0", "float32", (192, 64)), ("scalar", "int64", ()), ("caf\u00e9", "float32", (1,)),
    ('a"b', "float16", (2,)), ("a\\b", "bfloat16", (2, 3)), ("tab\there", "int8", (0,)),
    ("ok ~!#[]{}", "bool", (4, 0, 5)), ("flag", "uint8", (True, 2))])
def test_the_weights_hash_row_is_json_dumps(name, dtype, shape):
    """Each tensor enters weights_sha256 with its row as json.dumps writes it (the hash must not change)."""
    import json

    from ckreg.inspect.core import _row_json

    assert _row_json(name, dtype, shape) == json.dumps([name, dtype, list(shape)], separators=(",", ":"))
