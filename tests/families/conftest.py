"""Family-registry fixtures: a YAML-only family (KWSNet) the project has never seen, its torch module,
and a registry scope so families declared by one test never leak into another."""

from __future__ import annotations

import textwrap

import pytest

KWS_YAML = textwrap.dedent("""\
    families:
      - name: KWSNet
        hyperparameters: {n_mels: null, filters: 64, hidden_size: null, num_layers: 1, num_classes: null}
        indices: {l: "1..num_layers"}
        layout:
          conv.weight: [filters, n_mels, 5]
          conv.bias: [filters]
          gru.weight_ih_l0: [3*hidden_size, filters]
          gru.weight_hh_l0: [3*hidden_size, hidden_size]
          gru.bias_ih_l0: [3*hidden_size]
          gru.bias_hh_l0: [3*hidden_size]
          "gru.weight_ih_l{l}": [3*hidden_size, hidden_size]
          "gru.weight_hh_l{l}": [3*hidden_size, hidden_size]
          "gru.bias_ih_l{l}": [3*hidden_size]
          "gru.bias_hh_l{l}": [3*hidden_size]
          fc.weight: [num_classes, hidden_size]
          fc.bias: [num_classes]
        buffers: []
        names: [kws, kwsnet]
    """)


@pytest.fixture(autouse=True)
def _scoped_registry():
    from ckreg.families import registry

    with registry().scoped():
        yield


@pytest.fixture
def kws_file(tmp_path):
    path = tmp_path / "families" / "kws.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(KWS_YAML)
    return path


@pytest.fixture
def kws_module(torch_mod):
    """KWSNet(n_mels, filters, hidden_size, num_layers, num_classes) as a user would write it."""
    from torch import nn

    class KWSNet(nn.Module):
        def __init__(self, n_mels=40, filters=64, hidden_size=32, num_layers=1, num_classes=12):
            super().__init__()
            self.conv = nn.Conv1d(n_mels, filters, 5)
            self.gru = nn.GRU(filters, hidden_size, num_layers, batch_first=True)
            self.fc = nn.Linear(hidden_size, num_classes)

    return KWSNet


@pytest.fixture
def save_sd(torch_mod):
    def save(module_or_sd, path, **extra):
        sd = module_or_sd if isinstance(module_or_sd, dict) else module_or_sd.state_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch_mod.save({"state_dict": sd, **extra}, path)
        return path
    return save
