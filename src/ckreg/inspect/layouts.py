"""Expected state_dict layouts of every family in `../shared/spec/families.md`.

`expected_layout(spec)` lists every key and shape a family implies, in module
order (the order `nn.Module.state_dict()` yields them), so the inspector can
validate a file against it and the zoo can test its modules against it
(issue #2: "a validation that re-derives every expected shape"; issue #3:
`build(spec_from_inspection)` loads strictly). Torch-free by design.

Readings of the spec where it leaves room (see docs/inspect.md, "Readings"):

- Bidirectional recurrent families (GRU, LSTM, StackedGRU, StackedLSTM): the
  head's first Linear takes the last step's full output, `Linear(D*H, 2H)`
  with D = 2 when bidirectional; the head's hidden width stays 2H.
- Two-module CNN families (`gru1`, `gru2`): `gru1` holds one layer and `gru2`
  the remaining `num_layers - 1`; one-module families put all layers in `gru`.
- Scale-aware cells: `W_{z,r,h}{3,5,7}` are named after the chunks t3, t5, t7
  (three towers, whatever their kernels); `gru2`'s W are [H, H] as the spec
  says literally (`gru2` receives the gru1 output as each chunk), which the
  reference count 95,992 confirms. Module order is gate by gate:
  `W_z3, W_z5, W_z7, U_z, W_r3, ..., U_h`.
- MS3D families: towers take one input channel (the [B, 1, T, 4, 2] reshape);
  `input_size` is 8 by construction and does not appear in any shape.
- WRN (the classic WideResNet): block module order `bn1, conv1, bn2, conv2,
  convShortcut`; `convShortcut` only where in != out; first group's first
  block maps 16 -> 16k.
"""

from __future__ import annotations

import math
from typing import Iterable

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError

Shape = tuple[int, ...]
Layout = dict[str, Shape]

# Rows of weight_ih / weight_hh per hidden unit (spec, "Recurrent stack").
GATES: dict[str, int] = {"RNN": 1, "GRU": 3, "LSTM": 4}

# Names that are buffers, not parameters (BatchNorm running stats and counter).
BUFFER_SUFFIXES: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")

# Scale-aware cells: gates and chunk labels (spec, "Scale-aware cell").
SCALE_GATES = ("z", "r", "h")
SCALE_CHUNKS = ("3", "5", "7")

RNN_FAMILIES = ("GRU", "LSTM", "StackedGRU", "StackedLSTM")
CNN_1D_FAMILIES = ("CNNGRU", "CNNStackedGRU", "MSCGRU", "MSCSGRU",
                   "MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware")
MS3D_FAMILIES = ("MS3DGRU", "MS3DStackedGRU")
SCALE_FAMILIES = ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware")
TWO_MODULE_FAMILIES = ("CNNStackedGRU", "MSCSGRU", "MS3DStackedGRU", "MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard")
TOWER_FAMILIES = ("MSCGRU", "MSCSGRU", "MS3DGRU", "MS3DStackedGRU") + SCALE_FAMILIES


def is_buffer_name(name: str) -> bool:
    """True for BatchNorm running statistics and counters (buffers, not parameters)."""
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


# -- building blocks ---------------------------------------------------------

def _linear(out: Layout, prefix: str, n_in: int, n_out: int, bias: bool = True) -> None:
    out[f"{prefix}.weight"] = (n_out, n_in)
    if bias:
        out[f"{prefix}.bias"] = (n_out,)


def _conv(out: Layout, prefix: str, n_in: int, n_out: int, kernel: Iterable[int], bias: bool = True) -> None:
    out[f"{prefix}.weight"] = (n_out, n_in, *kernel)
    if bias:
        out[f"{prefix}.bias"] = (n_out,)


def _batchnorm(out: Layout, prefix: str, n: int) -> None:
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        out[f"{prefix}.{suffix}"] = (n,)
    out[f"{prefix}.num_batches_tracked"] = ()


