"""expected_layout / param_counts against the spec's reference figures and real torch modules."""

from __future__ import annotations

import math

import pytest

from ckreg.arch import FAMILIES, ArchSpec
from ckreg.errors import SpecError
from ckreg.inspect.layouts import expected_layout, is_buffer_name, param_counts

# (family, overrides, parameters) straight from ../shared/spec/families.md, table "Families"
REFERENCE = [
    ("GRU", {"num_layers": 1}, 49_816),
    ("GRU", {"num_layers": 2}, 74_776),
    ("LSTM", {"num_layers": 2}, 95_512),
    ("StackedGRU", {"num_layers": 2}, 50_584),
    ("StackedGRU", {"num_layers": 3}, 75_544),
    ("CNNGRU", {}, 31_096),
    ("CNNStackedGRU", {}, 56_056),
    ("MSCGRU", {}, 46_840),
    ("MSCSGRU", {}, 71_800),
    ("MSCSGRU", {"num_classes": 34}, 73_090),
    ("MS3DGRU", {}, 58_840),
    ("MS3DStackedGRU", {}, 167_032),
    ("MSCSGRU_ScaleAware", {}, 95_992),
    ("MSCSGRU_ScaleHard", {}, 95_992),
    ("MSCGRU_ScaleAware", {}, 46_648),
]


@pytest.mark.parametrize("family,overrides,params", REFERENCE, ids=lambda v: str(v))
def test_reference_parameter_counts(family, overrides, params):
    got, _ = param_counts(ArchSpec.for_family(family, **overrides))
    assert got == params


def test_ms3dgru_buffers_are_separate():
    # spec: "59,228 for MS3DGRU is 58,840 parameters plus 388 buffer elements"
    assert param_counts(ArchSpec.for_family("MS3DGRU")) == (58_840, 388)
    assert sum(param_counts(ArchSpec.for_family("MS3DGRU"))) == 59_228


def _wrn_formula(c_in: int, depth: int, k: int, classes: int, dim: int) -> tuple[int, int]:
    """WRN-d-k by hand: stem, 3 groups of n pre-activation blocks, final BN, fc."""
    n = (depth - 4) // 6
    ks = 3 ** dim
    w = [16, 16 * k, 32 * k, 64 * k]
    params = 16 * c_in * ks
    buffers = 0
    for g in range(3):
        for i in range(n):
            a, b = (w[g] if i == 0 else w[g + 1]), w[g + 1]
            params += 2 * a + b * a * ks + 2 * b + b * b * ks + (b * a if a != b else 0)
            buffers += 2 * a + 1 + 2 * b + 1
    params += 2 * w[3] + w[3] * classes + classes
    buffers += 2 * w[3] + 1
    return params, buffers


@pytest.mark.parametrize("depth,k,dim", [(16, 1, 1), (16, 3, 1), (28, 1, 2), (28, 3, 2), (10, 2, 2), (22, 4, 1)])
def test_wrn_by_formula(depth, k, dim):
    spec = ArchSpec.for_family("WRN", depth=depth, widen_factor=k, conv_dim=dim, input_size=8, num_classes=24)
    assert param_counts(spec) == _wrn_formula(8, depth, k, 24, dim)


def test_wrn_shortcuts_only_where_widths_change():
    lay = expected_layout(ArchSpec.for_family("WRN", depth=16, widen_factor=1, conv_dim=2))
    shortcuts = sorted(k for k in lay if "convShortcut" in k)
    assert shortcuts == ["block2.layer.0.convShortcut.weight", "block3.layer.0.convShortcut.weight"]
    assert lay["block2.layer.0.convShortcut.weight"] == (32, 16, 1, 1)
    lay3 = expected_layout(ArchSpec.for_family("WRN", depth=28, widen_factor=3, conv_dim=1))
    assert "block1.layer.0.convShortcut.weight" in lay3 and lay3["block1.layer.0.convShortcut.weight"] == (48, 16, 1)
    assert "block1.layer.1.convShortcut.weight" not in lay3
    assert lay3["fc.weight"] == (24, 192)


