"""Ad-hoc torch modules for every family of ../shared/spec/families.md (tests only).

Written from the spec's prose, independently of `ckreg.inspect.layouts`, so
comparing their `state_dict()` with `expected_layout` checks the layouts; the
saved checkpoints then check the detectors. Imported lazily by conftest.py so
the torch-free tests in this folder run without torch.
"""

from __future__ import annotations

import torch
from torch import nn

from ckreg.arch import ArchSpec

_RECURRENT = {"GRU": nn.GRU, "LSTM": nn.LSTM, "RNN": nn.RNN}


def _rnn(cell: str, n_in: int, hidden: int, layers: int, bidirectional: bool = False) -> nn.Module:
    return _RECURRENT[cell](n_in, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)


class _RNNHeadInner(nn.Module):
    def __init__(self, n_in: int, hidden: int, classes: int):
        super().__init__()
        self.output_layers = nn.Sequential(nn.Linear(n_in, 2 * hidden), nn.Dropout(0.2), nn.Tanh(),
                                           nn.Linear(2 * hidden, classes))


def _mlp_head(hidden: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(2 * hidden, classes))


class RecurrentModel(nn.Module):
    """GRU / LSTM (projected) and StackedGRU / StackedLSTM."""

    def __init__(self, s: ArchSpec):
        super().__init__()
        d = 2 if s.bidirectional else 1
        if s.family in ("GRU", "LSTM"):
            self.RNN = nn.Sequential(nn.Linear(s.input_size, s.proj_size),
                                     _rnn(s.cell, s.proj_size, s.hidden_size, s.num_layers, bool(s.bidirectional)))
        else:
            self.RNN = _rnn(s.cell, s.input_size, s.hidden_size, s.num_layers, bool(s.bidirectional))
        self.output_layers = _RNNHeadInner(d * s.hidden_size, s.hidden_size, s.num_classes)


class ScaleAwareCell(nn.Module):
    def __init__(self, chunk: int, hidden: int):
        super().__init__()
        for gate in "zrh":
            for k in "357":
                setattr(self, f"W_{gate}{k}", nn.Linear(chunk, hidden, bias=False))
            setattr(self, f"U_{gate}", nn.Linear(hidden, hidden))


class ScaleAwareGRU(nn.Module):
    def __init__(self, chunk: int, hidden: int):
        super().__init__()
        self.cell = ScaleAwareCell(chunk, hidden)


class ConvModel(nn.Module):
    """All CNN families: a single conv (`cnn`) or towers, then gru / gru1+gru2 / scale-aware cells."""

    def __init__(self, s: ArchSpec):
        super().__init__()
        F, H = s.cnn_filters, s.hidden_size
        ms3d = s.family.startswith("MS3D")
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[s.conv_dim]
        bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[s.conv_dim]
        c_in = 1 if ms3d else s.input_size
        kernels = [tuple(k) * (s.conv_dim if len(k) == 1 else 1) for k in s.tower_kernels]
        if s.family in ("CNNGRU", "CNNStackedGRU"):
            k = kernels[0]
            self.cnn = nn.Sequential(conv(c_in, F, k, padding=tuple(v // 2 for v in k)), bn(F), nn.ReLU())
            rnn_in = F
        else:
            for i, k in enumerate(kernels, start=1):
                layers = [conv(c_in, F, k, padding=tuple(v // 2 for v in k)), bn(F), nn.ReLU()]
                if s.family == "MS3DStackedGRU":
                    layers += [conv(F, F, 3, padding=1), bn(F), nn.ReLU()]
                setattr(self, f"tower{i}", nn.Sequential(*layers))
            rnn_in = len(kernels) * F
            self.cnn_post = nn.Sequential(bn(rnn_in), nn.ReLU())
        cell = s.cell or "GRU"
        if "Scale" in s.family:
            if s.family.startswith("MSCSGRU"):
                self.gru1 = ScaleAwareGRU(F, H)
                self.gru2 = ScaleAwareGRU(H, H)
            else:
                self.gru = ScaleAwareGRU(F, H)
        elif s.family in ("CNNStackedGRU", "MSCSGRU", "MS3DStackedGRU"):
            self.gru1 = _rnn(cell, rnn_in, H, 1)
            self.gru2 = _rnn(cell, H, H, s.num_layers - 1)
        else:
            self.gru = _rnn(cell, rnn_in, H, s.num_layers)
        self.output_layers = _mlp_head(H, s.num_classes)


class BasicBlock(nn.Module):
    """Pre-activation WRN block (the classic xternalz/WideResNet-pytorch layout)."""

    def __init__(self, conv, bn, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.bn1 = bn(n_in)
        self.relu1 = nn.ReLU()
        self.conv1 = conv(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(n_out)
        self.relu2 = nn.ReLU()
        self.conv2 = conv(n_out, n_out, 3, stride=1, padding=1, bias=False)
        self.equal = n_in == n_out
        self.convShortcut = None if self.equal else conv(n_in, n_out, 1, stride=stride, bias=False)


class NetworkBlock(nn.Module):
    def __init__(self, conv, bn, n: int, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[BasicBlock(conv, bn, n_in if i == 0 else n_out, n_out, stride if i == 0 else 1)
                                     for i in range(n)])


class WideResNet(nn.Module):
    def __init__(self, s: ArchSpec):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[s.conv_dim]
        bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[s.conv_dim]
        n = (s.depth - 4) // 6
        k = s.widen_factor
        w = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = conv(s.input_size, w[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(conv, bn, n, w[0], w[1], 1)
        self.block2 = NetworkBlock(conv, bn, n, w[1], w[2], 2)
        self.block3 = NetworkBlock(conv, bn, n, w[2], w[3], 2)
        self.bn1 = bn(w[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(w[3], s.num_classes)


def build(spec: ArchSpec) -> nn.Module:
    torch.manual_seed(0)
    if spec.family in ("GRU", "LSTM", "StackedGRU", "StackedLSTM"):
        return RecurrentModel(spec)
    if spec.family == "WRN":
        return WideResNet(spec)
    return ConvModel(spec)


def state_dict(spec: ArchSpec) -> dict[str, torch.Tensor]:
    """A state_dict with distinct values (so weights_sha256 tests mean something)."""
    model = build(spec)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if buf.dtype.is_floating_point:
                buf.uniform_(0.5, 1.5)
            else:
                buf.fill_(7)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save(sd: dict, path, kind: str = "lightning", prefix: str = "", hyper_parameters: dict | None = None,
         hparams_name: str | None = None, epoch: int = 3, metadata: dict | None = None):
    """Save `sd` as a Lightning-like ckpt, a plain state_dict, a wrapped dict or safetensors."""
    sd = {prefix + k: v for k, v in sd.items()}
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
        return path
    if kind == "plain":
        obj = sd
    elif kind in ("model", "model_state_dict", "net", "state_dict"):
        obj = {kind: sd, "epoch": epoch}
    else:  # lightning
        obj = {
            "epoch": epoch, "global_step": 10 * epoch, "pytorch-lightning_version": "2.2.2",
            "state_dict": sd,
            "loops": {"fit_loop": {"state_dict": {}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}": {
                "monitor": "val/loss", "best_model_score": torch.tensor(0.05 * epoch)}},
            "optimizer_states": [], "lr_schedulers": [],
        }
        if hyper_parameters is not None:
            obj["hyper_parameters"] = hyper_parameters
        if hparams_name is not None:
            obj["hparams_name"] = hparams_name
    torch.save(obj, str(path))
    return path