def _recurrent(out: Layout, prefix: str, cell: str, n_in: int, hidden: int, layers: int,
               bidirectional: bool = False) -> None:
    """nn.GRU / nn.LSTM / nn.RNN keys in PyTorch's own order (layer, then direction)."""
    rows = GATES[cell] * hidden
    directions = ("", "_reverse") if bidirectional else ("",)
    width = hidden * len(directions)
    for layer in range(layers):
        layer_in = n_in if layer == 0 else width
        for sfx in directions:
            out[f"{prefix}.weight_ih_l{layer}{sfx}"] = (rows, layer_in)
            out[f"{prefix}.weight_hh_l{layer}{sfx}"] = (rows, hidden)
            out[f"{prefix}.bias_ih_l{layer}{sfx}"] = (rows,)
            out[f"{prefix}.bias_hh_l{layer}{sfx}"] = (rows,)


def _scale_cell(out: Layout, prefix: str, chunk_in: int, hidden: int) -> None:
    for gate in SCALE_GATES:
        for chunk in SCALE_CHUNKS:
            out[f"{prefix}.W_{gate}{chunk}.weight"] = (hidden, chunk_in)
        _linear(out, f"{prefix}.U_{gate}", hidden, hidden)


def _rnn_head(out: Layout, n_in: int, hidden: int, classes: int) -> None:
    _linear(out, "output_layers.output_layers.0", n_in, 2 * hidden)
    _linear(out, "output_layers.output_layers.3", 2 * hidden, classes)


def _mlp_head(out: Layout, hidden: int, classes: int) -> None:
    _linear(out, "output_layers.0", hidden, 2 * hidden)
    _linear(out, "output_layers.3", 2 * hidden, classes)


def _need(spec: ArchSpec, *names: str) -> None:
    missing = [n for n in names if getattr(spec, n) is None]
    if missing:
        raise SpecError(f"{spec.family} needs {', '.join(missing)} to derive its layout")


def _positive(spec: ArchSpec, *names: str) -> None:
    for n in names:
        value = getattr(spec, n)
        if value is not None and not isinstance(value, (bool, list)) and int(value) < 1:
            raise SpecError(f"{spec.family}: {n} must be >= 1, got {value}")


# -- families ----------------------------------------------------------------

def _layout_rnn(spec: ArchSpec) -> Layout:
    _need(spec, "hidden_size", "num_layers", "cell")
    out: Layout = {}
    H, L = spec.hidden_size, spec.num_layers
    bi = bool(spec.bidirectional)
    if spec.family in ("GRU", "LSTM"):
        _need(spec, "proj_size")
        _linear(out, "RNN.0", spec.input_size, spec.proj_size)
        _recurrent(out, "RNN.1", spec.cell, spec.proj_size, H, L, bi)
    else:
        _recurrent(out, "RNN", spec.cell, spec.input_size, H, L, bi)
    _rnn_head(out, H * (2 if bi else 1), H, spec.num_classes)
    return out


def _kernels(spec: ArchSpec, n_dims: int) -> list[Shape]:
    _need(spec, "tower_kernels")
    kernels = []
    for k in spec.tower_kernels:
        k = tuple(int(v) for v in k)
        if len(k) == 1 and n_dims > 1:
            k = k * n_dims  # "k" in the spec means (k, k, k) for Conv3d
        if len(k) != n_dims or any(v < 1 for v in k):
            raise SpecError(f"{spec.family}: tower kernel {list(k)} does not fit Conv{n_dims}d")
        kernels.append(k)
    if not kernels:
        raise SpecError(f"{spec.family}: tower_kernels is empty")
    return kernels


