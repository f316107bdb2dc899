"""The families of `../shared/spec/families.md` as torch modules (issue #3, "Zoo").

Key names, shapes and forward semantics follow the spec exactly, because the
existing checkpoints depend on them: tower order 1, 2, 3; the 1D CNN path
(transpose, towers, concat, BN, ReLU, MaxPool1d(2, 2), Dropout, transpose back);
the MS3D path (`x.view(B, T, 4, 2).unsqueeze(1)`, towers, concat, BN3d, ReLU,
MaxPool3d(pool), Dropout3d, permute(0, 2, 1, 3, 4), flatten); the *last-step*
readout of the plain recurrent families (`outputs[:, -1, :]`, padding included)
and the *valid-step* readout of the CNN families (index `n_valid - 1` of the
ORIGINAL mask, clamped to `[0, T' - 1]`; spec, "Last valid step").

Every module takes `(x, mask)`: `x` float [B, T, C] already scaled, `mask`
[B, T] with 1 = padding (or None: no padding), and returns logits [B, K].
Activations and pooling inside towers (Conv, BN, ReLU) follow the upstream
KLP-SignGlove code the checkpoints came from; they carry no weights, so the
key layout is the spec's.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError

from ckreg.families import get as _family
from ckreg.families.builtin import (BUILTIN_FAMILIES, HARD_FAMILIES, MS3D_FAMILIES, RNN_FAMILIES, SCALE_FAMILIES,
                                    SINGLE_CONV_FAMILIES, TWO_MODULE_FAMILIES)

# Readout of each family (spec, table "Families", column "readout").
#   "last":  outputs[:, -1, :]                     (padding included)
#   "valid": outputs[b, clamp(n_valid - 1, 0, T'-1)] with n_valid from the ORIGINAL mask
#   "valid-halved": clamp(trunc((n_valid - 1) / 2), 0, T'-1): what the upstream scale-aware
#   models do (MSCSGRUModels_ScaleAware.py, "MaxPool(2) 반영"). The spec's table only says
#   "valid-step" for them, but existing checkpoints of these families were trained with
#   the halved index, and reproducing their original predictions is the contract (issue #3).
READOUTS = ("last", "valid", "valid-halved", "mean")
DEFAULT_READOUT: dict[str, str] = {f: str(_family(f).readout) for f in BUILTIN_FAMILIES}  # from the records

_RNN_CLASSES = {"GRU": nn.GRU, "LSTM": nn.LSTM, "RNN": nn.RNN}


def _recurrent(cell: str | None, n_in: int, hidden: int, layers: int, *, dropout: float = 0.0,
               bidirectional: bool = False) -> nn.Module:
    cls = _RNN_CLASSES[cell or "GRU"]
    return cls(n_in, hidden, num_layers=layers, batch_first=True,
               dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)


def _run(rnn: nn.Module, x: Tensor) -> Tensor:
    out, _ = rnn(x)
    return out


def readout(outputs: Tensor, mask: Tensor | None, mode: str) -> Tensor:
    """Pick one step of `outputs` [B, T', H] per sequence (spec, "Last valid step").

    `valid`: index n_valid - 1 where n_valid counts the unpadded steps of the
    ORIGINAL input (mask == 0), not divided by any pooling factor, clamped to
    [0, T' - 1]. Without a mask every step is valid, so this is the last step.
    """
    if mode == "last" or mask is None:
        return outputs[:, -1, :]
    n_valid = (mask == 0).sum(dim=1).long()
    idx = n_valid - 1
    if mode == "valid-halved":      # upstream ScaleAware: (valid_lengths / 2).long(), truncation toward 0
        idx = torch.div(idx, 2, rounding_mode="trunc")
    elif mode != "valid":
        raise ValueError(f"unknown readout {mode!r}")
    idx = idx.clamp(min=0, max=outputs.size(1) - 1)
    return outputs[torch.arange(outputs.size(0), device=outputs.device), idx]


def _check_mask(x: Tensor, mask: Tensor | None) -> None:
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask must be [B, T] = {list(x.shape[:2])}, got {list(mask.shape)}")


class RNNHead(nn.Module):
    """`rnn_head`: output_layers.output_layers.{0,3} = Linear(n_in, 2H), Dropout, Tanh, Linear(2H, K)."""

    def __init__(self, n_in: int, hidden: int, classes: int, dropout: float):
        super().__init__()
        self.output_layers = nn.Sequential(
            nn.Linear(n_in, 2 * hidden), nn.Dropout(dropout), nn.Tanh(), nn.Linear(2 * hidden, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.output_layers(x)


def mlp_head(hidden: int, classes: int, dropout: float) -> nn.Sequential:
    """`mlp_head`: output_layers.{0,3} = Linear(H, 2H), ReLU, Dropout, Linear(2H, K)."""
    return nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * hidden, classes))


class ZooModule(nn.Module):
    """Common base: keeps the spec and the readout mode (changeable: `module.readout = ...`)."""

    def __init__(self, spec: ArchSpec, readout: str | None = None):
        super().__init__()
        self.spec = spec
        mode = readout or DEFAULT_READOUT[spec.family]
        if mode not in READOUTS:
            raise SpecError(f"unknown readout {mode!r}", hint=f"one of {', '.join(READOUTS)}")
        self.readout = mode

    def extra_repr(self) -> str:
        return f"family={self.spec.family}, readout={self.readout}"


class RecurrentClassifier(ZooModule):
    """GRU, LSTM (`RNN.0` Linear(C, proj), `RNN.1` recurrent stack), StackedGRU, StackedLSTM (`RNN`)."""

    def __init__(self, spec: ArchSpec, readout: str | None = None):
        super().__init__(spec, readout)
        H, L = spec.hidden_size, spec.num_layers
        bi = bool(spec.bidirectional)
        drop = float(spec.dropout or 0.0)
        cell = spec.cell or ("LSTM" if "LSTM" in spec.family else "GRU")
        if spec.family in ("GRU", "LSTM"):
            # upstream: dense projection, then the stack without inter-layer dropout
            self.RNN = nn.Sequential(nn.Linear(spec.input_size, spec.proj_size),
                                     _recurrent(cell, spec.proj_size, H, L, bidirectional=bi))
        else:
            self.RNN = _recurrent(cell, spec.input_size, H, L, dropout=drop, bidirectional=bi)
        self.output_layers = RNNHead(H * (2 if bi else 1), H, spec.num_classes, drop)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_mask(x, mask)
        if isinstance(self.RNN, nn.Sequential):
            out = _run(self.RNN[1], self.RNN[0](x))
        else:
            out = _run(self.RNN, x)
        return self.output_layers(readout(out, mask, self.readout))


class ScaleAwareGRUCell(nn.Module):
    """One step of the scale-aware GRU (spec, "Scale-aware cell"); hard=True for ScaleHard.

    Parameters are named per gate then chunk: W_z3, W_z5, W_z7 (no bias), U_z, W_r*, U_r, W_h*, U_h.
    """

    def __init__(self, chunk_in: int, hidden: int, hard: bool = False):
        super().__init__()
        self.chunk_in, self.hidden_size, self.hard = chunk_in, hidden, hard
        for gate in "zrh":
            for chunk in "357":
                setattr(self, f"W_{gate}{chunk}", nn.Linear(chunk_in, hidden, bias=False))
            setattr(self, f"U_{gate}", nn.Linear(hidden, hidden))

    def input_terms(self, t3: Tensor, t5: Tensor, t7: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """W_g3 t3 + W_g5 t5 + W_g7 t7 for g = z, r, h (for all steps at once)."""
        return tuple(getattr(self, f"W_{g}3")(t3) + getattr(self, f"W_{g}5")(t5) + getattr(self, f"W_{g}7")(t7)
                     for g in "zrh")  # type: ignore[return-value]

    def step(self, wz: Tensor, wr: Tensor, wh: Tensor, h: Tensor) -> Tensor:
        sig = F.hardsigmoid if self.hard else torch.sigmoid
        tanh = F.hardtanh if self.hard else torch.tanh
        z = sig(wz + self.U_z(h))
        r = sig(wr + self.U_r(h))
        h_tilde = tanh(wh + self.U_h(r * h))
        return (1 - z) * h + z * h_tilde

    def forward(self, t3: Tensor, t5: Tensor, t7: Tensor, h: Tensor) -> Tensor:
        return self.step(*self.input_terms(t3, t5, t7), h)


class ScaleAwareGRU(nn.Module):
    """The cell over a sequence: input [B, T, 3 * chunk] split into t3, t5, t7; returns [B, T, H]."""

    def __init__(self, chunk_in: int, hidden: int, hard: bool = False):
        super().__init__()
        self.cell = ScaleAwareGRUCell(chunk_in, hidden, hard)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B, T, _ = x.shape
        c = self.cell.chunk_in
        if x.shape[-1] != 3 * c:
            raise ValueError(f"scale-aware GRU expects 3 x {c} features, got {x.shape[-1]}")
        wz, wr, wh = self.cell.input_terms(x[..., :c], x[..., c:2 * c], x[..., 2 * c:])
        h = x.new_zeros(B, self.cell.hidden_size) if h0 is None else h0
        outs = []
        for t in range(T):
            h = self.cell.step(wz[:, t], wr[:, t], wh[:, t], h)
            outs.append(h)
        return torch.stack(outs, dim=1), h


class ConvRecurrentClassifier(ZooModule):
    """CNNGRU, CNNStackedGRU, MSCGRU, MSCSGRU, MS3DGRU, MS3DStackedGRU and the scale-aware families."""

    def __init__(self, spec: ArchSpec, readout: str | None = None):
        super().__init__(spec, readout)
        fam = spec.family
        H, L, Fn, dim = spec.hidden_size, spec.num_layers, spec.cnn_filters, spec.conv_dim
        drop = float(spec.dropout or 0.0)
        self.ms3d = fam in MS3D_FAMILIES
        kernels = _kernels(spec, 3 if self.ms3d else 1)
        if self.ms3d:
            if spec.input_size != 8:
                raise SpecError(f"{fam} reshapes each step's channels to a 4 x 2 grid, so it needs input_size = 8 "
                                f"(flex1..flex5, pitch, roll, yaw), got {spec.input_size}",
                                hint="use a 1D family (e.g. MSCSGRU) for other channel counts")
            pool = tuple(int(p) for p in (spec.pool or ((2, 4, 2) if fam == "MS3DGRU" else (1, 4, 2))))
            if len(pool) != 3 or any(p < 1 for p in pool) or pool[1] > 4 or pool[2] > 2:
                raise SpecError(f"{fam}: pool {list(pool)} does not fit the [T, 4, 2] grid")
            self.pool = pool
            conv, bn, conv_in = nn.Conv3d, nn.BatchNorm3d, 1
        else:
            if dim not in (None, 1):
                raise SpecError(f"{fam} is a 1D convolutional family, conv_dim must be 1, got {dim}")
            self.pool = (2,)
            conv, bn, conv_in = nn.Conv1d, nn.BatchNorm1d, spec.input_size

        def block(k: tuple[int, ...]) -> list[nn.Module]:
            return [conv(conv_in, Fn, k, padding=tuple(v // 2 for v in k)), bn(Fn), nn.ReLU()]

        if fam in SINGLE_CONV_FAMILIES:
            if len(kernels) != 1:
                raise SpecError(f"{fam} has one convolution, got {len(kernels)} tower kernels")
            self.towers: list[str] = []
            self.cnn = nn.Sequential(*block(kernels[0]), nn.MaxPool1d(2, 2), nn.Dropout(drop))
            rnn_in = Fn
        else:
            if fam in SCALE_FAMILIES and len(kernels) != 3:
                raise SpecError(f"{fam} splits its input into three chunks (t3, t5, t7), so it needs 3 towers, "
                                f"got {len(kernels)}")
            self.towers = []
            for i, k in enumerate(kernels, start=1):
                layers = block(k)
                if fam == "MS3DStackedGRU":
                    layers += [nn.Conv3d(Fn, Fn, 3, padding=1), nn.BatchNorm3d(Fn), nn.ReLU()]
                setattr(self, f"tower{i}", nn.Sequential(*layers))
                self.towers.append(f"tower{i}")
            n_feat = len(kernels) * Fn
            if self.ms3d:
                self.cnn_post = nn.Sequential(bn(n_feat), nn.ReLU(), nn.MaxPool3d(self.pool), nn.Dropout3d(drop))
                rnn_in = n_feat * (4 // self.pool[1]) * (2 // self.pool[2])
            else:
                self.cnn_post = nn.Sequential(bn(n_feat), nn.ReLU(), nn.MaxPool1d(2, 2), nn.Dropout(drop))
                rnn_in = n_feat

        self.scale = fam in SCALE_FAMILIES
        hard = fam in HARD_FAMILIES
        self.two = fam in TWO_MODULE_FAMILIES
        if self.scale:
            want = 2 if self.two else 1
            if L != want:
                raise SpecError(f"{fam} has {want} scale-aware cell(s), so num_layers = {want}, got {L}")
            if (spec.cell or "GRU") != "GRU":
                raise SpecError(f"{fam} is built from GRU cells, got cell={spec.cell}")
            if self.two:
                self.gru1 = ScaleAwareGRU(Fn, H, hard)
                self.gru2 = ScaleAwareGRU(H, H, hard)
            else:
                self.gru = ScaleAwareGRU(Fn, H, hard)
        elif self.two:
            if L < 2:
                raise SpecError(f"{fam} stacks gru1 and gru2, so num_layers >= 2, got {L}")
            self.gru1 = _recurrent(spec.cell, rnn_in, H, 1)
            self.gru2 = _recurrent(spec.cell, H, H, L - 1, dropout=drop)
        else:
            self.gru = _recurrent(spec.cell, rnn_in, H, L, dropout=drop)
        self.dropout = nn.Dropout(drop)
        self.output_layers = mlp_head(H, spec.num_classes, drop)

    def features(self, x: Tensor) -> Tensor:
        """The convolutional front end: [B, T, C] -> [B, T', features]."""
        B, T, C = x.shape
        if self.ms3d:
            if C != 8:
                raise ValueError(f"{self.spec.family} needs 8 channels per step, got {C}")
            z = x.reshape(B, T, 4, 2).unsqueeze(1)                       # [B, 1, T, 4, 2]
            z = torch.cat([getattr(self, t)(z) for t in self.towers], dim=1)
            z = self.cnn_post(z)                                          # [B, nF, T', h, w]
            z = z.permute(0, 2, 1, 3, 4)
            return z.reshape(B, z.size(1), -1)
        z = x.transpose(1, 2)                                             # [B, C, T]
        if self.towers:
            z = self.cnn_post(torch.cat([getattr(self, t)(z) for t in self.towers], dim=1))
        else:
            z = self.cnn(z)
        return z.transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_mask(x, mask)
        if x.shape[-1] != self.spec.input_size:
            raise ValueError(f"{self.spec.family} expects {self.spec.input_size} channels, got {x.shape[-1]}")
        z = self.features(x)
        if self.scale and self.two:
            h1, _ = self.gru1(z)
            h1 = self.dropout(h1)
            out, _ = self.gru2(h1.repeat(1, 1, 3))      # gru2 sees gru1's output as each chunk
        elif self.scale:
            out, _ = self.gru(z)
        elif self.two:
            out = _run(self.gru2, self.dropout(_run(self.gru1, z)))
        else:
            out = _run(self.gru, z)
        feat = self.dropout(readout(out, mask, self.readout))
        return self.output_layers(feat)


def _kernels(spec: ArchSpec, n_dims: int) -> list[tuple[int, ...]]:
    if not spec.tower_kernels:
        raise SpecError(f"{spec.family} needs tower_kernels")
    out = []
    for k in spec.tower_kernels:
        k = tuple(int(v) for v in k)
        if len(k) == 1 and n_dims > 1:
            k = k * n_dims
        if len(k) != n_dims or any(v < 1 for v in k):
            raise SpecError(f"{spec.family}: tower kernel {list(k)} does not fit Conv{n_dims}d")
        if any(v % 2 == 0 for v in k):
            raise SpecError(f"{spec.family}: tower kernel {list(k)} must be odd (padding k // 2 keeps the length)")
        out.append(k)
    return out


class WideBasicBlock(nn.Module):
    """Pre-activation block (BN, ReLU, conv) x 2, 1-wide `convShortcut` where in != out."""

    def __init__(self, conv, bn, n_in: int, n_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = bn(n_in)
        self.conv1 = conv(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(n_out)
        self.conv2 = conv(n_out, n_out, 3, stride=1, padding=1, bias=False)
        self.equal = n_in == n_out
        self.convShortcut = None if self.equal else conv(n_in, n_out, 1, stride=stride, padding=0, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(a)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal else self.convShortcut(a))


class WideGroup(nn.Module):
    def __init__(self, conv, bn, n: int, n_in: int, n_out: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(*[WideBasicBlock(conv, bn, n_in if i == 0 else n_out, n_out,
                                                    stride if i == 0 else 1, dropout) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(ZooModule):
    """WRN-d-k, 1D (raw signals [B, T, C]) or 2D (images [B, C, H, W], e.g. Gramian Angular Fields)."""

    def __init__(self, spec: ArchSpec, readout: str | None = None):
        super().__init__(spec, readout)
        depth, k, dim = spec.depth, spec.widen_factor, spec.conv_dim
        if depth is None or depth < 10 or (depth - 4) % 6:
            raise SpecError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if dim not in (1, 2):
            raise SpecError(f"WRN is 1D or 2D, got conv_dim={dim}")
        n = (depth - 4) // 6
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        widths = (16, 16 * k, 32 * k, 64 * k)
        drop = float(spec.dropout or 0.0)
        self.conv1 = conv(spec.input_size, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = WideGroup(conv, bn, n, widths[0], widths[1], 1, drop)
        self.block2 = WideGroup(conv, bn, n, widths[1], widths[2], 2, drop)
        self.block3 = WideGroup(conv, bn, n, widths[2], widths[3], 2, drop)
        self.bn1 = bn(widths[3])
        self.fc = nn.Linear(widths[3], spec.num_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.spec.conv_dim == 1:
            if x.dim() != 3:
                raise ValueError(f"1D WRN expects [B, T, C], got {list(x.shape)}")
            z = x.transpose(1, 2)
        else:
            if x.dim() != 4:
                raise ValueError(f"2D WRN expects images [B, C, H, W], got {list(x.shape)}")
            z = x
        z = self.block3(self.block2(self.block1(self.conv1(z))))
        z = F.relu(self.bn1(z))
        z = z.flatten(2).mean(dim=2)          # global average pool
        return self.fc(z)


def model_class(family: str) -> type[ZooModule]:
    if family in RNN_FAMILIES:
        return RecurrentClassifier
    if family == "WRN":
        return WideResNet
    return ConvRecurrentClassifier


__all__ = ["RecurrentClassifier", "ConvRecurrentClassifier", "WideResNet", "ScaleAwareGRU", "ScaleAwareGRUCell",
           "RNNHead", "mlp_head", "readout", "model_class", "DEFAULT_READOUT", "READOUTS"]
