"""The 14 built-in families of the spec (`../shared/spec/families.md`) as registry records.

Each family is registered once, with `@register_family`, from the pieces below:
its layout function (every key and shape in module order, the family's ONE
layout description: detection validates against it, parameter counts and
manifest expectations come from it), its detector (signature + inference with
evidence), its hyperparameters with the spec's defaults (C=8, H=64, K=24, F=32;
towers 3, 5, 7), what the weights cannot show, its readout and its builder.

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

Torch-free; layout functions read a spec-like object (`spec.hidden_size`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from ckreg.errors import SpecError
from ckreg.families.detect import Ctx, Detector
from ckreg.families.expr import Derived
from ckreg.families.names import braces, fmt_kernel, fmt_shape
from ckreg.families.record import Family
from ckreg.families.registry import register_family

Shape = tuple[int, ...]
Layout = dict[str, Shape]

# Rows of weight_ih / weight_hh per hidden unit (spec, "Recurrent stack").
GATES: dict[str, int] = {"RNN": 1, "GRU": 3, "LSTM": 4}

# Scale-aware cells: gates and chunk labels (spec, "Scale-aware cell").
SCALE_GATES = ("z", "r", "h")
SCALE_CHUNKS = ("3", "5", "7")

# Groups of built-in families (the one definition; zoo, trainer and inspector import these).
RNN_FAMILIES = ("GRU", "LSTM", "StackedGRU", "StackedLSTM")
SINGLE_CONV_FAMILIES = ("CNNGRU", "CNNStackedGRU")
CNN_1D_FAMILIES = ("CNNGRU", "CNNStackedGRU", "MSCGRU", "MSCSGRU",
                   "MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware")
MS3D_FAMILIES = ("MS3DGRU", "MS3DStackedGRU")
MS3D_CHANNELS = 8   # the [B, T, 8] -> [B, 1, T, 4, 2] reshape (spec, "Forward details")
SCALE_FAMILIES = ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware")
HARD_FAMILIES = ("MSCSGRU_ScaleHard",)
TWO_MODULE_FAMILIES = ("CNNStackedGRU", "MSCSGRU", "MS3DStackedGRU", "MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard")
TOWER_FAMILIES = ("MSCGRU", "MSCSGRU", "MS3DGRU", "MS3DStackedGRU") + SCALE_FAMILIES

_CELL_OF_GATES = {g: cell for cell, g in GATES.items()}
_LAYER_KEY = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")


# -- layouts (building blocks, then the three layout functions) --------------------------------

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


def _need(spec: Any, *names: str) -> None:
    missing = [n for n in names if getattr(spec, n) is None]
    if missing:
        raise SpecError(f"{spec.family} needs {', '.join(missing)} to derive its layout")


def _positive(spec: Any, *names: str) -> None:
    for n in names:
        value = getattr(spec, n)
        if value is not None and not isinstance(value, (bool, list)) and int(value) < 1:
            raise SpecError(f"{spec.family}: {n} must be >= 1, got {value}")


# -- families ----------------------------------------------------------------

def _layout_rnn(spec: Any) -> Layout:
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


def _kernels(spec: Any, n_dims: int) -> list[Shape]:
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


def _layout_cnn(spec: Any) -> Layout:
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


def _layout_wrn(spec: Any) -> Layout:
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



# -- detectors ---------------------------------------------------------------------------------

@dataclass
class Stack:
    prefix: str
    input: int
    hidden: int
    layers: int
    cell: str | None
    bidirectional: bool
    ih_shape: tuple[int, ...] = ()


def recurrent_stack(ctx: Ctx, prefix: str, *, say_hidden: bool = True, say_layers: bool = True,
                    say_cell: bool = True) -> Stack | None:
    """Read an nn.GRU/LSTM/RNN under `prefix`: hidden from weight_hh_l0, cell from gate rows."""
    ih = ctx.dims(f"{prefix}.weight_ih_l0", ndim=2)
    hh = ctx.dims(f"{prefix}.weight_hh_l0", ndim=2)
    if ih is None or hh is None:
        return None
    rows, hidden = hh
    if hidden < 1:
        ctx.fail(f"{prefix}.weight_hh_l0 {fmt_shape(hh)} has no hidden units")
        return None
    layers = sorted({int(m.group(1)) for k in ctx.shapes if k.startswith(prefix + ".")
                     and (m := _LAYER_KEY.match(k[len(prefix) + 1:])) and not m.group(2)})
    n_layers = max(layers) + 1
    if layers != list(range(n_layers)):
        ctx.fail(f"{prefix}: layer indices weight_ih_l{braces(layers)} are not contiguous from 0")
    bidirectional = f"{prefix}.weight_ih_l0_reverse" in ctx.shapes
    cell = _CELL_OF_GATES.get(rows // hidden) if rows % hidden == 0 else None
    if say_hidden:
        ctx.say(f"hidden_size={hidden} from {prefix}.weight_hh_l0 {fmt_shape(hh)}")
    if cell is None:
        ctx.fail(f"{prefix}: gate rows {rows} are not 1, 3 or 4 x hidden {hidden} (RNN, GRU, LSTM)")
    elif say_cell:
        ctx.say(f"cell={cell}: gate rows {rows} = {GATES[cell]} x {hidden}")
    if say_layers:
        ctx.say(f"num_layers={n_layers} from {prefix}.weight_ih_l{braces(layers)}")
    return Stack(prefix, ih[1], hidden, n_layers, cell, bidirectional, ih)


def _classes(ctx: Ctx, key: str) -> int | None:
    w = ctx.dims(key, ndim=2)
    if w is None:
        return None
    ctx.say(f"num_classes={w[0]} from {key} {fmt_shape(w)}")
    return w[0]


class RecurrentDetector(Detector):
    """GRU / LSTM (`RNN.0` Linear + `RNN.1` recurrent) and StackedGRU / StackedLSTM (`RNN` recurrent)."""

    def __init__(self, family: str, projected: bool, cells: tuple[str, ...]):
        self.family = family
        self.projected = projected
        self.cells = cells
        self.prefix = "RNN.1" if projected else "RNN"
        self.signature = (("RNN.0.weight",) if projected else ()) + (
            f"{self.prefix}.weight_ih_l0", f"{self.prefix}.weight_hh_l0")

    def infer(self, ctx: Ctx) -> dict[str, Any]:
        hyper: dict[str, Any] = {}
        st = recurrent_stack(ctx, self.prefix)
        if self.projected:
            w = ctx.dims("RNN.0.weight", ndim=2)
            if w is not None:
                hyper["input_size"], hyper["proj_size"] = w[1], w[0]
                ctx.say(f"input_size={w[1]} from RNN.0.weight {fmt_shape(w)}")
                ctx.say(f"proj_size={w[0]} from RNN.0.weight {fmt_shape(w)}")
        elif st is not None:
            hyper["input_size"] = st.input
            ctx.say(f"input_size={st.input} from {self.prefix}.weight_ih_l0 {fmt_shape(st.ih_shape)}")
        if st is not None:
            hyper.update(hidden_size=st.hidden, num_layers=st.layers, cell=st.cell, bidirectional=st.bidirectional)
            ctx.say(f"bidirectional=True from {self.prefix}.weight_ih_l0_reverse" if st.bidirectional
                    else f"bidirectional=False: no {self.prefix}.*_reverse keys")
            if st.cell not in self.cells:
                if st.cell is not None:
                    ctx.fail(f"cell={st.cell} does not fit {self.family} (cell {' or '.join(self.cells)})")
                ctx.force["cell"] = self.cells[0]
        hyper["num_classes"] = _classes(ctx, "output_layers.output_layers.3.weight")
        return hyper


class ConvRecurrentDetector(Detector):
    """The CNN families: `cnn.*` or `tower{i}.*` convolutions, then `gru` or `gru1` + `gru2` (or scale-aware cells)."""

    def __init__(self, family: str):
        self.family = family
        self.single_conv = family in ("CNNGRU", "CNNStackedGRU")
        self.ms3d = family in MS3D_FAMILIES
        self.scale = family in SCALE_FAMILIES
        self.two = family in TWO_MODULE_FAMILIES
        conv = ("cnn.0.weight",) if self.single_conv else ("tower1.0.weight",)
        if self.scale:
            rec = ("gru1.cell.U_z.weight", "gru2.cell.U_z.weight") if self.two else ("gru.cell.U_z.weight",)
        else:
            rec = ("gru1.weight_ih_l0", "gru2.weight_ih_l0") if self.two else ("gru.weight_ih_l0",)
        self.signature = conv + rec

    # -- convolutions --
    def _convs(self, ctx: Ctx, hyper: dict[str, Any]) -> None:
        if self.single_conv:
            labels = ["cnn.0"]
        else:
            labels, i = [], 1
            while f"tower{i}.0.weight" in ctx.shapes:
                labels.append(f"tower{i}.0")
                i += 1
        shapes = []
        for label in labels:
            w = ctx.dims(f"{label}.weight", min_ndim=3)
            if w is None:
                return
            shapes.append(w)
        first = shapes[0]
        filters, in_ch, dim = first[0], first[1], len(first) - 2
        hyper["cnn_filters"] = filters
        ctx.say(f"cnn_filters={filters} from {labels[0]}.weight {fmt_shape(first)}")
        ctx.say(f"conv_dim={dim}: {labels[0]}.weight has {dim} kernel dim{'s' if dim > 1 else ''} (Conv{dim}d)")
        kernels = [list(w[2:]) for w in shapes]
        for label, w in zip(labels, shapes):
            name = label.split(".")[0]
            ctx.say(f"{name} kernel {fmt_kernel(w[2:])} from {label}.weight {fmt_shape(w)}")
            if w[0] != filters:
                ctx.fail(f"{label}.weight {fmt_shape(w)}: {w[0]} filters, {labels[0]} has {filters}")
        hyper["tower_kernels"] = kernels
        hyper["conv_dim"] = dim
        if self.ms3d:
            hyper["input_size"] = 8
            ctx.say("input_size=8: MS3D families reshape [B, T, 8] to [B, 1, T, 4, 2] (the towers see 1 channel)")
            if dim != 3:
                ctx.fail(f"{self.family} uses Conv3d towers; {labels[0]}.weight {fmt_shape(first)} is Conv{dim}d")
                ctx.force.update(conv_dim=3, tower_kernels=[[k[0]] * 3 for k in kernels])
        else:
            hyper["input_size"] = in_ch
            ctx.say(f"input_size={in_ch} from {labels[0]}.weight {fmt_shape(first)}")
            if dim != 1:
                ctx.fail(f"{self.family} uses Conv1d; {labels[0]}.weight {fmt_shape(first)} is Conv{dim}d")
                ctx.force.update(conv_dim=1, tower_kernels=[[k[0]] for k in kernels])
        if self.scale and len(kernels) != 3:
            ctx.fail(f"{self.family} has 3 towers (chunks t3, t5, t7), found {len(kernels)}")

    # -- recurrent part --
    def _recurrent(self, ctx: Ctx, hyper: dict[str, Any]) -> None:
        if self.scale:
            first = "gru1.cell" if self.two else "gru.cell"
            u = ctx.dims(f"{first}.U_z.weight", ndim=2)
            w = ctx.dims(f"{first}.W_z3.weight", ndim=2)
            if u is not None:
                hyper["hidden_size"] = u[0]
                ctx.say(f"hidden_size={u[0]} from {first}.U_z.weight {fmt_shape(u)}")
            if w is not None:
                ctx.say(f"scale-aware cell: {first}.W_z3.weight {fmt_shape(w)} maps one tower's {w[1]} channels")
            hyper["cell"] = "GRU"
            ctx.say("cell=GRU: scale-aware GRU cell (W_{z,r,h}{3,5,7}, U_{z,r,h})")
            hyper["num_layers"] = 2 if self.two else 1
            ctx.say("num_layers=2: gru1.cell + gru2.cell" if self.two else "num_layers=1: one gru.cell")
            return
        if not self.two:
            st = recurrent_stack(ctx, "gru")
            if st is None:
                return
            hyper.update(hidden_size=st.hidden, num_layers=st.layers, cell=st.cell)
        else:
            st = recurrent_stack(ctx, "gru1", say_layers=False)
            st2 = recurrent_stack(ctx, "gru2", say_hidden=False, say_layers=False, say_cell=False)
            if st is None or st2 is None:
                return
            total = st.layers + st2.layers
            ctx.say(f"num_layers={total}: gru1 ({st.layers} layer{'s' if st.layers > 1 else ''}) "
                    f"+ gru2 ({st2.layers} layer{'s' if st2.layers > 1 else ''})")
            if st.layers != 1:
                ctx.fail(f"gru1 has {st.layers} layers; {self.family} keeps one layer in gru1 and the rest in gru2")
            if st2.cell != st.cell:
                ctx.fail(f"gru1 is {st.cell}, gru2 is {st2.cell}")
            hyper.update(hidden_size=st.hidden, num_layers=total, cell=st.cell)
            if st2.bidirectional:
                ctx.fail(f"{self.family} is unidirectional; found gru2.*_reverse")
        if st.bidirectional:
            ctx.fail(f"{self.family} is unidirectional; found {st.prefix}.*_reverse")
        if st.cell is None:
            ctx.force["cell"] = "GRU"

    def infer(self, ctx: Ctx) -> dict[str, Any]:
        hyper: dict[str, Any] = {}
        self._convs(ctx, hyper)
        self._recurrent(ctx, hyper)
        hyper["num_classes"] = _classes(ctx, "output_layers.3.weight")
        return hyper


class WRNDetector(Detector):
    """Wide ResNet d-k, 1D or 2D (spec table, last row)."""

    family = "WRN"
    signature = ("conv1.weight", "block1.layer.0.conv1.weight", "fc.weight")
    _BLOCK = re.compile(r"^block(\d+)\.layer\.(\d+)\.")

    def infer(self, ctx: Ctx) -> dict[str, Any]:
        hyper: dict[str, Any] = {}
        stem = ctx.dims("conv1.weight", min_ndim=3)
        if stem is not None:
            dim = len(stem) - 2
            hyper.update(input_size=stem[1], conv_dim=dim)
            ctx.say(f"conv_dim={dim} from conv1.weight {fmt_shape(stem)} (Conv{dim}d)")
            ctx.say(f"input_size={stem[1]} from conv1.weight {fmt_shape(stem)}")
            if stem[0] != 16:
                ctx.fail(f"conv1.weight {fmt_shape(stem)}: WRN's stem has 16 filters, found {stem[0]}")
        w = ctx.dims("block1.layer.0.conv1.weight", min_ndim=3)
        if w is not None:
            if w[0] % 16 or w[0] < 16:
                ctx.fail(f"block1.layer.0.conv1.weight {fmt_shape(w)}: width {w[0]} is not 16 x k")
            k = max(1, w[0] // 16)
            hyper["widen_factor"] = k
            ctx.say(f"widen_factor={k} from block1.layer.0.conv1.weight {fmt_shape(w)}: {w[0]} = 16 x {k}")
        blocks: dict[int, set[int]] = {}
        for key in ctx.shapes:
            m = self._BLOCK.match(key)
            if m:
                blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        n = len(blocks.get(1, ()))
        if n:
            hyper["depth"] = 6 * n + 4
            ctx.say(f"depth={6 * n + 4} (6 x {n} + 4) from block1.layer.{braces(blocks[1])}")
        for g in (2, 3):
            if len(blocks.get(g, ())) != n:
                ctx.fail(f"block{g} has {len(blocks.get(g, ()))} blocks, block1 has {n}")
        extra_groups = sorted(set(blocks) - {1, 2, 3})
        if extra_groups:
            ctx.fail(f"WRN has 3 groups; found block{braces(extra_groups)}")
        fc = ctx.dims("fc.weight", ndim=2)
        if fc is not None:
            hyper["num_classes"] = fc[0]
            ctx.say(f"num_classes={fc[0]} from fc.weight {fmt_shape(fc)}")
        return hyper




def _positive_then(fn):
    """The checks every built-in layout shares, then the family's own layout function."""
    def layout(spec: Any) -> Layout:
        _positive(spec, "input_size", "num_classes", "hidden_size", "num_layers", "proj_size",
                  "cnn_filters", "depth", "widen_factor")
        return fn(spec)
    layout.__name__ = fn.__name__
    layout.__qualname__ = fn.__qualname__
    return layout