def _layout_cnn(spec: ArchSpec) -> Layout:
    _need(spec, "hidden_size", "num_layers", "cnn_filters", "conv_dim", "tower_kernels")
    fam = spec.family
    H, L, F, dim = spec.hidden_size, spec.num_layers, spec.cnn_filters, spec.conv_dim
    kernels = _kernels(spec, dim)
    out: Layout = {}
    ms3d = fam in MS3D_FAMILIES
    conv_in = 1 if ms3d else spec.input_size
    if fam in ("CNNGRU", "CNNStackedGRU"):
        if len(kernels) != 1:
            raise SpecError(f"{fam} has one convolution, got {len(kernels)} tower kernels")
        _conv(out, "cnn.0", conv_in, F, kernels[0])
        _batchnorm(out, "cnn.1", F)
        rnn_in = F
    else:
        if fam in SCALE_FAMILIES and len(kernels) != len(SCALE_CHUNKS):
            raise SpecError(f"{fam} has exactly {len(SCALE_CHUNKS)} towers, got {len(kernels)}")
        for i, k in enumerate(kernels, start=1):
            _conv(out, f"tower{i}.0", conv_in, F, k)
            _batchnorm(out, f"tower{i}.1", F)
            if fam == "MS3DStackedGRU":
                _conv(out, f"tower{i}.3", F, F, (3,) * dim)
                _batchnorm(out, f"tower{i}.4", F)
        rnn_in = len(kernels) * F
        _batchnorm(out, "cnn_post.0", rnn_in)
    cell = spec.cell or "GRU"
    if fam in SCALE_FAMILIES:
        want = 2 if fam in TWO_MODULE_FAMILIES else 1
        if L != want:
            raise SpecError(f"{fam} has {want} scale-aware cell(s), so num_layers={want}, got {L}")
        if fam in TWO_MODULE_FAMILIES:
            _scale_cell(out, "gru1.cell", F, H)
            _scale_cell(out, "gru2.cell", H, H)
        else:
            _scale_cell(out, "gru.cell", F, H)
    elif fam in TWO_MODULE_FAMILIES:
        if L < 2:
            raise SpecError(f"{fam} stacks gru1 and gru2, so num_layers >= 2, got {L}")
        _recurrent(out, "gru1", cell, rnn_in, H, 1)
        _recurrent(out, "gru2", cell, H, H, L - 1)
    else:
        _recurrent(out, "gru", cell, rnn_in, H, L)
    _mlp_head(out, H, spec.num_classes)
    return out


def wrn_groups(depth: int) -> int:
    """Blocks per group n of WRN-d-k (d = 6n + 4)."""
    if depth < 10 or (depth - 4) % 6:
        raise SpecError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    return (depth - 4) // 6


def _layout_wrn(spec: ArchSpec) -> Layout:
    _need(spec, "depth", "widen_factor", "conv_dim")
    n = wrn_groups(spec.depth)
    k, dim = spec.widen_factor, spec.conv_dim
    widths = (16, 16 * k, 32 * k, 64 * k)
    out: Layout = {}
    _conv(out, "conv1", spec.input_size, widths[0], (3,) * dim, bias=False)
    for g in range(3):
        n_in, n_out = widths[g], widths[g + 1]
        for i in range(n):
            inp = n_in if i == 0 else n_out
            p = f"block{g + 1}.layer.{i}"
            _batchnorm(out, f"{p}.bn1", inp)
            _conv(out, f"{p}.conv1", inp, n_out, (3,) * dim, bias=False)
            _batchnorm(out, f"{p}.bn2", n_out)
            _conv(out, f"{p}.conv2", n_out, n_out, (3,) * dim, bias=False)
            if inp != n_out:
                _conv(out, f"{p}.convShortcut", inp, n_out, (1,) * dim, bias=False)
    _batchnorm(out, "bn1", widths[3])
    _linear(out, "fc", widths[3], spec.num_classes)
    return out


def expected_layout(spec: ArchSpec) -> dict[str, Shape]:
    """Every state_dict key and shape `spec` implies, in module order.

    Raises SpecError when the spec cannot describe a model of its family
    (missing hyperparameters, a depth that is not 6n + 4, a scale-aware family
    with a layer count other than its cells').
    """
    _positive(spec, "input_size", "num_classes", "hidden_size", "num_layers", "proj_size",
              "cnn_filters", "depth", "widen_factor")
    if spec.family in RNN_FAMILIES:
        return _layout_rnn(spec)
    if spec.family == "WRN":
        return _layout_wrn(spec)
    return _layout_cnn(spec)


def layout_counts(layout: dict[str, Shape]) -> tuple[int, int]:
    """(parameter elements, buffer elements) of a layout."""
    params = buffers = 0
    for name, shape in layout.items():
        n = math.prod(shape) if shape else 1
        if is_buffer_name(name):
            buffers += n
        else:
            params += n
    return params, buffers


def param_counts(spec: ArchSpec) -> tuple[int, int]:
    """(parameters, buffer elements) of `spec`; e.g. MS3DGRU at the defaults: (58840, 388)."""
    return layout_counts(expected_layout(spec))


__all__ = ["expected_layout", "param_counts", "layout_counts", "is_buffer_name", "wrn_groups",
           "GATES", "BUFFER_SUFFIXES", "RNN_FAMILIES", "CNN_1D_FAMILIES", "MS3D_FAMILIES",
           "SCALE_FAMILIES", "TWO_MODULE_FAMILIES", "TOWER_FAMILIES"]
