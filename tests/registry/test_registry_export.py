"""`export`: safetensors + scaler.json + model card (+ scaler.pkl, Lightning .ckpt), never clobbering (issue #5)."""

from __future__ import annotations

import json

import pytest

from ckreg.errors import IntegrityError, RegistryError
from ckreg.yamlio import load_text
from reghelpers import corrupt_blob, same_registry, sha256_of

VERIFIED = {"accuracy": 0.75, "passed": True, "per_class": {"a": 1.0, "b": 0.5, "c": 0.5, "d": 1.0},
            "data_hash": "abc", "confusion_matrix": [[1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]],
            "class_names": ["a", "b", "c", "d"]}
PROVENANCE = {"recipe": "train-split", "split": {"seed": 0, "val": 0.15, "test": 0.15}, "data_hash": "abc"}


@pytest.fixture
def registered(reg, gru_ckpt, scaler_file):
    path, state = gru_ckpt(0, lightning=True)
    scaler = scaler_file(0)
    v = reg.add(path, scaler, verification=VERIFIED, provenance=PROVENANCE, aliases=["best"])
    return reg, v, state, scaler


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    header, _, body = text[4:].partition("\n---\n")
    assert body.strip(), "the card has a human part too"
    return load_text(header)


def test_export_writes_every_file_and_they_match_the_source(registered, tmp_path, torch_mod):
    torch = torch_mod
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ckreg.scaler import load_scaler
    from ckreg.zoo import load_checkpoint

    reg, v, state, scaler_src = registered
    assert v.family == "GRU" and v.spec.hidden_size == 8, "spec from the inspector"
    out = tmp_path / "out"
    paths = reg.export("GRU@best", out, pkl=True, ckpt=True)
    assert sorted(p.name for p in paths) == ["README.md", "model.ckpt", "model.py", "scaler.json", "scaler.pkl",
                                             "weights.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths), "no temp file left"

    # weights: keys unprefixed (Lightning's model. stripped), tensors equal
    exported = load_file(out / "weights.safetensors")
    assert set(exported) == set(state)
    assert all(torch.equal(exported[k], state[k]) for k in state)
    with safe_open(str(out / "weights.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["spec"]) == v.spec.model_dump(mode="json")
    assert (meta["sha256"], meta["weights_sha256"], meta["pair_digest"]) == (v.sha256, v.weights_sha256, v.pair_digest)
    assert meta["scaler_sha256"] == sha256_of(scaler_src)
    assert json.loads(meta["preprocessing"])["T"] == 87

    # scaler: same statistics
    src, exp = load_scaler(scaler_src), load_scaler(out / "scaler.json")
    assert exp.mean == src.mean and exp.scale == src.scale and exp.channel_names == src.channel_names
    assert load_scaler(out / "scaler.pkl").mean == pytest.approx(src.mean)

    # model card: YAML front matter with the record
    card = _front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert card["family"] == "GRU" and card["hyperparameters"]["hidden_size"] == 8
    assert card["metrics"]["accuracy"] == 0.75 and card["metrics"]["passed"] is True
    assert card["provenance"] == PROVENANCE
    assert card["digests"]["pair_digest"] == v.pair_digest
    assert card["class_names"] == ["a", "b", "c", "d"]
    for name, digest in card["files"].items():
        assert sha256_of(out / name) == digest

    # Lightning-compatible checkpoint: safe-loadable, loads strictly into the zoo with the same spec
    ck = torch.load(out / "model.ckpt", weights_only=True)
    assert ck["hyper_parameters"]["family"] == "GRU" and "pytorch-lightning_version" in ck
    module, spec, _ = load_checkpoint(out / "model.ckpt")
    assert spec == v.spec
    assert all(torch.equal(module.state_dict()[k], state[k]) for k in state)


def test_export_never_clobbers_unless_forced(registered, tmp_path):
    reg, v, _, _ = registered
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    with pytest.raises(RegistryError, match="refusing to overwrite README.md"):
        reg.export("GRU", out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md"], "a refused export writes nothing"
    assert (out / "README.md").read_text() == "my notes"
    paths = reg.export("GRU", out, force=True)
    assert (out / "README.md").read_text().startswith("---\n")
    assert {p.name for p in paths} == {"weights.safetensors", "model.py", "scaler.json", "README.md"}


def test_export_refuses_a_corrupted_blob(registered, tmp_path):
    reg, v, _, _ = registered
    corrupt_blob(reg, v.sha256, offset=2000)
    with pytest.raises(IntegrityError, match="corrupted"):
        reg.export("GRU@1", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_export_without_scaler(reg, gru_ckpt, tmp_path):
    path, _ = gru_ckpt(1)
    reg.add(path)
    paths = reg.export("GRU", tmp_path / "out")
    assert sorted(p.name for p in paths) == ["README.md", "model.py", "weights.safetensors"]
    card = _front_matter((tmp_path / "out" / "README.md").read_text(encoding="utf-8"))
    assert card["metrics"] == {} and card["digests"]["scaler_sha256"] is None
    with pytest.raises(RegistryError, match="no scaler"):
        reg.export("GRU", tmp_path / "out2", pkl=True)


def test_registered_scaler_must_fit_the_model(reg, gru_ckpt, tmp_path):
    np = pytest.importorskip("numpy")
    from ckreg.errors import ScalerError
    from ckreg.scaler import Scaler, save_json

    path, _ = gru_ckpt(0)
    bad = save_json(Scaler(mean=np.zeros(5).tolist(), scale=np.ones(5).tolist(), n_features=5, n_samples_seen=1),
                    tmp_path / "five.json")
    with pytest.raises(ScalerError, match="5 features"):
        reg.add(path, bad)
    assert not same_registry(reg).exists()


def test_family_settles_what_the_weights_cannot_show(reg, tmp_path, torch_mod):
    """ScaleAware vs ScaleHard: identical keys (spec, 'What weights cannot tell'); the registry records the choice."""
    import ckreg
    from ckreg.arch import ArchSpec
    from ckreg.zoo import build

    spec = ArchSpec.for_family("MSCSGRU_ScaleHard", hidden_size=8, cnn_filters=4, num_classes=4)
    path = tmp_path / "scalehard.pt"
    torch_mod.save(build(spec).state_dict(), path)
    with pytest.raises(RegistryError, match="several families equally"):
        reg.add(path)
    with pytest.raises(RegistryError, match="do not show a GRU"):
        reg.add(path, family="GRU")
    v = reg.add(path, family="MSCSGRU_ScaleHard", name="hard")
    assert v.spec == spec, "the family from the user, every other hyperparameter from the weights"
    assert ckreg.load("hard", registry=reg).model.spec.family == "MSCSGRU_ScaleHard", "built as registered"
