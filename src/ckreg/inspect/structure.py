"""The structure of any state_dict as data: recurrent stacks, convolutions,
transformer depth and width, embedding tables, norms, linear layers, the head.

Read from names and shapes alone (torch-free), for every file whatever its
family, so tools and CI get facts rather than prose (`Inspection.structure`,
schema in docs/inspect.md). What the weights cannot show (head counts) is said
to be unrecorded unless a config gives it; how the classifier was chosen is an
evidence line, never a silent guess.

Key order matters for one rule only: "the last linear layer" is the head only
when keys come in module order (a pickled state_dict); safetensors sorts keys
alphabetically, so there the head is chosen by name or role alone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from ckreg.inspect.names import collapse_names, fmt_kernel, fmt_shape

NOT_RECORDED = "not recorded in the weights"
Shapes = Mapping[str, tuple[int, ...]]

GATES = {1: "RNN", 3: "GRU", 4: "LSTM"}
_RNN_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
_INDEX = re.compile(r"^(0|[1-9]\d*)$")

# embedding tables by the owning module's last name component (roles in order of precedence)
_CODEBOOK = re.compile(r"(codebook|quantiz|vq|vector_quant|_codebook)", re.I)
_POSITION = re.compile(r"(^|_)(wpe|pos|position|positions|positional|relative_attention_bias)(_|$)|"
                       r"position|pos_emb|pos_embed", re.I)
_TOKEN = re.compile(r"(^|_)(wte|tok|token|tokens|word|words|shared|vocab|embed_tokens|word_embeddings)(_|$)", re.I)
_EMBED = re.compile(r"(embed|embedding|embeddings|codebook|lookup|(^|_)emb(_|$)|^wte$|^wpe$|^shared$|"
                    r"relative_attention_bias)", re.I)
_NORM_NAME = re.compile(r"(norm|(^|_)ln(_|\d|f|$)|layernorm|rms|(^|_)bn(\d|_|$))", re.I)
_GROUPNORM = re.compile(r"(group_?norm|(^|_)gn(\d|_|$))", re.I)
_ACT_NAME = re.compile(r"(prelu|act|relu)", re.I)

# separate attention projections by naming convention
_QKV_SETS = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"), ("q", "k", "v"),
             ("to_q", "to_k", "to_v"), ("wq", "wk", "wv"), ("q_lin", "k_lin", "v_lin"))
_FUSED_QKV = ("qkv", "c_attn", "Wqkv", "query_key_value", "qkv_proj", "in_proj")
_ATTN_OUT = ("out_proj", "o_proj", "c_proj", "to_out", "wo", "out_lin", "o", "proj", "dense")
# Hugging Face Conv1D layers (GPT-2 family) store weight as [in, out]
_CONV1D_NAMES = ("c_attn", "c_proj", "c_fc", "q_attn")
# head names, strongest first
HEAD_NAMES = ("classifier", "lm_head", "output_layer", "head", "fc", "score", "logits", "cls", "heads")


@dataclass
class _Linear:
    name: str
    in_features: int
    out_features: int
    transposed: bool = False        # HF Conv1D ([in, out])
    bias: bool = False
    attention: bool = False         # a projection of an attention block
    layer: tuple[str, int] | None = None   # (stack prefix, index) when inside a repeated block


@dataclass
class Analysis:
    """What `analyze` learned: the JSON `structure`, evidence, generic hyperparameters, prose inputs."""

    structure: dict[str, Any]
    evidence: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _child(name: str) -> str:
    return name.rpartition(".")[2]


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _layer_of(name: str) -> tuple[str, int] | None:
    """(stack prefix, index) of the first numbered component: `encoder.layer.3.x` -> ('encoder.layer', 3)."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if _INDEX.match(p) and i > 0:
            return ".".join(parts[:i]), int(p)
    return None


def _modules(shapes: Shapes) -> dict[str, dict[str, tuple[int, ...]]]:
    mods: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        owner, _, leaf = key.rpartition(".")
        mods.setdefault(owner, {})[leaf] = tuple(int(v) for v in shape)
    return mods


