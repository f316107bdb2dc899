"""One detector per family (issue #2, "Inference"): signature, inference, validation.

A detector claims a file when its *signature* (a few key names, never shapes)
is present. It then *infers* the family's hyperparameters from shapes, writing
one evidence line per conclusion ("hidden_size=64 from gru.weight_hh_l0 [192, 64]"),
and *validates* by re-deriving every expected key and shape with
`layouts.expected_layout(inferred spec)` and comparing with the file.

Whatever the file shows that the family cannot be (an LSTM cell in the GRU
family, Conv3d towers in MSCGRU) is a `broken` reason, and the spec used for
validation keeps the family's own value, so the shapes that break show up as
mismatches. Detectors never decide between themselves: `ckreg.inspect.core`
ranks every candidate by score (no first match, no default family).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError
from ckreg.inspect.layouts import (
    GATES,
    MS3D_FAMILIES,
    SCALE_FAMILIES,
    TWO_MODULE_FAMILIES,
    expected_layout,
    layout_counts,
)
from ckreg.inspect.model import Candidate
from ckreg.inspect.names import braces, collapse_names, fmt_int, fmt_kernel, fmt_shape

Shapes = Mapping[str, tuple[int, ...]]

_CELL_OF_GATES = {g: cell for cell, g in GATES.items()}
_LAYER_KEY = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")
_MAX_SHAPE_LINES = 8


@dataclass
class Detected:
    """One family's attempt on one file (internal; `Candidate` is the public view)."""

    family: str
    hyper: dict[str, Any]
    evidence: list[str]
    broken: list[str]
    score: float
    expected: dict[str, tuple[int, ...]] | None = None
    extra: list[str] = field(default_factory=list)   # file keys the family does not explain
    params: int | None = None
    buffers: int | None = None

    @property
    def valid(self) -> bool:
        return not self.broken

    def candidate(self) -> Candidate:
        return Candidate(family=self.family, score=round(self.score, 4), hyperparameters=dict(self.hyper),
                         evidence=list(self.evidence), broken=list(self.broken))


class Ctx:
    """What a detector has learned so far: evidence, broken reasons, forced spec values."""

    def __init__(self, shapes: Shapes):
        self.shapes = shapes
        self.evidence: list[str] = []
        self.broken: list[str] = []
        self.force: dict[str, Any] = {}

    def shape(self, key: str) -> tuple[int, ...] | None:
        s = self.shapes.get(key)
        return tuple(int(v) for v in s) if s is not None else None

    def say(self, line: str) -> None:
        self.evidence.append(line)

    def fail(self, line: str) -> None:
        self.broken.append(line)

    def dims(self, key: str, ndim: int | None = None, min_ndim: int | None = None) -> tuple[int, ...] | None:
        """The shape of `key`, or None (with a broken reason) when absent or of the wrong rank."""
        s = self.shape(key)
        if s is None:
            self.fail(f"{key} missing")
            return None
        if (ndim is not None and len(s) != ndim) or (min_ndim is not None and len(s) < min_ndim):
            want = f"{ndim}-D" if ndim is not None else f"at least {min_ndim}-D"
            self.fail(f"{key} {fmt_shape(s)} should be {want}")
            return None
        return s


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


class Detector:
    """Base: a family, its signature, and `infer` (hyperparameters with evidence)."""

    family: str = ""
    signature: tuple[str, ...] = ()

    def matches(self, shapes: Shapes) -> bool:
        return all(k in shapes for k in self.signature)

    def infer(self, ctx: Ctx) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.family}: requires {', '.join(self.signature)}"


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


def _registry() -> list[Detector]:
    return [
        RecurrentDetector("GRU", projected=True, cells=("GRU", "RNN")),
        RecurrentDetector("LSTM", projected=True, cells=("LSTM",)),
        RecurrentDetector("StackedGRU", projected=False, cells=("GRU", "RNN")),
        RecurrentDetector("StackedLSTM", projected=False, cells=("LSTM",)),
        ConvRecurrentDetector("CNNGRU"),
        ConvRecurrentDetector("CNNStackedGRU"),
        ConvRecurrentDetector("MSCGRU"),
        ConvRecurrentDetector("MSCSGRU"),
        ConvRecurrentDetector("MS3DGRU"),
        ConvRecurrentDetector("MS3DStackedGRU"),
        ConvRecurrentDetector("MSCSGRU_ScaleAware"),
        ConvRecurrentDetector("MSCSGRU_ScaleHard"),
        ConvRecurrentDetector("MSCGRU_ScaleAware"),
        WRNDetector(),
    ]


