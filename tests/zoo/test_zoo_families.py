"""Every family of the spec: keys, shapes, parameter counts, forward, strict round trip (issue #3, "Zoo")."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ckreg.arch import FAMILIES, ArchSpec  # noqa: E402
from ckreg.errors import SpecError, VerificationError  # noqa: E402
from ckreg.zoo import build, count_parameters, load_checkpoint, predict  # noqa: E402

from zoo_helpers import SPEC_PARAMS, randomize  # noqa: E402  (tests/zoo/zoo_helpers.py)

try:
    from ckreg.inspect.layouts import expected_layout, param_counts
except ImportError:  # pragma: no cover - the inspector ships separately
    expected_layout = param_counts = None


@pytest.mark.parametrize("family,overrides", sorted(SPEC_PARAMS), ids=lambda v: str(v))
def test_parameter_count_matches_the_spec(family, overrides):
    module = build(ArchSpec.for_family(family, **dict(overrides)))
    params, _ = count_parameters(module)
    assert params == SPEC_PARAMS[(family, overrides)]


def test_ms3dgru_buffers_as_the_design_notes_count_them():
    params, buffers = count_parameters(build(ArchSpec.for_family("MS3DGRU")))
    assert (params, buffers, params + buffers) == (58_840, 388, 59_228)


VARIANTS = [(f, {}) for f in FAMILIES] + [
    ("GRU", dict(num_layers=2, bidirectional=True)), ("StackedLSTM", dict(num_layers=3, hidden_size=16)),
    ("LSTM", dict(cell="LSTM", num_layers=1, hidden_size=8)), ("StackedGRU", dict(cell="RNN")),
    ("MSCSGRU", dict(num_layers=3, tower_kernels=[[3], [9]])), ("MSCGRU", dict(cnn_filters=4, num_classes=5)),
    ("CNNStackedGRU", dict(tower_kernels=[[5]], num_layers=3)),
    ("WRN", dict(depth=10, widen_factor=2, conv_dim=2)), ("WRN", dict(depth=22, widen_factor=1)),
]


@pytest.mark.parametrize("family,overrides", VARIANTS, ids=lambda v: str(v))
def test_state_dict_is_the_expected_layout(family, overrides):
    if expected_layout is None:
        pytest.skip("ckreg.inspect.layouts not importable yet")
    spec = ArchSpec.for_family(family, **overrides)
    module = build(spec)
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    want = expected_layout(spec)
    assert got == want
    assert list(got) == list(want)          # module order too
    assert count_parameters(module) == param_counts(spec)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shape_and_finite(family):
    spec = ArchSpec.for_family(family, num_classes=5)
    module = build(spec).eval()
    if family == "WRN":
        x = torch.randn(2, 16, 8)
    else:
        x = torch.randn(2, 16, 8)
    mask = torch.zeros(2, 16, dtype=torch.uint8)
    mask[1, 9:] = 1
    with torch.no_grad():
        out = module(x, mask)
        out_none = module(x, None)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    assert out_none.shape == (2, 5)


def test_wrn_2d_takes_images():
    module = build(ArchSpec.for_family("WRN", conv_dim=2, input_size=3, num_classes=4)).eval()
    with torch.no_grad():
        assert module(torch.randn(2, 3, 16, 16), None).shape == (2, 4)
    with pytest.raises(ValueError):
        module(torch.randn(2, 16, 3), None)


def _save_lightning(module, path, prefix="model.", **extra):
    sd = {prefix + k: v.clone() for k, v in module.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 42, "pytorch-lightning_version": "2.2.2", **extra}, path)


@pytest.mark.parametrize("family", FAMILIES)
def test_strict_load_round_trip(family, tmp_path):
    spec = ArchSpec.for_family(family, num_classes=7, hidden_size=16) if family != "WRN" else \
        ArchSpec.for_family(family, num_classes=7)
    module = build(spec)
    randomize(module)
    module.eval()
    path = tmp_path / f"{family}.ckpt"
    _save_lightning(module, path)
    x = torch.randn(3, 12, 8)
    mask = torch.zeros(3, 12, dtype=torch.uint8)
    mask[0, 7:] = 1
    kw = {"family": family} if family in ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard") else {}
    loaded, got_spec, insp = load_checkpoint(path, **kw)
    assert got_spec.weight_hparams() == spec.weight_hparams()
    assert got_spec.family == family
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x, mask), module(x, mask))
    assert insp.path == str(path)


def test_safetensors_and_plain_state_dict_round_trip(tmp_path):
    from safetensors.torch import save_file

    module = build(ArchSpec.for_family("MSCSGRU"))
    randomize(module)
    module.eval()
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"module." + k: v for k, v in module.state_dict().items()}, tmp_path / "ddp.pt")
    x = torch.randn(2, 10, 8)
    for name in ("w.safetensors", "ddp.pt"):
        loaded, spec, _ = load_checkpoint(tmp_path / name)
        assert spec.family == "MSCSGRU"
        with torch.no_grad():
            assert torch.equal(loaded(x, None), module(x, None))


def test_scale_aware_and_hard_need_a_family_or_metadata(tmp_path):
    module = build(ArchSpec.for_family("MSCSGRU_ScaleHard", hidden_size=8))
    randomize(module)
    _save_lightning(module, tmp_path / "s.ckpt")
    with pytest.raises(SpecError):
        load_checkpoint(tmp_path / "s.ckpt")
    hard, spec, _ = load_checkpoint(tmp_path / "s.ckpt", family="MSCSGRU_ScaleHard")
    soft, _, _ = load_checkpoint(tmp_path / "s.ckpt", family="MSCSGRU_ScaleAware")
    x = torch.randn(2, 10, 8) * 3
    with torch.no_grad():
        assert not torch.allclose(hard(x, None), soft(x, None))   # the activations differ
        assert torch.equal(hard(x, None), module.eval()(x, None))


@pytest.mark.parametrize("name,family", [
    ("MSCSGRU_ScaleHard_best.ckpt", "MSCSGRU_ScaleHard"),
    ("mscsgru_scaleaware/best.ckpt", "MSCSGRU_ScaleAware"),
])
def test_a_name_settles_what_the_weights_cannot(tmp_path, name, family):
    """Identical keys and shapes: the file/folder name is the evidence left (the inspector still says ambiguous)."""
    module = build(ArchSpec.for_family(family, hidden_size=8))
    randomize(module)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_lightning(module, path)
    loaded, spec, insp = load_checkpoint(path)
    assert spec.family == family and insp.family == "ambiguous"
    x = torch.randn(2, 10, 8) * 3
    with torch.no_grad():
        assert torch.equal(loaded(x, None), module.eval()(x, None))


def test_spec_argument_wins_and_wrong_spec_fails_strictly(tmp_path):
    module = build(ArchSpec.for_family("MSCGRU"))
    _save_lightning(module, tmp_path / "m.ckpt")
    with pytest.raises(VerificationError, match="strictly"):
        load_checkpoint(tmp_path / "m.ckpt", spec=ArchSpec.for_family("MSCGRU", hidden_size=32))


def test_predict_batches_and_restores_mode():
    import numpy as np

    module = build(ArchSpec.for_family("CNNGRU", num_classes=4))
    module.train()
    X = np.random.default_rng(0).normal(size=(10, 12, 8)).astype(np.float32)
    mask = np.zeros((10, 12), np.uint8)
    a = predict(module, X, mask, batch_size=3)
    b = predict(module, X, mask, batch_size=256)
    assert a.shape == (10, 4) and np.allclose(a, b, atol=1e-5)
    assert module.training


# -- bad input ----------------------------------------------------------------

def test_ms3d_needs_eight_channels():
    with pytest.raises(SpecError, match="input_size = 8"):
        build(ArchSpec.for_family("MS3DGRU", input_size=6))
    with pytest.raises(SpecError, match="input_size = 8"):
        build(ArchSpec.for_family("MS3DStackedGRU", input_size=10))


def test_unknown_family_and_unknown_key():
    with pytest.raises(SpecError, match="unknown family"):
        ArchSpec.for_family("Transformer")
    with pytest.raises(SpecError, match="no hyperparameter"):
        ArchSpec.for_family("GRU", cnn_filters=3)


@pytest.mark.parametrize("family,overrides,match", [
    ("MSCSGRU_ScaleAware", dict(tower_kernels=[[3], [5]]), "3 towers"),
    ("MSCSGRU_ScaleAware", dict(num_layers=3), "num_layers = 2"),
    ("MSCSGRU", dict(num_layers=1), "num_layers >= 2"),
    ("CNNGRU", dict(tower_kernels=[[3], [5]]), "one convolution"),
    ("MSCGRU", dict(tower_kernels=[[4]]), "odd"),
    ("WRN", dict(depth=12), "6n \\+ 4"),
    ("MS3DGRU", dict(pool=[2, 8, 2]), "pool"),
])
def test_specs_a_family_cannot_take(family, overrides, match):
    with pytest.raises(SpecError, match=match):
        build(ArchSpec.for_family(family, **overrides))


def test_wrong_channel_count_at_forward_time():
    module = build(ArchSpec.for_family("MSCGRU")).eval()
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(1, 10, 5), None)


def test_cli_family_option_settles_an_ambiguous_file(tmp_path):
    """`ckreg verify --family` reaches the zoo; without it the error says how to choose."""
    from click.testing import CliRunner

    from ckreg.cli import cli

    module = build(ArchSpec.for_family("MSCSGRU_ScaleHard", hidden_size=8))
    _save_lightning(module, tmp_path / "s.ckpt")
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "s.ckpt"), "--json"])
    assert "--family" in r.output and "cannot tell" in r.output
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "s.ckpt"), "--family", "MSCSGRU_ScaleHard", "--json"])
    assert "cannot tell" not in r.output and '"family": "MSCSGRU_ScaleHard"' in r.output
