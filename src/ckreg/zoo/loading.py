"""Loading checkpoints into the zoo with safe loaders only (issue #3; issue #2, "never execute").

Weights: `torch.load(path, weights_only=True, map_location="cpu")` (PyTorch's
restricted unpickler) or safetensors. Architecture: the inspector
(`ckreg.inspect.inspect_path` + `spec_from_inspection`), which reads the file
symbolically; where the inspector is unavailable, a small key-signature
mapping over the loaded state_dict (`_spec_from_state_dict`) stands in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ckreg.arch import FAMILIES, ArchSpec
from ckreg.errors import ReadError, SpecError, VerificationError

# Spec, "Wrappers and prefixes seen in the wild".
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("model.", "module.", "_orig_mod.")
SPEC_METADATA_KEYS = ("ckreg.spec", "spec", "arch", "ckreg_spec")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(sd: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def _jsonable(obj: Any, depth: int = 0) -> Any:
    if depth > 6:
        return repr(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else f"tensor{list(obj.shape)}"
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in obj]
    return repr(obj)


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """(state_dict, metadata): the unwrapped, prefix-stripped tensors and JSON-able metadata.

    metadata holds Lightning `hyper_parameters`, `epoch`, `global_step` or the
    safetensors `__metadata__` map. ReadError for anything the safe loaders refuse.
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError("no such file", path=str(p))
    with open(p, "rb") as fh:
        head = fh.read(16)
    meta: dict[str, Any] = {}
    if p.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
            with safe_open(str(p), framework="pt") as f:
                meta = {"__metadata__": dict(f.metadata() or {})}
        except Exception as exc:  # safetensors raises its own error types
            if p.suffix == ".safetensors":
                raise ReadError(f"not a valid safetensors file: {exc}", path=str(p)) from exc
        else:
            return _strip_prefixes(dict(sd)), meta
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(f"refused by the safe loader (torch.load weights_only=True): {msg}", path=str(p),
                        hint="run `ckreg inspect` on it; never load it with weights_only=False") from exc
    sd = None
    if _is_state_dict(obj):
        sd = obj
    elif isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                sd = obj[key]
                break
        for key in ("hyper_parameters", "epoch", "global_step", "pytorch-lightning_version", "hparams_name"):
            if key in obj:
                meta[key] = _jsonable(obj[key])
    if sd is None:
        raise ReadError("no state_dict found (looked at the top level and under "
                        + ", ".join(WRAPPER_KEYS) + ")", path=str(p))
    return _strip_prefixes(dict(sd)), meta


def _pick_scale_variant(meta: dict[str, Any], want: str | None) -> str:
    """ScaleAware and ScaleHard have identical keys (spec): metadata or the caller must say which."""
    pair = ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard")
    if want in pair:
        return want
    hp = meta.get("hyper_parameters") if isinstance(meta.get("hyper_parameters"), dict) else {}
    if hp.get("family") in pair:
        return hp["family"]
    if "use_hard_functions" in hp:
        return pair[1] if hp["use_hard_functions"] else pair[0]
    raise SpecError("the weights fit MSCSGRU_ScaleAware and MSCSGRU_ScaleHard equally (same keys; "
                    "the activation leaves no trace in a state_dict)",
                    hint="pass family='MSCSGRU_ScaleAware' or 'MSCSGRU_ScaleHard'")


def _spec_from_metadata(meta: dict[str, Any]) -> ArchSpec | None:
    """A spec recorded by ckreg's trainer (safetensors `__metadata__` or Lightning `hyper_parameters`)."""
    candidates: list[Any] = []
    md = meta.get("__metadata__") or {}
    for key in SPEC_METADATA_KEYS:
        if key in md:
            candidates.append(md[key])
    hp = meta.get("hyper_parameters")
    if isinstance(hp, dict):
        candidates.append(hp.get("spec", hp))
    for cand in candidates:
        if isinstance(cand, str):
            try:
                cand = json.loads(cand)
            except ValueError:
                continue
        if isinstance(cand, dict) and cand.get("family") in FAMILIES:
            fields = {k: v for k, v in cand.items() if k in ArchSpec.model_fields}
            try:
                return ArchSpec(**fields)
            except ValueError:
                continue
    return None