# One detector per family in ckreg.arch.FAMILIES, in that order (tests check it).
DETECTORS: list[Detector] = _registry()


def _short(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors())
        except Exception:  # pragma: no cover - defensive
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def run_detector(det: Detector, shapes: Shapes) -> Detected | None:
    """Signature, inference, validation; None when the signature is absent."""
    if not det.matches(shapes):
        return None
    ctx = Ctx(shapes)
    ctx.say(f"signature: {', '.join(det.signature)}")
    try:
        hyper = det.infer(ctx)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # odd shapes must not crash a run
        ctx.fail(f"inference failed: {exc}")
        hyper = {}
    hyper = {k: v for k, v in hyper.items() if v is not None}
    fields = {**hyper, **{k: v for k, v in ctx.force.items() if v is not None}}
    expected = None
    try:
        expected = expected_layout(ArchSpec(family=det.family, **fields))
    except (SpecError, ValueError) as exc:
        ctx.fail(f"no {det.family} layout fits: {_short(exc)}")
    found = set(shapes)
    if expected is None:
        score = 0.5 * len(det.signature) / max(1, len(found))
        return Detected(det.family, hyper, ctx.evidence, ctx.broken, score, extra=sorted(found))
    matched = [k for k, s in expected.items() if k in shapes and tuple(shapes[k]) == s]
    missing = [k for k in expected if k not in shapes]
    wrong = [k for k in expected if k in shapes and tuple(shapes[k]) != expected[k]]
    extra = [k for k in shapes if k not in expected]
    if missing:
        shown = collapse_names(missing)
        ctx.fail(f"missing {len(missing)} expected key{'s' if len(missing) > 1 else ''}: "
                 + ", ".join(shown[:6]) + (" ..." if len(shown) > 6 else ""))
    for k in wrong[:_MAX_SHAPE_LINES]:
        ctx.fail(f"{k}: expected {fmt_shape(expected[k])}, found {fmt_shape(shapes[k])}")
    if len(wrong) > _MAX_SHAPE_LINES:
        ctx.fail(f"... and {len(wrong) - _MAX_SHAPE_LINES} more shape mismatches")
    params, buffers = layout_counts(expected)
    if not missing and not wrong:
        ctx.say(f"validated: all {len(expected)} expected keys present with the expected shapes "
                f"({fmt_int(params)} params + {fmt_int(buffers)} buffer elements)")
    else:
        ctx.say(f"validated: {len(matched)} of {len(expected)} expected keys match")
    if extra:
        shown = collapse_names(extra)
        ctx.say(f"{len(extra)} key{'s' if len(extra) > 1 else ''} outside {det.family}: "
                + ", ".join(shown[:6]) + (" ..." if len(shown) > 6 else ""))
    # half keys, half elements: twelve stray counters should not outweigh 50k validated weights
    key_part = len(matched) / max(1, len(found | set(expected)))
    matched_n = sum(_numel(expected[k]) for k in matched)
    union_n = (sum(_numel(tuple(s)) for s in shapes.values())
               + sum(_numel(expected[k]) for k in missing) + sum(_numel(expected[k]) for k in wrong))
    score = 0.5 * key_part + 0.5 * (matched_n / union_n if union_n else key_part)
    return Detected(det.family, hyper, ctx.evidence, ctx.broken, score, expected=expected, extra=extra,
                    params=params, buffers=buffers)


def detect_all(shapes: Shapes) -> list[Detected]:
    """Every detector whose signature is present, in registry order (ranking is the caller's)."""
    out = []
    for det in DETECTORS:
        found = run_detector(det, shapes)
        if found is not None:
            out.append(found)
    return out