def embedding_role(name: str) -> str:
    """token | position | codebook | other, from the table's module path."""
    last = _child(name) or name
    if _CODEBOOK.search(name):
        return "codebook"
    if "type" in last.lower() or "segment" in last.lower():
        return "other"
    if _POSITION.search(last):
        return "position"
    if _TOKEN.search(last) or last in ("embed", "embedding", "embeddings", "emb", "lookup"):
        return "token"
    return "other"


def _is_embedding_module(name: str, leaves: Mapping[str, tuple[int, ...]]) -> bool:
    w = leaves.get("weight")
    if w is None or len(w) < 2 or "bias" in leaves:
        return False
    last = _child(name) or name
    return bool(_EMBED.search(last)) or bool(_CODEBOOK.search(last))


def _natural_key(name: str) -> list:
    return [(0, int(p), "") if _INDEX.match(p) else (1, 0, p) for p in name.split(".")]


def analyze(shapes: Shapes, *, ordered: bool = True, config: Mapping[str, Any] | None = None) -> Analysis:
    """The structure of one state_dict. `ordered`: keys come in module order (not alphabetical).

    `config` (a Hugging Face `config.json`, or None) fills what weights cannot
    show (head counts); contradictions are `config_findings`' business.
    """
    mods = _modules(shapes)
    names = list(mods)
    kids: dict[str, set[str]] = {}
    for n in names:
        kids.setdefault(_parent(n), set()).add(_child(n))
    evidence: list[str] = []
    lines: list[str] = []

    # -- recurrent: nn.RNN/GRU/LSTM stacks, then cell stacks (weight_ih, no _l0) -----------------
    recurrent: list[dict[str, Any]] = []
    rnn_mods: set[str] = set()
    cells: dict[str, list[tuple[int | None, str, dict]]] = {}
    for n, leaves in mods.items():
        if any(_RNN_KEY.match(leaf) for leaf in leaves):
            rnn_mods.add(n)
            hh, ih = leaves.get("weight_hh_l0"), leaves.get("weight_ih_l0")
            layers = sorted({int(g.group(3)) for leaf in leaves if (g := _RNN_KEY.match(leaf)) and g.group(2) == "ih"})
            entry: dict[str, Any] = {"prefix": n, "cell": None, "num_layers": len(layers), "input_size": None,
                                     "hidden_size": None, "bidirectional": "weight_ih_l0_reverse" in leaves}
            if hh and ih and len(hh) == 2 and len(ih) == 2 and hh[1]:
                rows = hh[0]
                entry["cell"] = GATES.get(rows // hh[1], f"{rows // hh[1]}-gate") if rows % hh[1] == 0 else None
                entry["input_size"], entry["hidden_size"] = ih[1], hh[1]
                proj = leaves.get("weight_hr_l0")
                if proj and len(proj) == 2:
                    entry["hidden_size"], entry["proj_size"] = proj[1], proj[0]
            recurrent.append(entry)
        elif (w_ih := leaves.get("weight_ih")) and (w_hh := leaves.get("weight_hh")) and len(w_ih) == 2 \
                and len(w_hh) == 2 and w_hh[1] and w_hh[0] % w_hh[1] == 0:
            rnn_mods.add(n)
            parent, last = _parent(n), _child(n)
            idx = int(last) if _INDEX.match(last) else None
            group = parent if idx is not None else n
            cells.setdefault(group, []).append((idx, n, leaves))
    for group, members in cells.items():
        members.sort(key=lambda m: -1 if m[0] is None else m[0])
        _, first, leaves = members[0]
        w_ih, w_hh = leaves["weight_ih"], leaves["weight_hh"]
        gate = GATES.get(w_hh[0] // w_hh[1])
        recurrent.append({"prefix": group, "cell": f"{gate}Cell" if gate else f"{w_hh[0] // w_hh[1]}-gate cell",
                          "num_layers": len(members), "input_size": w_ih[1], "hidden_size": w_hh[1],
                          "bidirectional": False})
    for r in recurrent:
        where = r["prefix"] or "(root)"
        if r["cell"] is None:
            lines.append(f"recurrent stack {where}: incomplete ({', '.join(sorted(mods[r['prefix']]))})")
            continue
        kind = "cell stack" if r["cell"].endswith("Cell") else "stack"
        hidden = f"hidden {r['hidden_size']}" + (f", projection {r['proj_size']}" if r.get("proj_size") else "")
        lines.append(f"recurrent {kind} {where}: {r['cell']}, {_plural(r['num_layers'], 'layer')}, input "
                     f"{r['input_size']}, {hidden}, {'bidirectional' if r['bidirectional'] else 'unidirectional'}")

    # -- attention blocks ----------------------------------------------------------------------
    attn: dict[str, dict[str, Any]] = {}   # block -> {kind, d_model, q, kv, width}
    attn_parts: set[str] = set()
    transposed_model = any(
        len(lv.get("weight", ())) == 2 and "bias" in lv and len(lv["bias"]) == 1
        and lv["bias"][0] == lv["weight"][1] != lv["weight"][0] for lv in mods.values())

    def io(n: str) -> tuple[int, int, bool] | None:
        """(in, out, transposed) of a 2-D weight module."""
        lv = mods.get(n, {})
        w = lv.get("weight")
        if w is None or len(w) != 2:
            return None
        b = lv.get("bias")
        if b is not None and len(b) == 1 and b[0] == w[1] != w[0]:
            return w[0], w[1], True
        if b is None and transposed_model and _child(n) in _CONV1D_NAMES:
            return w[0], w[1], True
        if b is not None and len(b) == 1 and b[0] == w[0] == w[1] and transposed_model and _child(n) in _CONV1D_NAMES:
            return w[0], w[1], True
        return w[1], w[0], False

    for n, leaves in mods.items():
        ip = leaves.get("in_proj_weight")
        if ip is not None and len(ip) == 2:
            d = ip[1]
            attn[n] = {"kind": "fused-qkv", "d_model": d, "width": ip[0], "via": f"in_proj_weight {fmt_shape(ip)}"}
            attn_parts.add(n)
            if _join(n, "out_proj") in mods:
                attn_parts.add(_join(n, "out_proj"))
    for parent, ch in kids.items():
        if parent in attn:
            continue
        for qkv in _QKV_SETS:
            if set(qkv) <= ch and all(io(_join(parent, k)) for k in qkv):
                q, k, v = (io(_join(parent, x)) for x in qkv)
                kind = "grouped-query" if k[1] < q[1] else "separate"
                attn[parent] = {"kind": kind, "d_model": q[0], "q": q[1], "kv": k[1],
                                "via": f"{'/'.join(qkv)} {q[0]} -> {q[1]}/{k[1]}/{v[1]}"}
                attn_parts.update(_join(parent, x) for x in qkv)
                attn_parts.update(_join(parent, o) for o in _ATTN_OUT if o in ch)
                break
        else:
            fused = [f for f in _FUSED_QKV if f in ch and io(_join(parent, f))]
            if fused and any(o in ch for o in _ATTN_OUT):
                f = fused[0]
                i, o, _ = io(_join(parent, f))
                attn[parent] = {"kind": "fused-qkv", "d_model": i, "width": o,
                                "via": f"fused {f} {i} -> {o}"}
                attn_parts.update(_join(parent, x) for x in (f, *[o2 for o2 in _ATTN_OUT if o2 in ch]))

    # transformer layers: the numbered blocks that hold attention (not any nn.Sequential index)
    stacks: dict[str, set[int]] = {}
    for block in attn:
        lay = _layer_of(block)
        if lay is not None:
            stacks.setdefault(lay[0], set()).add(lay[1])

    def layer_of(n: str) -> tuple[str, int] | None:
        lay = _layer_of(n)
        return lay if lay is not None and lay[0] in stacks else None

    # -- classify every module ------------------------------------------------------------------
    linears: list[_Linear] = []
    convs: list[tuple[str, tuple[int, ...]]] = []
    embeds: list[dict[str, Any]] = []
    norms: Counter = Counter()
    acts: Counter = Counter()
    other: list[str] = []
    order: list[tuple[str, str]] = []      # (kind, module) in key order, for the first layer
    for n, leaves in mods.items():
        if n in rnn_mods:
            order.append(("recurrent", n))
            continue
        w = leaves.get("weight")
        last = _child(n) or n
        if "running_mean" in leaves or "running_var" in leaves:
            norms["BatchNorm"] += 1
        elif n in attn and "in_proj_weight" in leaves:
            ip = leaves["in_proj_weight"]
            linears.append(_Linear(n + ".in_proj", ip[1], ip[0], bias="in_proj_bias" in leaves, attention=True,
                                   layer=layer_of(n)))
        elif w is not None and _is_embedding_module(n, leaves):
            role = embedding_role(n)
            e = {"prefix": n, "num_embeddings": w[0], "embedding_dim": w[-1] if len(w) == 2 else list(w[1:]),
                 "role": role}
            embeds.append(e)
            order.append(("embedding", n))
        elif w is not None and len(w) >= 3:
            convs.append((n, w))
            order.append(("conv", n))
        elif w is not None and len(w) == 2:
            i, o, t = io(n)
            linears.append(_Linear(n, i, o, transposed=t, bias="bias" in leaves, attention=n in attn_parts,
                                   layer=layer_of(n)))
            order.append(("linear", n))
        elif w is not None and len(w) == 1:
            if "bias" in leaves:
                norms["GroupNorm" if _GROUPNORM.search(last) else "LayerNorm"] += 1
            elif _NORM_NAME.search(last):
                norms["RMSNorm"] += 1
            elif _ACT_NAME.search(last) or w == (1,):
                acts["PReLU"] += 1
            else:
                other.append(_join(n, "weight"))
        elif w is not None and len(w) == 0:
            other.append(_join(n, "weight"))
        for leaf, shape in leaves.items():
            if leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked", "in_proj_weight",
                        "in_proj_bias") or _RNN_KEY.match(leaf):
                continue
            full = _join(n, leaf)
            if len(shape) >= 2 and (_EMBED.search(leaf) or _POSITION.search(leaf)):
                role = embedding_role(full)
                embeds.append({"prefix": full, "num_embeddings": shape[-2], "embedding_dim": shape[-1], "role": role})
            else:
                other.append(full)

    structure: dict[str, Any] = {"recurrent": recurrent}

    # -- convolutions ---------------------------------------------------------------------------
    if convs:
        by_dim = Counter(str(len(w) - 2) for _, w in convs)
        kernels = Counter(fmt_kernel(w[2:]) for _, w in convs)
        structure["conv"] = {"count": len(convs), "by_dim": dict(sorted(by_dim.items())),
                             "kernels": dict(kernels.most_common())}
        dims = ", ".join(f"{c} x Conv{d}d" for d, c in sorted(by_dim.items()))
        ks = ", ".join(f"{k} ({c})" for k, c in kernels.most_common(6))
        first_name, first = convs[0]
        lines.append(f"convolutions: {dims}; kernels {ks}; first {first_name} {first[1]} -> {first[0]} channels")
    else:
        structure["conv"] = {"count": 0, "by_dim": {}, "kernels": {}}

    # -- transformer ----------------------------------------------------------------------------
    transformer = None
    d_model = None
    if attn:
        d_model = Counter(a["d_model"] for a in attn.values()).most_common(1)[0][0]
        kinds = Counter(a["kind"] for a in attn.values())
        kind = "grouped-query" if kinds["grouped-query"] else ("fused-qkv" if kinds["fused-qkv"] else "separate")
        kv = None
        sample = next(a for a in attn.values() if a["kind"] == kind)
        if kind in ("separate", "grouped-query"):
            kv = sample["kv"]
        elif sample["width"] == 3 * sample["d_model"]:
            kv = sample["d_model"]
        elif (sample["width"] - sample["d_model"]) % 2 == 0 and sample["width"] > sample["d_model"]:
            kv = (sample["width"] - sample["d_model"]) // 2
        ffn = Counter(li.out_features for li in linears
                      if li.layer is not None and not li.attention and li.in_features == d_model
                      and li.out_features != d_model)
        num_layers = sum(len(v) for v in stacks.values()) if stacks else len(attn)
        transformer = {"num_layers": num_layers,
                       "stacks": [{"prefix": p, "num_layers": len(v)} for p, v in stacks.items()],
                       "d_model": d_model, "ffn_dim": ffn.most_common(1)[0][0] if ffn else None,
                       "attention": kind, "attention_blocks": len(attn), "kv_dim": kv,
                       "num_heads": NOT_RECORDED}
        if kind == "grouped-query":
            transformer["num_kv_heads"] = NOT_RECORDED
        heads = _config_int(config, "num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
        if heads is not None:
            transformer["num_heads"] = heads
            kvh = _config_int(config, "num_key_value_heads")
            if kvh is not None:
                transformer["num_kv_heads"] = kvh
        blocks = collapse_names(attn)
        vias = Counter(a["via"] for a in attn.values())
        how = "; ".join(f"{k} ({c})" if c > 1 else k for k, c in vias.most_common(3))
        stack_txt = ", ".join(f"{p} {len(v)}" for p, v in stacks.items())
        lines.append(f"attention blocks: {len(attn)} ({', '.join(blocks[:4])}{' ...' if len(blocks) > 4 else ''}); "
                     f"{how}; head count {'from config' if heads is not None else 'not recorded in the weights'}")
        lines.append(f"transformer: {_plural(num_layers, 'layer')}" + (f" ({stack_txt})" if stacks else "")
                     + f", d_model {d_model}" + (f", ffn {transformer['ffn_dim']}" if transformer["ffn_dim"] else "")
                     + f", {kind} attention" + (f", k/v width {kv}" if kv is not None else ""))
    structure["transformer"] = transformer

    # -- embeddings -----------------------------------------------------------------------------
    structure["embeddings"] = embeds
    if embeds:
        shown = ", ".join(f"{e['prefix']} [{e['num_embeddings']}, {e['embedding_dim']}]" for e in embeds[:4])
        roles = Counter(e["role"] for e in embeds)
        lines.append(f"embedding/codebook tables: {len(embeds)} ({shown}{' ...' if len(embeds) > 4 else ''}); "
                     + ", ".join(f"{r} {c}" for r, c in roles.items()))

    # -- norms, activations, linear ---------------------------------------------------------------
    structure["norms"] = dict(norms)
    if acts:
        structure["activations"] = dict(acts)
    in_attn = sum(1 for li in linears if li.attention)
    structure["linear"] = {"count": len(linears), "in_attention": in_attn,
                           "conv1d_transposed": sum(1 for li in linears if li.transposed)}
    outside = [li for li in linears if not li.attention]
    if linears:
        first = outside[0] if outside else linears[0]
        lines.append(f"linear layers: {len(outside)}" + (f" (+{in_attn} attention projections)" if in_attn else "")
                     + (f"; first {first.name} {first.in_features} -> {first.out_features}" if ordered else "")
                     + (" (Conv1D, weight stored [in, out])" if first.transposed and ordered else "")
                     + (f"; {structure['linear']['conv1d_transposed']} Conv1D (weight stored [in, out])"
                        if structure["linear"]["conv1d_transposed"] and not ordered else ""))

    # -- classifier -----------------------------------------------------------------------------
    input_width = None
    for kind_, n in order:
        if kind_ == "embedding":
            break
        if kind_ == "recurrent":
            input_width = next((r["input_size"] for r in recurrent if r["prefix"] == n or n.startswith(r["prefix"] + ".")
                                or r["prefix"] == _parent(n)), None)
        elif kind_ == "conv":
            input_width = next(w[1] for cn, w in convs if cn == n)
        elif kind_ == "linear":
            input_width = next(li.in_features for li in linears if li.name == n)
        break
    if not ordered:
        input_width = None
    vocab = {(e["num_embeddings"], e["embedding_dim"]) for e in embeds if e["role"] == "token"}
    has_codebook = any(e["role"] == "codebook" for e in embeds)
    classifier, why = _choose_head(outside, ordered=ordered, d_model=d_model, input_width=input_width,
                                   vocab=vocab, has_codebook=has_codebook)
    structure["classifier"] = classifier
    evidence.append(why)
    if classifier is not None:
        w = shapes.get(_join(classifier["prefix"], "weight"))
        stored = f".weight {fmt_shape(w)}" if w is not None else ""
        if classifier.get("transposed"):
            stored += " (Conv1D, stored [in, out])"
        lines.append(f"classifier output width {classifier['out_features']} from {classifier['prefix']}{stored}: "
                     f"{classifier['in_features']} -> {classifier['out_features']} ({classifier['chosen_by']})")
    else:
        lines.append(f"no classifier head: {why.removeprefix('classifier: none: ')}")

    # -- normalisation prose, leftovers -------------------------------------------------------------
    if norms or acts:
        parts = []
        if norms.get("BatchNorm"):
            parts.append(f"{norms['BatchNorm']} BatchNorm (running stats and counters are buffers)")
        for k, what in (("LayerNorm", "weight and bias"), ("GroupNorm", "weight and bias"),
                        ("RMSNorm", "weight only")):
            if norms.get(k):
                parts.append(f"{norms[k]} {k}-like ({what}, no running stats)")
        if acts:
            parts.append(f"{acts['PReLU']} PReLU (learned activation slopes, not a norm)")
        lines.append("normalization: " + ", ".join(parts))
    if other:
        shown_o = collapse_names(other)
        lines.append(f"other tensors: {len(other)} ({', '.join(shown_o[:5])}{' ...' if len(shown_o) > 5 else ''})")
    if not lines:
        lines.append("no tensors" if not shapes else f"{len(shapes)} tensors of no recognised kind")

    # -- generic hyperparameters -----------------------------------------------------------------
    hyper: dict[str, Any] = {}
    if input_width is not None:
        hyper["input_size"] = input_width
    elif recurrent and recurrent[0]["input_size"] is not None and not order[:1] == [("embedding", order[0][1])]:
        hyper["input_size"] = recurrent[0]["input_size"]
    if recurrent and recurrent[0]["hidden_size"] is not None:
        hyper["hidden_size"] = recurrent[0]["hidden_size"]
        hyper["num_layers"] = sum(r["num_layers"] for r in recurrent)
    elif transformer is not None:
        hyper["hidden_size"] = transformer["d_model"]
        hyper["num_layers"] = transformer["num_layers"]
    if classifier is not None and classifier["role"] == "classifier":
        hyper["num_classes"] = classifier["out_features"]
    return Analysis(structure=structure, evidence=evidence, hyperparameters=hyper, lines=lines)


def _config_int(config: Mapping[str, Any] | None, *keys: str) -> int | None:
    if not config:
        return None
    for k in keys:
        v = config.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _head_name(name: str) -> tuple[int, str] | None:
    """(strength, the component) when a path component is a head name; lower strength is stronger."""
    parts = name.split(".")
    for rank, h in enumerate(HEAD_NAMES):
        if parts[-1] == h:
            return rank, h
    for rank, h in enumerate(HEAD_NAMES):
        if h in parts[:-1]:
            return len(HEAD_NAMES) + rank, h
    return None


def _choose_head(linears: list[_Linear], *, ordered: bool, d_model: int | None, input_width: int | None,
                 vocab: set[tuple[int, int]], has_codebook: bool) -> tuple[dict | None, str]:
    """The classifier head and one evidence line saying how it was chosen (or why there is none).

    By name first (`classifier`, `lm_head`, `output_layer`, `head`, `fc`, ...; within a named
    subtree the layer whose output feeds no other), then by role (a layer mapping the model
    width onto the token vocabulary is an LM head), then, only when keys are in module order,
    the last linear layer outside repeated blocks. A layer that maps back to the input width of a
    model with a decoder or codebook is a reconstruction, and a square layer at the model width
    (a pooler) is not a head.
    """
    free = [li for li in linears if li.layer is None]

    def terminal(group: list[_Linear]) -> list[_Linear]:
        ins = {li.in_features for li in group}
        return [li for li in group if li.out_features not in ins or li.out_features == li.in_features == 1]

    def reconstructs(li: _Linear) -> bool:
        return (input_width is not None and li.out_features == input_width and li.in_features != input_width
                and (has_codebook or "decoder" in li.name.split(".")[0] or "dec" == li.name.split(".")[0]))

    def role(li: _Linear) -> str:
        return "lm-head" if (li.out_features, li.in_features) in vocab else "classifier"

    def make(li: _Linear, how: str) -> tuple[dict, str]:
        head = {"prefix": li.name, "in_features": li.in_features, "out_features": li.out_features,
                "role": role(li), "chosen_by": how}
        if li.transposed:
            head["transposed"] = True
        return head, f"classifier: {li.name} {li.in_features} -> {li.out_features} ({how})"

    named = [(h, li) for li in linears if (h := _head_name(li.name)) is not None]
    if named:
        best = min(h[0] for h, _ in named)
        group = [li for h, li in named if h[0] == best]
        ends = terminal(group) or group
        pick = ends[-1] if ordered else max(ends, key=lambda li: _natural_key(li.name))
        if not reconstructs(pick):
            return make(pick, f"named {named[[li for _, li in named].index(pick)][0][1]!r}")
    lm = [li for li in free if (li.out_features, li.in_features) in vocab]
    if lm:
        return make(lm[0], "role: maps the model width onto the token vocabulary")
    if not free:
        return None, ("classifier: none: no linear layer outside the repeated blocks" if linears
                      else "classifier: none: no linear layer")
    if ordered:
        last = free[-1]
        if reconstructs(last):
            return None, (f"classifier: none: the last linear layer {last.name} maps back to the input width "
                          f"{input_width} (a reconstruction, not a classifier)")
        if d_model is not None and last.in_features == last.out_features == d_model:
            return None, (f"classifier: none: the last linear layer {last.name} keeps the model width {d_model} "
                          f"(a pooler or projection, not a head)")
        return make(last, "last linear layer in module order")
    return None, ("classifier: none: keys are in alphabetical order (safetensors), so module order is unknown, "
                  "and no layer is named as a head (classifier, lm_head, output_layer, head, fc)")


def structure_lines(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows of a `structure` dict, for people (the rich view shows these facts)."""
    rows: list[tuple[str, str]] = []
    if not s:
        return rows
    for r in s.get("recurrent") or []:
        bits = [f"{r.get('cell') or '?'} x{r.get('num_layers')}", f"input {r.get('input_size')}",
                f"hidden {r.get('hidden_size')}"]
        if r.get("proj_size"):
            bits.append(f"projection {r['proj_size']}")
        if r.get("bidirectional"):
            bits.append("bidirectional")
        rows.append(("recurrent", f"{r.get('prefix') or '(root)'}: " + ", ".join(bits)))
    conv = s.get("conv") or {}
    if conv.get("count"):
        dims = ", ".join(f"{d}d {c}" for d, c in conv.get("by_dim", {}).items())
        ks = ", ".join(f"{k} {c}" for k, c in list(conv.get("kernels", {}).items())[:6])
        rows.append(("conv", f"{conv['count']} ({dims}); kernels {ks}"))
    t = s.get("transformer")
    if t:
        heads = t.get("num_heads")
        heads_txt = "heads not recorded" if heads == NOT_RECORDED else f"{heads} heads"
        if t.get("num_kv_heads") not in (None, NOT_RECORDED):
            heads_txt += f" ({t['num_kv_heads']} k/v)"
        stacks = ", ".join(f"{x['prefix']} {x['num_layers']}" for x in t.get("stacks") or [])
        rows.append(("transformer", f"{t['num_layers']} layers" + (f" ({stacks})" if stacks else "")
                     + f", d_model {t.get('d_model')}, ffn {t.get('ffn_dim') or '-'}, {t.get('attention')}"
                     + (f", k/v width {t['kv_dim']}" if t.get("kv_dim") is not None else "") + f", {heads_txt}"))
    embeds = s.get("embeddings") or []
    if embeds:
        shown = "; ".join(f"{e['prefix']} {e['num_embeddings']}x{e['embedding_dim']} {e['role']}" for e in embeds[:4])
        rows.append(("embeddings", shown + (f"; +{len(embeds) - 4} more" if len(embeds) > 4 else "")))
    norms = s.get("norms") or {}
    if norms:
        rows.append(("norms", ", ".join(f"{k} {v}" for k, v in norms.items())))
    lin = s.get("linear") or {}
    if lin.get("count"):
        rows.append(("linear", f"{lin['count']}" + (f" ({lin['in_attention']} in attention)" if lin.get("in_attention")
                                                      else "")))
    head = s.get("classifier")
    if head:
        rows.append(("classifier", f"{head['prefix']} {head['in_features']} -> {head['out_features']} "
                                   f"({head.get('role')}; {head.get('chosen_by')})"))
    elif s:
        rows.append(("classifier", "none"))
    return rows