def _spec_from_state_dict(sd: dict[str, "torch.Tensor"], meta: dict[str, Any], family: str | None = None) -> ArchSpec:
    """Stand-in for the inspector: family by key signature, hyperparameters by shape."""
    keys = set(sd)
    want = family

    def shape(k: str) -> tuple[int, ...]:
        return tuple(sd[k].shape)

    def layers(prefix: str) -> int:
        return sum(1 for k in keys if k.startswith(f"{prefix}.weight_ih_l") and not k.endswith("_reverse"))

    def cell_of(prefix: str, hidden: int) -> str:
        rows = shape(f"{prefix}.weight_hh_l0")[0] // hidden
        return {1: "RNN", 3: "GRU", 4: "LSTM"}.get(rows, "GRU")

    fields: dict[str, Any] = {}
    if "RNN.0.weight" in keys and "RNN.1.weight_hh_l0" in keys:
        H = shape("RNN.1.weight_hh_l0")[1]
        cell = cell_of("RNN.1", H)
        family = "LSTM" if cell == "LSTM" else "GRU"
        fields = dict(input_size=shape("RNN.0.weight")[1], proj_size=shape("RNN.0.weight")[0], hidden_size=H,
                      num_layers=layers("RNN.1"), cell=cell,
                      bidirectional=any(k.endswith("_reverse") for k in keys))
        head = "output_layers.output_layers.3.weight"
    elif "RNN.weight_hh_l0" in keys:
        H = shape("RNN.weight_hh_l0")[1]
        cell = cell_of("RNN", H)
        family = "StackedLSTM" if cell == "LSTM" else "StackedGRU"
        fields = dict(input_size=shape("RNN.weight_ih_l0")[1], hidden_size=H, num_layers=layers("RNN"), cell=cell,
                      bidirectional=any(k.endswith("_reverse") for k in keys))
        head = "output_layers.output_layers.3.weight"
    elif "conv1.weight" in keys and "fc.weight" in keys:
        w = shape("conv1.weight")
        n = sum(1 for k in keys if k.startswith("block1.layer.") and k.endswith(".conv1.weight"))
        fields = dict(input_size=w[1], conv_dim=len(w) - 2, depth=6 * n + 4,
                      widen_factor=shape("fc.weight")[1] // 64)
        family = "WRN"
        head = "fc.weight"
    else:
        head = "output_layers.3.weight"
        scale = "gru1.cell.W_z3.weight" in keys or "gru.cell.W_z3.weight" in keys
        if "cnn.0.weight" in keys:
            w = shape("cnn.0.weight")
            family = "CNNStackedGRU" if "gru1.weight_hh_l0" in keys else "CNNGRU"
            kernels = [list(w[2:])]
            fields = dict(input_size=w[1], cnn_filters=w[0], conv_dim=len(w) - 2)
        elif "tower1.0.weight" in keys:
            w = shape("tower1.0.weight")
            kernels = []
            i = 1
            while f"tower{i}.0.weight" in keys:
                kernels.append(list(shape(f"tower{i}.0.weight")[2:]))
                i += 1
            if len(w) == 5:
                family = "MS3DStackedGRU" if "tower1.3.weight" in keys else "MS3DGRU"
                fields = dict(input_size=8, cnn_filters=w[0], conv_dim=3)
            else:
                if scale:
                    family = "MSCSGRU_ScaleAware" if "gru1.cell.W_z3.weight" in keys else "MSCGRU_ScaleAware"
                    if family == "MSCSGRU_ScaleAware":
                        family = _pick_scale_variant(meta, want)
                else:
                    family = "MSCSGRU" if "gru1.weight_hh_l0" in keys else "MSCGRU"
                fields = dict(input_size=w[1], cnn_filters=w[0], conv_dim=1)
        else:
            raise SpecError("cannot tell the architecture from the keys (no known family signature)",
                            hint="pass spec=ArchSpec.for_family(...) explicitly")
        fields["tower_kernels"] = kernels
        if scale:
            pre = "gru1" if "gru1.cell.U_z.weight" in keys else "gru"
            fields["hidden_size"] = shape(f"{pre}.cell.U_z.weight")[0]
            fields["num_layers"] = 2 if pre == "gru1" else 1
            fields["cell"] = "GRU"
        else:
            pre = "gru1" if "gru1.weight_hh_l0" in keys else "gru"
            H = shape(f"{pre}.weight_hh_l0")[1]
            fields["hidden_size"] = H
            fields["cell"] = cell_of(pre, H)
            fields["num_layers"] = layers("gru1") + layers("gru2") if pre == "gru1" else layers("gru")
        if family in ("MS3DGRU", "MS3DStackedGRU"):
            fields["pool"] = [2, 4, 2] if family == "MS3DGRU" else [1, 4, 2]
    if head not in keys:
        raise SpecError(f"no classifier head ({head}) in the weights", hint="pass spec=... explicitly")
    fields["num_classes"] = shape(head)[0]
    if want and want != family:
        raise SpecError(f"the weights are {family}, not {want}")
    base = ArchSpec.for_family(family)
    merged = {**base.model_dump(exclude={"family"}), **fields}
    try:
        return ArchSpec(family=family, **merged)
    except ValueError as exc:
        raise SpecError(f"weights imply an invalid {family} spec: {exc}") from exc


def _inspect(path: Path):
    """The inspector's view of the file, or None when `ckreg.inspect` does not offer it."""
    try:
        from ckreg.inspect import inspect_path
    except ImportError:
        return None
    return inspect_path(str(path))


def family_from_name(path: Path, candidates: list[str]) -> str | None:
    """The one tied family the file or folder name spells out, for weights that cannot tell.

    ScaleAware and ScaleHard have identical keys and shapes (spec, "What weights
    cannot tell"); a name such as `MSCSGRU_ScaleHard_best.ckpt` is then the only
    evidence left. Longest match wins (ScaleAware is also "MSCSGRU..."); no name,
    or a name matching several, leaves the choice to the caller (`family=`).
    """
    text = "/".join(part.lower() for part in path.parts[-3:])
    found = [c for c in candidates if c.lower() in text]
    found = [c for c in found if not any(c != o and c.lower() in o.lower() for o in found)]
    return found[0] if len(found) == 1 else None


def load_checkpoint(path: str | os.PathLike, *, spec: ArchSpec | None = None, family: str | None = None,
                    readout: str | None = None):
    """(module, spec, inspection): see `ckreg.zoo.load_checkpoint`."""
    from ckreg.inspect.model import Inspection
    from ckreg.zoo import build

    p = Path(path)
    sd, meta = load_state_dict(p)          # ReadError for anything the safe loaders refuse
    insp = _inspect(p)
    if spec is None and family is None:
        spec = _spec_from_metadata(meta)
    if spec is None:
        if insp is not None and insp.ok:
            from ckreg.inspect import spec_from_inspection

            if family is None and insp.family == "ambiguous":
                family = family_from_name(p, insp.ambiguous_between)
            spec = spec_from_inspection(insp, family=family)
        else:
            spec = _spec_from_state_dict(sd, meta, family=family)
    if insp is None:
        insp = Inspection(path=str(p), format="safetensors" if p.suffix == ".safetensors" else "torch",
                          size=p.stat().st_size, family=spec.family,
                          hyperparameters=spec.weight_hparams(), metadata=meta,
                          evidence=["spec from ckreg.zoo's key-signature stand-in (inspector unavailable)"])
    module = build(spec, readout=readout)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise VerificationError(f"weights do not load strictly into {spec.family}: "
                                + " ".join(str(exc).split())[:600], path=str(p)) from exc
    module.eval()
    return module, spec, insp
