"""A generic description of any state_dict (issue #2: "Anything else: family unknown ...").

Names recurrent stacks (cell, layers, input and hidden size, direction),
convolutions (dimensionality, kernels), linear layers, the classifier's output
width (the last linear layer), attention blocks (fused `in_proj` or separate
q/k/v projections, `out_proj`) and embedding/codebook tables, with counts.
Everything is read from names and shapes alone; what the weights cannot show
(attention head counts, activations) is said to be unrecorded, never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

from ckreg.inspect.layouts import GATES, is_buffer_name
from ckreg.inspect.names import braces, collapse_names, fmt_kernel, fmt_shape

Shapes = Mapping[str, tuple[int, ...]]

_CELL_OF_GATES = {g: cell for cell, g in GATES.items()}
_RNN_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
_EMBED_NAME = re.compile(r"(embed|embedding|codebook|wte|wpe|tok_|token|vocab|lookup|pos_emb|position)", re.I)
# separate attention projections, by naming convention
_QKV_SETS = ({"q_proj", "k_proj", "v_proj"}, {"query", "key", "value"}, {"q", "k", "v"},
             {"to_q", "to_k", "to_v"}, {"wq", "wk", "wv"}, {"q_lin", "k_lin", "v_lin"})
_FUSED_QKV = {"qkv", "c_attn", "in_proj", "Wqkv", "query_key_value"}
_ATTN_OUT = {"out_proj", "o_proj", "c_proj", "to_out", "wo", "out_lin", "dense"}


@dataclass
class _Module:
    name: str
    leaves: dict[str, tuple[int, ...]]


def _modules(shapes: Shapes) -> list[_Module]:
    """Group keys by owning module, in first-seen (module) order."""
    mods: dict[str, _Module] = {}
    for key, shape in shapes.items():
        owner, _, leaf = key.rpartition(".")
        mods.setdefault(owner, _Module(owner, {})).leaves[leaf] = tuple(int(v) for v in shape)
    return list(mods.values())


def _child(name: str) -> str:
    return name.rpartition(".")[2]


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe(shapes: Shapes) -> tuple[list[str], dict]:
    """Description lines plus a summary dict (counts per kind, classifier width, attention blocks)."""
    mods = _modules(shapes)
    lines: list[str] = []
    summary: dict = {}

    # attention blocks: modules with a fused in_proj_weight, or a parent of q/k/v projections
    attn: dict[str, str] = {}          # block name -> how it was recognised
    attn_parts: set[str] = set()       # module names that belong to an attention block
    children: dict[str, set[str]] = {}
    for m in mods:
        children.setdefault(_parent(m.name), set()).add(_child(m.name))
    for m in mods:
        if "in_proj_weight" in m.leaves:
            e = m.leaves["in_proj_weight"]
            attn[m.name] = f"fused in_proj {fmt_shape(e)}" + (f", embed dim {e[-1]}" if e else "")
            attn_parts.add(m.name)
            if f"{m.name}.out_proj" in {x.name for x in mods}:
                attn_parts.add(f"{m.name}.out_proj")
    for parent, kids in children.items():
        for qkv in _QKV_SETS:
            if qkv <= kids:
                q = shapes.get(f"{parent}.{sorted(qkv)[0]}.weight") if parent else None
                how = "q/k/v projections" + (f", width {q[0]}" if q else "")
                attn[parent] = how
                attn_parts.update(f"{parent}.{k}" if parent else k for k in qkv)
                for out in _ATTN_OUT & kids:
                    attn_parts.add(f"{parent}.{out}")
                break
        else:
            fused = _FUSED_QKV & kids
            if fused and parent not in attn and (_ATTN_OUT & kids):
                f = sorted(fused)[0]
                attn[parent] = f"fused {f} projection"
                attn_parts.update(f"{parent}.{k}" for k in fused | (_ATTN_OUT & kids))

    recurrent, convs, linears, embeds, bns, norms, other = [], [], [], [], [], [], []
    for m in mods:
        leaves = m.leaves
        if any(_RNN_KEY.match(leaf) for leaf in leaves):
            recurrent.append(m)
            continue
        if m.name in attn_parts and m.name not in attn:
            continue
        if "running_mean" in leaves or "running_var" in leaves:
            bns.append(m)
            continue
        w = leaves.get("weight")
        if w is not None and len(w) >= 3:
            convs.append((m.name, w))
        elif w is not None and len(w) == 2:
            if _EMBED_NAME.search(m.name) and "bias" not in leaves:
                embeds.append((m.name, w))
            elif m.name not in attn:
                linears.append((m.name, w))
        elif w is not None and len(w) == 1 and m.name not in attn:
            norms.append(m)
        for leaf, shape in leaves.items():
            if leaf in ("weight", "bias") or is_buffer_name(leaf) or leaf.endswith("in_proj_weight") \
                    or leaf.endswith("in_proj_bias"):
                continue
            full = f"{m.name}.{leaf}" if m.name else leaf
            if _EMBED_NAME.search(leaf) or (_EMBED_NAME.search(m.name) and len(shape) >= 2):
                embeds.append((full, shape))
            else:
                other.append((full, shape))

    # recurrent stacks
    for m in recurrent:
        hh = m.leaves.get("weight_hh_l0")
        ih = m.leaves.get("weight_ih_l0")
        layers = sorted({int(g.group(3)) for leaf in m.leaves if (g := _RNN_KEY.match(leaf)) and g.group(2) == "ih"})
        bi = "weight_ih_l0_reverse" in m.leaves
        if hh and ih and len(hh) == 2 and len(ih) == 2 and hh[1]:
            rows, hidden = hh
            cell = _CELL_OF_GATES.get(rows // hidden, f"{rows // hidden}-gate") if rows % hidden == 0 else "unknown cell"
            proj = m.leaves.get("weight_hr_l0")
            if proj:
                hidden_note = f"hidden {proj[1]}, projection {proj[0]}"
            else:
                hidden_note = f"hidden {hidden}"
            lines.append(f"recurrent stack {m.name or '(root)'}: {cell}, {_plural(len(layers), 'layer')}, input {ih[1]}, "
                         f"{hidden_note}, {'bidirectional' if bi else 'unidirectional'} "
                         f"(from {m.name}.weight_hh_l0 {fmt_shape(hh)}, weight_ih_l{braces(layers)})")
        else:
            lines.append(f"recurrent stack {m.name}: incomplete ({', '.join(sorted(m.leaves))})")
    summary["recurrent"] = len(recurrent)

    # convolutions
    if convs:
        by_dim = Counter(len(w) - 2 for _, w in convs)
        kernels = Counter(fmt_kernel(w[2:]) for _, w in convs)
        dims = ", ".join(f"{n} x Conv{d}d" for d, n in sorted(by_dim.items()))
        ks = ", ".join(f"{k} ({n})" for k, n in kernels.most_common(6))
        first_name, first = convs[0]
        lines.append(f"convolutions: {dims}; kernels {ks}; first {first_name} {first[1]} -> {first[0]} channels")
    summary["convolutions"] = len(convs)

    # attention blocks
    if attn:
        blocks = collapse_names(attn)
        kinds = Counter(attn.values())
        how = "; ".join(f"{k} ({n})" if n > 1 else k for k, n in kinds.most_common(3))
        lines.append(f"attention blocks: {len(attn)} ({', '.join(blocks[:4])}{' ...' if len(blocks) > 4 else ''}); "
                     f"{how}; head count not recorded in the weights")
    summary["attention"] = len(attn)

    # embeddings / codebooks
    if embeds:
        shown = ", ".join(f"{n} {fmt_shape(s)}" for n, s in embeds[:4])
        lines.append(f"embedding/codebook tables: {len(embeds)} ({shown}{' ...' if len(embeds) > 4 else ''})")
    summary["embeddings"] = len(embeds)

    # linear layers and classifier
    if linears:
        first_name, first = linears[0]
        lines.append(f"linear layers: {len(linears)} (first {first_name} {first[1]} -> {first[0]})")
        last_name, last = linears[-1]
        lines.append(f"classifier output width {last[0]} from {last_name}.weight {fmt_shape(last)} (last linear layer)")
        summary["classifier"] = {"module": last_name, "in": last[1], "out": last[0]}
    summary["linear"] = len(linears)

    # normalisation
    if bns or norms:
        parts = []
        if bns:
            parts.append(f"{len(bns)} BatchNorm (running stats and counters are buffers)")
        if norms:
            parts.append(f"{len(norms)} LayerNorm/GroupNorm-like (1-D weight, no running stats)")
        lines.append("normalization: " + ", ".join(parts))
    summary["batchnorm"] = len(bns)
    summary["norm"] = len(norms)

    if other:
        shown = collapse_names(n for n, _ in other)
        lines.append(f"other tensors: {len(other)} ({', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''})")
    if not lines:
        lines.append("no tensors" if not shapes else f"{len(shapes)} tensors of no recognised kind")
    return lines, summary