def test_layout_names_match_the_spec():
    gru = expected_layout(ArchSpec.for_family("GRU", num_layers=2))
    assert list(gru)[:3] == ["RNN.0.weight", "RNN.0.bias", "RNN.1.weight_ih_l0"]
    assert gru["RNN.1.weight_ih_l1"] == (192, 64)
    assert gru["output_layers.output_layers.0.weight"] == (128, 64)
    assert gru["output_layers.output_layers.3.weight"] == (24, 128)
    lstm = expected_layout(ArchSpec.for_family("LSTM"))
    assert lstm["RNN.1.weight_ih_l0"] == (256, 128)
    cnn = expected_layout(ArchSpec.for_family("CNNGRU"))
    assert cnn["cnn.0.weight"] == (32, 8, 3) and cnn["output_layers.3.weight"] == (24, 128)
    assert cnn["cnn.1.num_batches_tracked"] == ()
    sa = expected_layout(ArchSpec.for_family("MSCSGRU_ScaleAware"))
    assert sa["gru1.cell.W_z3.weight"] == (64, 32)
    assert sa["gru2.cell.W_h7.weight"] == (64, 64)  # literal reading: gru2 W are [H, H]
    assert sa["gru1.cell.U_z.weight"] == (64, 64) and sa["gru1.cell.U_z.bias"] == (64,)
    assert "gru1.cell.W_z3.bias" not in sa
    ms3d = expected_layout(ArchSpec.for_family("MS3DStackedGRU"))
    assert ms3d["tower2.0.weight"] == (32, 1, 5, 5, 5) and ms3d["tower2.3.weight"] == (32, 32, 3, 3, 3)
    assert ms3d["cnn_post.0.running_var"] == (96,)


def test_bidirectional_and_lstm_layouts():
    spec = ArchSpec.for_family("StackedLSTM", num_layers=3, bidirectional=True, hidden_size=32)
    lay = expected_layout(spec)
    assert lay["RNN.weight_ih_l0"] == (128, 8)
    assert lay["RNN.weight_ih_l0_reverse"] == (128, 8)
    assert lay["RNN.weight_ih_l2"] == (128, 64)  # later layers see 2H
    assert lay["output_layers.output_layers.0.weight"] == (64, 64)  # Linear(D*H, 2H)
    names = list(lay)
    assert names.index("RNN.bias_hh_l0") < names.index("RNN.weight_ih_l0_reverse") < names.index("RNN.weight_ih_l1")


def test_non_cubic_kernels_and_scale_layer_rules():
    lay = expected_layout(ArchSpec.for_family("MS3DGRU", tower_kernels=[[3, 5, 3], [5, 5, 5], [7, 3, 1]]))
    assert lay["tower1.0.weight"] == (32, 1, 3, 5, 3) and lay["tower3.0.weight"] == (32, 1, 7, 3, 1)
    with pytest.raises(SpecError):
        expected_layout(ArchSpec.for_family("MSCSGRU_ScaleAware", num_layers=3))
    with pytest.raises(SpecError):
        expected_layout(ArchSpec.for_family("WRN", depth=15))
    with pytest.raises(SpecError):
        expected_layout(ArchSpec.for_family("MSCSGRU", num_layers=1))


def test_buffers_named():
    assert is_buffer_name("tower1.1.running_mean") and is_buffer_name("bn1.num_batches_tracked")
    assert not is_buffer_name("tower1.1.weight")


# -- the layouts against real torch modules written from the spec's prose --------------

MODULE_SPECS = [
    ("GRU", {}), ("GRU", {"num_layers": 2}), ("GRU", {"bidirectional": True, "hidden_size": 16}),
    ("GRU", {"cell": "RNN"}),
    ("LSTM", {}), ("StackedGRU", {"num_layers": 3}), ("StackedLSTM", {"bidirectional": True}),
    ("CNNGRU", {}), ("CNNGRU", {"cell": "LSTM", "num_layers": 2}), ("CNNStackedGRU", {}),
    ("MSCGRU", {}), ("MSCSGRU", {}), ("MSCSGRU", {"num_layers": 3}),
    ("MS3DGRU", {}), ("MS3DGRU", {"tower_kernels": [[3, 5, 3], [5, 5, 5], [7, 7, 7]]}), ("MS3DStackedGRU", {}),
    ("MSCSGRU_ScaleAware", {}), ("MSCSGRU_ScaleHard", {}), ("MSCGRU_ScaleAware", {}),
    ("WRN", {"depth": 16, "widen_factor": 1, "conv_dim": 1}), ("WRN", {"depth": 28, "widen_factor": 3, "conv_dim": 2}),
]


@pytest.mark.parametrize("family,overrides", MODULE_SPECS, ids=lambda v: str(v))
def test_layout_matches_torch_module(factories, family, overrides):
    spec = ArchSpec.for_family(family, **overrides)
    model = factories.build(spec)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == list(expected_layout(spec).items())  # names, shapes and module order
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    assert param_counts(spec) == (params, buffers)


def test_every_family_has_a_layout():
    for family in FAMILIES:
        lay = expected_layout(ArchSpec.for_family(family))
        assert lay and all(isinstance(s, tuple) for s in lay.values())
        assert sum(math.prod(s) if s else 1 for s in lay.values()) == sum(param_counts(ArchSpec.for_family(family)))