_layout_rnn_checked = _positive_then(_layout_rnn)
_layout_cnn_checked = _positive_then(_layout_cnn)
_layout_wrn_checked = _positive_then(_layout_wrn)


# -- the records ---------------------------------------------------------------------------------

# Defaults from the spec's notation: C=8, H=64, K=24, F=32; towers 3,5,7 (table "Families").
# "2*hidden_size" is an expression default: GRU/LSTM project the input to 2H unless told otherwise.
_RNN_HP = dict(input_size=8, num_classes=24, hidden_size=64, bidirectional=False, cell="GRU")
_CNN_HP = dict(input_size=8, num_classes=24, hidden_size=64, cell="GRU", cnn_filters=32, conv_dim=1,
               tower_kernels=[[3], [5], [7]])
_K3 = [[3, 3, 3], [5, 5, 5], [7, 7, 7]]

_ZOO = "ckreg.zoo.models:"


def _rnn(name: str, *, layers: int, cell: str, projected: bool, cells: tuple[str, ...]) -> Family:
    hp = dict(_RNN_HP, num_layers=layers, cell=cell)
    if projected:
        hp["proj_size"] = Derived("2*hidden_size")
    return Family(name=name, hyperparameters=hp, layout_fn=_layout_rnn_checked,
                  detector=RecurrentDetector(name, projected=projected, cells=cells),
                  not_in_weights=dict(dropout=0.2), needs_scaler=True, readout="last",
                  build=_ZOO + "RecurrentClassifier", description="recurrent stack + rnn_head (last-step)")


