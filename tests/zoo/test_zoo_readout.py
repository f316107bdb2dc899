"""The readouts the checkpoints depend on (spec, "Last valid step")."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ckreg.arch import ArchSpec  # noqa: E402
from ckreg.zoo import DEFAULT_READOUT, build  # noqa: E402
from ckreg.zoo.models import readout  # noqa: E402


def test_valid_index_is_n_valid_minus_one_of_the_original_mask_clamped():
    outputs = torch.arange(2 * 10, dtype=torch.float32).reshape(1, 10, 2).repeat(4, 1, 1)   # T' = 10
    mask = torch.ones(4, 30, dtype=torch.uint8)
    mask[0, :4] = 0        # n_valid 4  -> index 3 (NOT divided by the pooling factor)
    mask[1, :] = 1         # n_valid 0  -> -1 clamped to 0
    mask[2, :25] = 0       # n_valid 25 -> 24 clamped to T' - 1 = 9
    mask[3, :10] = 0       # n_valid 10 -> 9
    got = readout(outputs, mask, "valid")[:, 0] / 2
    assert got.tolist() == [3, 0, 9, 9]
    assert readout(outputs, mask, "last")[:, 0].tolist() == [18] * 4
    assert readout(outputs, None, "valid")[:, 0].tolist() == [18] * 4     # no mask: every step valid
    halved = readout(outputs, mask, "valid-halved")[:, 0] / 2           # upstream ScaleAware code
    assert halved.tolist() == [1, 0, 9, 4]


def test_default_readouts_follow_the_spec_table():
    for fam in ("GRU", "LSTM", "StackedGRU", "StackedLSTM"):
        assert DEFAULT_READOUT[fam] == "last"
    for fam in ("CNNGRU", "CNNStackedGRU", "MSCGRU", "MSCSGRU", "MS3DGRU", "MS3DStackedGRU"):
        assert DEFAULT_READOUT[fam] == "valid"
    # upstream scale-aware code halves the index for MaxPool(2); its checkpoints depend on it
    for fam in ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware"):
        assert DEFAULT_READOUT[fam] == "valid-halved"


@pytest.mark.parametrize("family", ["MSCSGRU", "CNNGRU", "MSCGRU_ScaleAware", "MS3DStackedGRU"])
def test_valid_step_ignores_what_comes_after_the_read_step(family):
    """n_valid = 6 on T = 40 reads pooled step 5: raw steps >= 20 cannot reach it (kernel <= 7, pool 2)."""
    torch.manual_seed(0)
    module = build(ArchSpec.for_family(family, hidden_size=8, num_classes=3)).eval()
    x = torch.randn(2, 40, 8)
    x2 = x.clone()
    x2[:, 20:] = torch.randn(2, 20, 8) * 5
    mask = torch.zeros(2, 40, dtype=torch.uint8)
    mask[:, 6:] = 1
    with torch.no_grad():
        assert torch.allclose(module(x, mask), module(x2, mask), atol=1e-6)
        assert not torch.allclose(module(x, None), module(x2, None))        # last step sees them
        module.readout = "last"
        assert not torch.allclose(module(x, mask), module(x2, mask))


@pytest.mark.parametrize("family", ["GRU", "StackedLSTM"])
def test_last_step_reads_the_padding_too(family):
    torch.manual_seed(0)
    module = build(ArchSpec.for_family(family, hidden_size=8, num_classes=3)).eval()
    x = torch.randn(2, 20, 8)
    x2 = x.clone()
    x2[:, 15:] = 1.0 + torch.randn(2, 5, 8)
    mask = torch.zeros(2, 20, dtype=torch.uint8)
    mask[:, 15:] = 1
    with torch.no_grad():
        assert not torch.allclose(module(x, mask), module(x2, mask))
        assert torch.equal(module(x, mask), module(x, None))     # the mask is not used


def test_ms3d_pooling_halves_time_and_stacked_keeps_it():
    x = torch.randn(1, 20, 8)
    m1 = build(ArchSpec.for_family("MS3DGRU", hidden_size=8)).eval()
    m2 = build(ArchSpec.for_family("MS3DStackedGRU", hidden_size=8)).eval()
    with torch.no_grad():
        assert m1.features(x).shape == (1, 10, 96)
        assert m2.features(x).shape == (1, 20, 96)


def test_ms3d_reshape_is_view_b_t_4_2():
    """Channel c lands at grid (c // 2, c % 2): an impulse on channel 5 moves the output like grid (2, 1)."""
    module = build(ArchSpec.for_family("MS3DGRU", hidden_size=8)).eval()
    x = torch.zeros(1, 4, 8)
    x[0, 1, 5] = 1.0
    seen = {}

    def hook(mod, inputs, output):
        seen["in"] = inputs[0]

    module.tower1.register_forward_hook(hook)
    with torch.no_grad():
        module(x, None)
    grid = seen["in"]
    assert grid.shape == (1, 1, 4, 4, 2) and grid[0, 0, 1, 2, 1] == 1.0 and grid.sum() == 1.0