def _cnn(name: str, *, layers: int, not_in_weights: dict, **hp: Any) -> Family:
    readout = "valid-halved" if name in SCALE_FAMILIES else "valid"
    return Family(name=name, hyperparameters=dict(_CNN_HP, num_layers=layers, **hp), layout_fn=_layout_cnn_checked,
                  detector=ConvRecurrentDetector(name), not_in_weights=not_in_weights, needs_scaler=True,
                  readout=readout, build=_ZOO + "ConvRecurrentClassifier",
                  description="convolutions + recurrent stack + mlp_head (valid-step)")


@register_family
def GRU() -> Family:
    return _rnn("GRU", layers=1, cell="GRU", projected=True, cells=("GRU", "RNN"))


@register_family
def LSTM() -> Family:
    return _rnn("LSTM", layers=2, cell="LSTM", projected=True, cells=("LSTM",))


@register_family
def StackedGRU() -> Family:
    return _rnn("StackedGRU", layers=2, cell="GRU", projected=False, cells=("GRU", "RNN"))


@register_family
def StackedLSTM() -> Family:
    return _rnn("StackedLSTM", layers=2, cell="LSTM", projected=False, cells=("LSTM",))


@register_family
def CNNGRU() -> Family:
    return _cnn("CNNGRU", layers=1, tower_kernels=[[3]], not_in_weights=dict(dropout=0.3))


@register_family
def CNNStackedGRU() -> Family:
    return _cnn("CNNStackedGRU", layers=2, tower_kernels=[[3]], not_in_weights=dict(dropout=0.3))


@register_family
def MSCGRU() -> Family:
    return _cnn("MSCGRU", layers=1, not_in_weights=dict(dropout=0.3))


@register_family
def MSCSGRU() -> Family:
    return _cnn("MSCSGRU", layers=2, not_in_weights=dict(dropout=0.3))


@register_family
def MS3DGRU() -> Family:
    return _cnn("MS3DGRU", layers=1, conv_dim=3, tower_kernels=_K3, not_in_weights=dict(dropout=0.1, pool=[2, 4, 2]))


@register_family
def MS3DStackedGRU() -> Family:
    return _cnn("MS3DStackedGRU", layers=2, conv_dim=3, tower_kernels=_K3,
                not_in_weights=dict(dropout=0.1, pool=[1, 4, 2]))


@register_family
def MSCSGRU_ScaleAware() -> Family:
    return _cnn("MSCSGRU_ScaleAware", layers=2, not_in_weights=dict(dropout=0.3, activation="sigmoid/tanh"))


@register_family
def MSCSGRU_ScaleHard() -> Family:
    return _cnn("MSCSGRU_ScaleHard", layers=2, not_in_weights=dict(dropout=0.3, activation="hardsigmoid/hardtanh"))


@register_family
def MSCGRU_ScaleAware() -> Family:
    return _cnn("MSCGRU_ScaleAware", layers=1, not_in_weights=dict(dropout=0.3, activation="sigmoid/tanh"))


@register_family
def WRN() -> Family:
    return Family(name="WRN", hyperparameters=dict(input_size=8, num_classes=24, conv_dim=1, depth=16, widen_factor=1),
                  layout_fn=_layout_wrn_checked, detector=WRNDetector(), not_in_weights=dict(dropout=0.0),
                  needs_scaler=True, readout="mean", build=_ZOO + "WideResNet",
                  description="Wide ResNet d-k, 1D or 2D (global average pool)")


BUILTIN_FAMILIES: tuple[str, ...] = (
    "GRU", "LSTM", "StackedGRU", "StackedLSTM", "CNNGRU", "CNNStackedGRU", "MSCGRU", "MSCSGRU", "MS3DGRU",
    "MS3DStackedGRU", "MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "MSCGRU_ScaleAware", "WRN",
)
